using System.Globalization;
using Hl7.Fhir.Model;
using Hl7.Fhir.Rest;
using MagCds.Core.Evaluation;
using MagCds.Service.Storage;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Worker;

/// <summary>
/// The fallback and catch-up path: searches the server for configured-code Observations changed since the cursor
/// (<c>_lastUpdated=gt</c>, sorted, paging through <c>next</c> links) and queues them. The search reaches back a few
/// seconds before the cursor, because a server may make a write visible after a later one; versions already queued
/// in that overlap are remembered and skipped. Each page is queued in one transaction; the cursor moves only after
/// the last page, so a crash mid-poll repeats the poll (queueing is idempotent) instead of skipping anything.
/// </summary>
public sealed partial class Poller(WorkerFhirClient fhir, WorkQueue queue, Evaluator evaluator, IOptions<WorkerOptions> options,
    WorkerMetrics metrics, ServerClock serverClock, TimeProvider time, ILogger<Poller> logger)
{
    public const string CursorKey = "poll-cursor";
    private const string SeenKey = "poll-seen";
    private const string SettledKey = "poll-settled";
    private static readonly TimeSpan Overlap = TimeSpan.FromSeconds(5);

    /// <summary>When the worker first tried to start (this machine's clock), kept for the retries of <see cref="StartAsync"/>.</summary>
    private DateTimeOffset? _startedAt;

    /// <summary>
    /// A poll asked for by a notification (empty payload, or missed events on a server without <c>$events</c>), kept in
    /// the store so that an acknowledged request survives a restart and a failed poll: each request writes a new token,
    /// and a poll clears only the token it saw before it started.
    /// </summary>
    public const string RequestKey = "poll-requested";

    /// <summary>The state to store with a notification that asks for a poll.</summary>
    public static KeyValuePair<string, string> Request() => new(RequestKey, Guid.NewGuid().ToString("N"));

    /// <summary>The token of a poll asked for and not yet done, else null.</summary>
    public async Task<string?> RequestedAsync(CancellationToken ct) =>
        await queue.GetStateAsync(fhir.Server, RequestKey, ct) is { Length: > 0 } token ? token : null;

    /// <summary>After a successful poll: the request it answered is done, unless a newer one came meanwhile.</summary>
    public Task AnsweredAsync(string token, CancellationToken ct) =>
        queue.EnqueueAndClearStateAsync(fhir.Server, [], "poll", RequestKey, token, ct);

    /// <summary>
    /// At the worker's start: with no cursor and no <c>PollFrom</c>, the cursor is set to the start, so that the first poll
    /// (an interval poll, or one a notification asks for while interval polling is off) covers every change since the
    /// worker started instead of starting from the moment it runs. "Now" is the server's time (<see cref="ServerClock"/>):
    /// when no answer has told it yet, the server's CapabilityStatement is read for its Date header; while the server
    /// cannot be reached, this fails and is tried again (nothing can be polled then either).
    /// </summary>
    public async Task StartAsync(CancellationToken ct)
    {
        // "Now" is when the worker first tried, on this machine's clock, told in the server's once it answers: a server
        // that cannot be reached at first (a firewall not open yet) must not move the start past what was written
        // meanwhile (found by an operator's probe: results written before the first answer were never assessed).
        _startedAt ??= time.GetUtcNow();
        if (options.Value.PreviousServerUrl?.TrimEnd('/') is { Length: > 0 } previous && previous != fhir.Server)
        {
            var (pending, dead) = await queue.MoveServerAsync(previous, fhir.Server, ct);
            if (pending + dead > 0) WorkMoved(logger, pending, dead, previous);
        }
        if (Instant(options.Value.PollFrom) is null && await queue.GetStateAsync(fhir.Server, CursorKey, ct) is null)
        {
            // A store that polled one other server URL is most likely the same server under a new address (http to
            // https, a new ingress): starting from "now" would skip what was written while the worker was down, so
            // polling goes on from that cursor (at worst a few results of another server since then are assessed).
            var others = await queue.ServersWithStateAsync(CursorKey, ct);
            string? carried = others.Count == 1 ? await queue.GetStateAsync(others[0], CursorKey, ct) : null;
            if (carried is not null) CursorCarriedOver(logger, others[0], carried);
            await queue.SetStateAsync(fhir.Server, CursorKey, carried ?? Format(await OnServerClockAsync(_startedAt.Value, ct)), ct);
        }
    }

    private async Task<DateTimeOffset> OnServerClockAsync(DateTimeOffset local, CancellationToken ct)
    {
        if (!serverClock.Known)
        {
            using var client = fhir.Create();
            await client.CapabilityStatementAsync(SummaryType.True, ct);
            if (!serverClock.Known) NoServerDate(logger);
        }
        return serverClock.ToServer(local);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The FHIR server sends no Date header: polling takes its clock to agree with this machine's (keep both on NTP)")]
    private static partial void NoServerDate(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "No poll cursor for the configured FHIR server URL; polling goes on from the cursor stored for {OtherServer} ({Cursor}), taken to be the same server under its former address. Set MagCds:Worker:PollFrom to choose the starting point instead")]
    private static partial void CursorCarriedOver(ILogger logger, string otherServer, string cursor);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Moved {Pending} waiting row(s) and {Dead} dead letter(s), with the poll cursor and the versions assessed, from the previous server address {PreviousServer} (MagCds:Worker:PreviousServerUrl) to the configured one")]
    private static partial void WorkMoved(ILogger logger, int pending, int dead, string previousServer);

    /// <summary>Polls once; returns how many Observations were queued.</summary>
    public async Task<int> PollAsync(CancellationToken ct)
    {
        var o = options.Value;
        string server = fhir.Server;
        var cursor = Instant(await queue.GetStateAsync(server, CursorKey, ct));
        if (cursor is null)
        {
            // First poll ever: from PollFrom, or from now on (a first deployment must not assess years of old results).
            cursor = Instant(o.PollFrom);
            if (cursor is null)
            {
                await StartAsync(ct);
                return 0;
            }
        }

        var asked = time.GetUtcNow();
        var seen = Seen(await queue.GetStateAsync(server, SeenKey, ct));
        bool settled = await queue.GetStateAsync(server, SettledKey, ct) == "true";
        string codes = string.Join(",", evaluator.RecognisedCodes.Select(Uri.EscapeDataString));
        var since = cursor.Value - (settled ? TimeSpan.Zero : Overlap);
        // _lastUpdated first: the most selective parameter, for servers that match parameters in order.
        string query = $"Observation?_lastUpdated=gt{Uri.EscapeDataString(Format(since))}&code={codes}&_sort=_lastUpdated&_count={o.PageSize}";
        int older = 0;

        using var client = fhir.Create();
        var max = cursor.Value;
        int queued = 0;
        var page = await client.GetAsync(query, ct) as Bundle;
        // When the search was asked, on the server's clock (its answer's Date has just set the offset).
        var started = serverClock.ToServer(asked);
        var followed = new HashSet<string>(StringComparer.Ordinal);
        bool cut = false, sorted = Hosting.SearchSets.SaysSorted(page, "_lastUpdated");
        for (int pages = 1; page is not null; pages++)
        {
            var fresh = new List<(string, string, string?)>();
            foreach (var obs in page.Entry.Select(e => e.Resource).OfType<Observation>())
            {
                if (string.IsNullOrEmpty(obs.Id)) continue;
                if (!evaluator.IsAntiMag(obs)) { metrics.Ignored("Observation"); continue; } // a server that ignored the code filter
                var updated = obs.Meta?.LastUpdated;
                // A server that ignored _lastUpdated (R4 lets a server skip a parameter it does not support) answers
                // with results from before the cursor: years of old results, not to be assessed as new ones.
                if (updated <= Truncated(since)) { older++; continue; }
                if (updated > max) max = updated.Value;
                // A server without versionId: the update time tells versions apart, or an amendment inside the overlap would be skipped.
                if (updated is { } u && !seen.TryAdd(obs.Id + "|" + (obs.Meta?.VersionId ?? "@" + u.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture)), u)) continue; // queued by an earlier poll
                fresh.Add(("Observation", obs.Id, obs.Meta?.VersionId));
            }
            // Versions already assessed (brought in by a notification, or by an earlier poll) are not queued again.
            queued += await queue.EnqueueVersionsAsync(server, fresh, "poll", ct);
            if (!Hosting.SearchSets.HasUnreadNext(page, followed)) break;
            // A server whose paging does not end must not hold the worker's loop: what was read is queued and the
            // cursor moves to it; the next poll goes on from there.
            if (pages == MaxPollPages) { cut = true; break; }
            page = await client.ContinueAsync(page, ct: ct);
        }

        if (older > 0) OlderThanAsked(logger, older);
        if (cut)
        {
            // Sorted by update time as asked: everything up to max was read, and the next poll goes on from there.
            // Otherwise a later page may hold earlier updates, so the cursor stays where it was (what was queued is
            // remembered as seen and not queued twice).
            PollCut(logger, MaxPollPages, sorted);
            if (!sorted) max = cursor.Value;
        }

        // Only versions inside the overlap of the next poll need remembering.
        var keep = seen.Where(s => s.Value > max - Overlap).ToDictionary();
        await queue.EnqueueAsync(server, [], "poll", new Dictionary<string, string>
        {
            [CursorKey] = Format(max),
            [SeenKey] = string.Join("\n", keep.Select(s => $"{s.Value.ToUnixTimeMilliseconds()} {s.Key}")),
            // Twice the overlap: the server's clock is read to the second, and stamps may lag a commit.
            [SettledKey] = started - max > 2 * Overlap ? "true" : "false",
        }, ct);
        return queued;
    }

    /// <summary>
    /// Pages one poll reads at most: a backlog of that many pages is read over several polls. A server whose paging
    /// does not end (a next link to itself is caught before this) then cannot hold the worker's loop for good.
    /// </summary>
    private const int MaxPollPages = 1000;

    [LoggerMessage(Level = LogLevel.Warning, Message = "A poll stopped after {Pages} pages of the FHIR server's answer (sorted by update time: {Sorted}); the next poll goes on")]
    private static partial void PollCut(ILogger logger, int pages, bool sorted);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The FHIR server answered a poll with {Count} Observations last updated before the poll's _lastUpdated bound (it may not support _lastUpdated); they were not queued")]
    private static partial void OlderThanAsked(ILogger logger, int count);

    /// <summary>The bound as the query states it (to the millisecond).</summary>
    private static DateTimeOffset Truncated(DateTimeOffset d) => new(d.UtcTicks - d.UtcTicks % TimeSpan.TicksPerMillisecond, TimeSpan.Zero);

    private static Dictionary<string, DateTimeOffset> Seen(string? text)
    {
        var d = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        foreach (var line in (text ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split(' ', 2);
            if (parts.Length == 2 && long.TryParse(parts[0], CultureInfo.InvariantCulture, out long ms)) d[parts[1]] = DateTimeOffset.FromUnixTimeMilliseconds(ms);
        }
        return d;
    }

    /// <summary>A stored cursor or the configured start (PollFrom, checked at start-up by PollFromValidation), read as an instant; null when it cannot be.</summary>
    private static DateTimeOffset? Instant(string? s) =>
        DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var d) ? d : null;

    public static string Format(DateTimeOffset d) => d.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
}
