using System.Diagnostics.Metrics;
using MagCds.Service.Storage;

namespace MagCds.Service.Worker;

/// <summary>Worker counters and gauges (meter "MagCds.Worker"), ready for any OpenTelemetry exporter.</summary>
public sealed class WorkerMetrics : IDisposable
{
    public const string MeterName = "MagCds.Worker";
    private readonly Meter _meter = new(MeterName);
    private readonly Counter<long> _notifications;
    private readonly Counter<long> _processed;
    private readonly Counter<long> _ignored;
    private readonly Histogram<double> _lag;
    private QueueStats _last = new(0, 0, 0, 0, TimeSpan.Zero);

    /// <summary>The lag histogram's bucket boundaries, in seconds.</summary>
    private static readonly IReadOnlyList<double> LagBuckets = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

    public WorkerMetrics(ServerClock serverClock)
    {
        _notifications = _meter.CreateCounter<long>("magcds.worker.notifications", description: "Notifications received, by kind");
        _processed = _meter.CreateCounter<long>("magcds.worker.processed", description: "Queued resources finished, by outcome");
        _ignored = _meter.CreateCounter<long>("magcds.worker.ignored_resources", description: "Resources seen that are not configured anti-MAG Observations, by type");
        // Buckets in seconds (the SDK's default ones, 0 to 10,000, suit milliseconds: every lag under 5 s fell in one),
        // so a p95 alert on it can be read between 50 ms and an hour.
        _lag = _meter.CreateHistogram<double>("magcds.worker.lag", unit: "s", description: "Time from an event being queued to its outputs being written",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LagBuckets });
        _meter.CreateObservableGauge("magcds.worker.queue_depth", () => _last.Pending, description: "Resources waiting or being processed");
        _meter.CreateObservableGauge("magcds.worker.queue_lag", () => _last.Lag.TotalSeconds, unit: "s", description: "Age of the oldest waiting resource");
        _meter.CreateObservableGauge("magcds.worker.dead_letters", () => _last.Dead, description: "Resources that failed for good");
        _meter.CreateObservableGauge("magcds.worker.paused", () => serverClock.PauseLeft()?.TotalSeconds ?? 0, unit: "s",
            description: "What is left of a pause the FHIR server asked for (429/503 with Retry-After); 0 when none");
    }

    // Labels come from a fixed set: a notification's own words would make a series per value (and could carry text
    // no metric should hold).
    private static readonly HashSet<string> Kinds = ["handshake", "heartbeat", "event-notification", "query-status", "query-event", "resource", "ping"];

    public void Notification(string kind) => _notifications.Add(1, new KeyValuePair<string, object?>("kind", Kinds.Contains(kind) ? kind : "other"));

    /// <summary>A resource assessed (whatever the outcome): counted, and its time from queued to done recorded as lag.</summary>
    public void Processed(string outcome, TimeSpan lag)
    {
        _processed.Add(1, new KeyValuePair<string, object?>("outcome", outcome));
        _lag.Record(lag.TotalSeconds);
    }

    /// <summary>
    /// A resource given up on, for any reason (lease-expired included, so an alert on the counter sees a crash loop):
    /// counted, but not as lag, since nothing was written (rows that waited out an outage would swamp the percentiles).
    /// </summary>
    public void DeadLettered() => _processed.Add(1, new KeyValuePair<string, object?>("outcome", "dead-letter"));

    public void Ignored(string resourceType) =>
        _ignored.Add(1, new KeyValuePair<string, object?>("type", Hl7.Fhir.Model.ModelInfo.IsKnownResource(resourceType) ? resourceType : "other"));

    public void Queue(QueueStats stats) => _last = stats;

    public void Dispose() => _meter.Dispose();
}
