using System.Diagnostics.Metrics;
using MagCds.Service.Worker;
using Microsoft.Extensions.Time.Testing;

namespace MagCds.Tests.Worker;

/// <summary>Metric labels come from fixed sets, never from what a notification says; a pause the server asked for shows.</summary>
public class WorkerMetricsTests
{
    [Test]
    public void A_notifications_own_words_never_become_a_label()
    {
        var labels = new List<string>();
        using var metrics = new WorkerMetrics(new ServerClock(TimeProvider.System));
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == WorkerMetrics.MeterName) l.EnableMeasurementEvents(instrument); };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) => { foreach (var t in tags) labels.Add($"{t.Key}={t.Value}"); });
        listener.Start();

        metrics.Notification("event-notification");
        metrics.Notification("ZQKIND-Smithers");
        metrics.Ignored("Patient");
        metrics.Ignored("Smithers");

        Assert.That(labels, Is.EqualTo(new[] { "kind=event-notification", "kind=other", "type=Patient", "type=other" }));
    }

    /// <summary>The lag is in seconds: its buckets must tell 0.1 s from 4 s (the SDK's default ones put both in le=5).</summary>
    [Test]
    public void The_lag_histogram_has_buckets_in_seconds()
    {
        using var metrics = new WorkerMetrics(new ServerClock(TimeProvider.System));
        IReadOnlyList<double>? buckets = null;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, _) =>
        {
            if (instrument is Histogram<double> { Name: "magcds.worker.lag" } h && h.Meter.Name == WorkerMetrics.MeterName) buckets = h.Advice?.HistogramBucketBoundaries;
        };
        listener.Start();
        Assert.That(buckets, Is.Not.Null.And.Contains(0.1).And.Contains(1.0).And.Contains(5.0).And.Contains(3600.0));
        Assert.That(buckets, Is.Ordered);
    }

    [Test]
    public void A_pause_the_server_asked_for_shows_as_the_seconds_left()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 6, 1, 8, 0, 0, TimeSpan.Zero));
        var clock = new ServerClock(time);
        using var metrics = new WorkerMetrics(clock);
        double? seen = null;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == WorkerMetrics.MeterName && instrument.Name == "magcds.worker.paused") l.EnableMeasurementEvents(instrument); };
        listener.SetMeasurementEventCallback<double>((_, value, _, _) => seen = value);
        listener.Start();
        double Read() { seen = null; listener.RecordObservableInstruments(); return seen ?? double.NaN; }

        Assert.That(Read(), Is.Zero);
        clock.Pause(TimeSpan.FromSeconds(8));
        Assert.That(Read(), Is.EqualTo(8));
        time.Advance(TimeSpan.FromSeconds(3));
        Assert.That(Read(), Is.EqualTo(5));
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.That(Read(), Is.Zero);
    }
}
