using System.Threading.Channels;
using MagCds.Service.Storage;

namespace MagCds.Service.Audit;

/// <summary>
/// One evaluated input: who asked (caller), through which door, about which resource and version, under which
/// knowledge, with what outcome and which outputs. Never a clinical value, name or identifier value.
/// </summary>
public sealed record AuditEntry(
    DateTimeOffset At, string Door, string Caller, string CorrelationId, string Resource, string? Version,
    string KnowledgeVersion, string Outcome, IReadOnlyList<string> Outputs);

/// <summary>
/// The audit trail of every evaluation, in the store (table audit_event). Doors hand entries over without waiting
/// (an answer is never slowed by the audit); a background writer stores them in batches, one transaction each, and
/// retries while the store is unreachable. Entries still queued when the process is killed are lost (stopping
/// normally writes them); a backlog over 200,000 entries (a long store outage) drops new ones and logs that.
/// How long entries are kept is <see cref="Storage.Retention"/>'s.
/// </summary>
public sealed partial class AuditTrail(Database db, TimeProvider time, Microsoft.Extensions.Options.IOptions<AuditOptions> options, ILogger<AuditTrail> logger)
    : BackgroundService
{
    private readonly Channel<AuditEntry> _queue = Channel.CreateBounded<AuditEntry>(new BoundedChannelOptions(200_000)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });
    private long _dropped;

    private const int MaxBatch = 1000;

    public DateTimeOffset Now => time.GetUtcNow();

    public void Record(AuditEntry entry)
    {
        // Cut to what the store keeps before it is queued: a backlog (the store down for a while) then holds a few
        // kilobytes per entry, whatever a caller sent (a Bundle entry's fullUrl can be most of a 32 MB body).
        entry = entry with { Caller = Clean(entry.Caller)!, CorrelationId = Clean(entry.CorrelationId)!, Resource = Clean(entry.Resource)!, Version = Clean(entry.Version) };
        if (!_queue.Writer.TryWrite(entry) && Interlocked.Increment(ref _dropped) % 1000 == 1) Dropped(logger, _dropped);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var batch = new List<AuditEntry>(MaxBatch);
        try
        {
            while (await _queue.Reader.WaitToReadAsync(stoppingToken))
            {
                // Gather entries for a moment before writing: one transaction per request under load held the store's
                // single SQLite writer hundreds of times a second, and a CDS Hooks call's jti check waited behind it.
                if (_queue.Reader.Count < MaxBatch) await Task.Delay(TimeSpan.FromMilliseconds(options.Value.BatchWindowMs), time, stoppingToken);
                await WriteQueuedAsync(batch, drain: false, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
        // Stopping: what is queued is still written.
        await WriteQueuedAsync(batch, drain: true, CancellationToken.None);
    }

    /// <summary>
    /// Writes the queued entries, up to <see cref="MaxBatch"/> per transaction. Entries that arrive while the last,
    /// partial, batch is written wait for the next window, unless the service is stopping (<paramref name="drain"/>).
    /// </summary>
    private async Task WriteQueuedAsync(List<AuditEntry> batch, bool drain, CancellationToken ct)
    {
        int failures = 0;
        while (true)
        {
            while (batch.Count < MaxBatch && _queue.Reader.TryRead(out var e)) batch.Add(e);
            if (batch.Count == 0) return;
            bool partial = batch.Count < MaxBatch;
            try
            {
                await InsertAsync(batch, ct);
                batch.Clear();
                if (failures > QuietAfter) StoredAgain(logger, failures);
                failures = 0;
                if (partial && !drain) return;
            }
            catch (System.Data.Common.DbException e)
            {
                failures++;
                // A store that is down fails every second: the first tries are logged, then one in a minute, so an
                // outage shows without flooding the log (the store's own health lines say the rest).
                if (failures <= QuietAfter || failures % 60 == 0) StoreFailed(logger, e.GetType().Name, batch.Count, failures);
                // A batch that keeps failing may hold one entry the database refuses (not a store outage): entries are
                // then written one by one and only those refused alone are dropped, so one bad entry cannot stop the
                // trail. If every one fails, the store is down and the batch waits.
                if (failures % 3 == 0 && await WriteSinglyAsync(batch, ct)) { failures = 0; continue; }
                // Stopping with the store down: give up after two tries rather than hold the shutdown.
                if (ct.IsCancellationRequested || (drain && failures >= 2))
                {
                    if (drain) LostAtStop(logger, batch.Count + _queue.Reader.Count);
                    return;
                }
                await Task.Delay(TimeSpan.FromSeconds(1), time, ct);
            }
        }
    }

    /// <summary>
    /// Writes the batch entry by entry and drops those the store refuses as values (<see cref="Database.RefusedValue"/>).
    /// Any other error (the store unreachable, busy, a rotated password, a read-only standby) stops the pass at once and
    /// keeps every entry not yet written: an outage must never be mistaken for bad entries. False when nothing was settled.
    /// </summary>
    private async Task<bool> WriteSinglyAsync(List<AuditEntry> batch, CancellationToken ct)
    {
        int settled = 0, refused = 0;
        foreach (var entry in batch)
        {
            try
            {
                await InsertAsync([entry], ct);
            }
            catch (System.Data.Common.DbException e) when (Database.RefusedValue(e)) { refused++; }
            catch (System.Data.Common.DbException) { break; }
            settled++;
        }
        if (refused > 0) Refused(logger, refused);
        batch.RemoveRange(0, settled);
        return settled > 0;
    }

    /// <summary>Deletes the entries made before <paramref name="before"/>; returns how many.</summary>
    public async Task<int> PurgeAsync(DateTimeOffset before, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        await using var cmd = w.Connection.Command("DELETE FROM audit_event WHERE at < @before").With("before", before.ToUnixTimeMilliseconds());
        return await cmd.ExecuteNonQueryAsync(ct);
    }

    private async Task InsertAsync(IReadOnlyList<AuditEntry> entries, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var tx = await c.BeginTransactionAsync(ct);
        // One command for the batch, its values replaced per entry (SQLite compiles the statement once, not per row).
        await using var cmd = c.Command("""
            INSERT INTO audit_event (at, door, caller, correlation_id, resource, version, knowledge_version, outcome, outputs)
            VALUES (@at, @door, @caller, @correlation, @resource, @version, @knowledge, @outcome, @outputs)
            """, tx);
        foreach (var name in (string[])["at", "door", "caller", "correlation", "resource", "version", "knowledge", "outcome", "outputs"])
            cmd.With(name, null);
        foreach (var e in entries)
        {
            object?[] values = [e.At.ToUnixTimeMilliseconds(), e.Door, e.Caller, e.CorrelationId, e.Resource, e.Version, e.KnowledgeVersion, e.Outcome, Clean(string.Join(",", e.Outputs))];
            for (int i = 0; i < values.Length; i++) cmd.Parameters[i].Value = values[i] ?? DBNull.Value;
            await cmd.ExecuteNonQueryAsync(ct);
        }
        // Not cancellable: a commit that succeeded but reported cancellation would be written again by the stop's drain.
        await tx.CommitAsync(CancellationToken.None);
    }

    /// <summary>
    /// What a caller sent (a Bundle entry's fullUrl, a version) as the store can keep it: PostgreSQL refuses the NUL
    /// character in text, and no audit field needs more than 1,024 characters.
    /// </summary>
    private static string? Clean(string? s)
    {
        if (s is null) return null;
        if (s.Length > 1024) s = s[..1024];
        return s.Contains('\0', StringComparison.Ordinal) ? s.Replace('\0', '\uFFFD') : s;
    }

    /// <summary>Newest first, optionally of one door only.</summary>
    public async Task<IReadOnlyList<AuditEntry>> QueryAsync(string? door, int max, CancellationToken ct)
    {
        await using var c = await db.OpenAsync(ct);
        await using var cmd = c.Command($"""
            SELECT at, door, caller, correlation_id, resource, version, knowledge_version, outcome, outputs FROM audit_event
            {(door is null ? "" : "WHERE door = @door")} ORDER BY at DESC, id DESC LIMIT @max
            """).With("max", max);
        if (door is not null) cmd.With("door", door);
        var list = new List<AuditEntry>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
            list.Add(new AuditEntry(DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(0)), r.GetString(1), r.GetString(2), r.GetString(3),
                r.GetString(4), r.IsDBNull(5) ? null : r.GetString(5), r.GetString(6), r.GetString(7),
                r.GetString(8).Split(',', StringSplitOptions.RemoveEmptyEntries)));
        return list;
    }


    [LoggerMessage(Level = LogLevel.Error, Message = "Audit backlog full: {Dropped} audit entries dropped so far")]
    private static partial void Dropped(ILogger logger, long dropped);

    [LoggerMessage(Level = LogLevel.Error, Message = "Audit: {Count} entries not stored at the stop: the store did not answer")]
    private static partial void LostAtStop(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Error, Message = "Audit: {Count} entries refused by the store one by one were dropped")]
    private static partial void Refused(ILogger logger, int count);

    /// <summary>Failed tries logged one by one before only every 60th is.</summary>
    private const int QuietAfter = 5;

    [LoggerMessage(Level = LogLevel.Warning, Message = "Audit entries not stored yet ({Count}), will retry every second: {Reason} (failed try {Tries}; after the fifth, one line a minute)")]
    private static partial void StoreFailed(ILogger logger, string reason, int count, int tries);

    [LoggerMessage(Level = LogLevel.Information, Message = "Audit entries stored again after {Tries} failed tries")]
    private static partial void StoredAgain(ILogger logger, int tries);
}
