using System.Globalization;
using Hl7.Fhir.Model;
using Hl7.Fhir.Rest;
using MagCds.Service.Storage;

namespace MagCds.Service.Worker;

/// <summary>
/// Backport event-number bookkeeping. Each notification's event numbers (and a heartbeat's
/// events-since-subscription-start) are compared with the last number seen for that Subscription; numbers skipped
/// are a gap, recorded in the store. The worker then asks the server for the missed events with <c>$events</c>;
/// a server without <c>$events</c> gets a catch-up poll instead. Each gap is logged, so an operator sees a Subscription
/// that keeps losing events (the server's delivery, or the network to MagCds).
/// </summary>
public sealed partial class EventRecovery(WorkQueue queue, WorkerFhirClient fhir, WorkerSignal signal, ILogger<EventRecovery> logger)
{
    private const string LastPrefix = "events-last:";
    private const string GapPrefix = "events-gap:";

    /// <summary>
    /// Event numbers a server can send: FHIR integer64 is unbounded, but a number beyond 2^53 (what JSON numbers hold
    /// exactly) or below 0 is a defect, and taken as the last number seen it would hide every later gap.
    /// </summary>
    private const long MaxEventNumber = 1L << 53;

    /// <summary>Records the numbers of a Backport notification; returns the gap found, if any.</summary>
    public async Task<(long From, long To)?> NoteAsync(Notification n, CancellationToken ct)
    {
        if (n.Subscription is null) return null;
        static bool Plausible(long x) => x is >= 0 and <= MaxEventNumber;
        if (n.EventNumbers.Any(x => !Plausible(x)) || n.EventsSinceStart is { } s0 && !Plausible(s0)) return null;
        long? highest = n.Kind == "heartbeat" || n.Kind == "handshake" ? n.EventsSinceStart : n.EventNumbers.Count > 0 ? n.EventNumbers.Max() : n.EventsSinceStart;
        if (highest is null) return null;

        string lastName = LastPrefix + n.Subscription, gapName = GapPrefix + n.Subscription;
        long lowest = n.Kind is "heartbeat" ? highest.Value + 1 : n.EventNumbers.Count > 0 ? n.EventNumbers.Min() : highest.Value;
        // Read and written in one locked step: notifications arrive at once (a server sends them in parallel), and one
        // that read the last number before another wrote its higher one would set it back and hide a later gap.
        var gap = await queue.UpdateStateAsync(fhir.Server, [lastName, gapName], state =>
        {
            long? last = long.TryParse(state[lastName], CultureInfo.InvariantCulture, out long l) ? l : null;
            (long From, long To)? found = null;
            // A handshake sets the starting point; after that, any number skipped is a missed event.
            if (n.Kind != "handshake" && last is { } seen && lowest > seen + 1) found = (seen + 1, lowest - 1);
            var set = new Dictionary<string, string>(StringComparer.Ordinal);
            // A handshake (re)starts the count: a Subscription made again numbers its events from its start, and the
            // highest number of its predecessor would hide its gaps.
            if (last is null || highest > last || n.Kind == "handshake") set[lastName] = highest.Value.ToString(CultureInfo.InvariantCulture);
            if (found is { } g)
            {
                // Widen a gap not yet recovered rather than replace it.
                var open = Range(state[gapName]);
                set[gapName] = $"{Math.Min(g.From, open?.From ?? long.MaxValue)}-{Math.Max(g.To, open?.To ?? long.MinValue)}";
            }
            return (set, found);
        }, ct);
        if (gap is { } missed)
        {
            GapFound(logger, n.Subscription, missed.From, missed.To);
            signal.Wake();
        }
        return gap;
    }

    /// <summary>Fetches missed events of every open gap and queues their resources; falls back to a poll.</summary>
    public async System.Threading.Tasks.Task RecoverAsync(CancellationToken ct)
    {
        string server = fhir.Server;
        foreach (var (name, value) in await queue.StatesAsync(server, GapPrefix, ct))
        {
            if (Range(value) is not { } gap) continue;
            // Only ever Subscription/{id} on the configured server (a gap stored by an older release may name a URL).
            if (NotificationReader.Parse(name[GapPrefix.Length..]) is not ("Subscription", var id)) continue;
            string subscription = "Subscription/" + id;
            using var client = fhir.Create();
            IReadOnlyList<(string, string)> resources;
            bool poll;
            try
            {
                var bundle = await client.GetAsync($"{subscription}/$events?eventsSinceNumber={gap.From}&eventsUntilNumber={gap.To}&content=id-only", ct) as Bundle;
                var n = bundle is null ? NotificationReader.Ping : NotificationReader.Read(bundle);
                resources = n.Resources;
                // A server that keeps a limited event history (or pages $events) may return only some of the gap: a
                // catch-up poll then finds the rest, rather than the gap being cleared with events still missing.
                poll = n.NeedsPoll || !Covers(n.EventNumbers, gap.From, gap.To);
            }
            // A call held back because the server asked for a pause says nothing about $events: the gap stays for
            // the next turn (the step fails and is logged as paused).
            catch (Exception e) when (e is not ServerPausedException
                                      && (e is FhirOperationException or HttpRequestException or Polly.ExecutionRejectedException
                                              or Hl7.Fhir.Serialization.DeserializationFailedException or FormatException
                                          || (e is OperationCanceledException && !ct.IsCancellationRequested)))
            {
                EventsUnavailable(logger, subscription, gap.From, gap.To, e is FhirOperationException f ? "http-" + (int)f.Status : e.GetType().Name);
                // No $events (400/404/405/501), no right to it (403), or no answer: a catch-up poll finds whatever the
                // missed events were about. Asking $events again on every turn of the loop would repeat the failure,
                // hold up the work behind it and count against the circuit breaker every assessment shares.
                resources = [];
                poll = true;
            }
            // The gap is cleared only if no notification widened it meanwhile; a widened one is fetched next time. A
            // poll asked for instead is stored in the same transaction, so clearing the gap never loses it.
            await queue.EnqueueAndClearStateAsync(server, resources.Where(r => r.Item1 == "Observation"), "events", name, value, ct,
                poll ? Poller.Request() : null);
            if (poll) signal.Wake();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Backport Subscription {Subscription} skipped events {From} to {To}: they are asked for with $events (or found by a catch-up poll)")]
    private static partial void GapFound(ILogger logger, string subscription, long from, long to);

    [LoggerMessage(Level = LogLevel.Information, Message = "$events of {Subscription} for events {From} to {To} failed ({Reason}): a catch-up poll finds what they were about")]
    private static partial void EventsUnavailable(ILogger logger, string subscription, long from, long to, string reason);

    /// <summary>Whether the event numbers returned include every number of the gap.</summary>
    public static bool Covers(IReadOnlyList<long> numbers, long from, long to) =>
        numbers.Where(n => n >= from && n <= to).Distinct().LongCount() == to - from + 1;

    private static (long From, long To)? Range(string? s) =>
        s?.Split('-') is [var a, var b] && long.TryParse(a, CultureInfo.InvariantCulture, out long from) && long.TryParse(b, CultureInfo.InvariantCulture, out long to) ? (from, to) : null;
}
