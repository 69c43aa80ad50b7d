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
/// Entries older than <see cref="AuditOptions.KeepDays"/> are deleted at start-up and then at most once an hour.
/// </summary>
public sealed partial class AuditTrail(Database db, TimeProvider time, Microsoft.Extensions.Options.IOptions<AuditOptions> options, ILogger<AuditTrail> logger)
    : BackgroundService
{
    private DateTimeOffset _lastPurge = DateTimeOffset.MinValue;

    private readonly Channel<AuditEntry> _queue = Channel.CreateBounded<AuditEntry>(new BoundedChannelOptions(200_000)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });
    private long _dropped;

    public DateTimeOffset Now => time.GetUtcNow();

    public void Record(AuditEntry entry)
    {
        if (!_queue.Writer.TryWrite(entry) && Interlocked.Increment(ref _dropped) % 1000 == 1) Dropped(logger, _dropped);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var batch = new List<AuditEntry>(1000);
        try
        {
            await PurgeIfDueAsync(stoppingToken);
            while (await _queue.Reader.WaitToReadAsync(stoppingToken))
            {
                await WriteAvailableAsync(batch, stoppingToken);
                await PurgeIfDueAsync(stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
        // Stopping: what is queued is still written.
        await WriteAvailableAsync(batch, CancellationToken.None);
    }

    private async Task WriteAvailableAsync(List<AuditEntry> batch, CancellationToken ct)
    {
        while (true)
        {
            while (batch.Count < 1000 && _queue.Reader.TryRead(out var e)) batch.Add(e);
            if (batch.Count == 0) return;
            try
            {
                await db.WriteAsync(async () => { await InsertAsync(batch, ct); return true; }, ct);
                batch.Clear();
            }
            catch (System.Data.Common.DbException e)
            {
                StoreFailed(logger, e.GetType().Name, batch.Count);
                if (ct.IsCancellationRequested) return;
                await Task.Delay(TimeSpan.FromSeconds(1), time, ct);
            }
        }
    }

    private async Task PurgeIfDueAsync(CancellationToken ct)
    {
        if (options.Value.KeepDays == 0 || Now - _lastPurge < TimeSpan.FromHours(1)) return;
        try
        {
            int deleted = await PurgeAsync(ct);
            if (deleted > 0) Purged(logger, deleted, options.Value.KeepDays);
        }
        catch (System.Data.Common.DbException e) { StoreFailed(logger, e.GetType().Name, 0); }
    }

    /// <summary>Deletes the entries older than the retention period (none when it is 0); returns how many.</summary>
    public async Task<int> PurgeAsync(CancellationToken ct)
    {
        _lastPurge = Now;
        if (options.Value.KeepDays == 0) return 0;
        long before = Now.AddDays(-options.Value.KeepDays).ToUnixTimeMilliseconds();
        return await db.WriteAsync(async () =>
        {
            await using var c = await db.OpenAsync(ct);
            await using var cmd = c.Command("DELETE FROM audit_event WHERE at < @before").With("before", before);
            return await cmd.ExecuteNonQueryAsync(ct);
        }, ct);
    }

    private async Task InsertAsync(IReadOnlyList<AuditEntry> entries, CancellationToken ct)
    {
        await using var c = await db.OpenAsync(ct);
        await using var tx = await c.BeginTransactionAsync(ct);
        foreach (var e in entries)
        {
            await using var cmd = c.Command("""
                INSERT INTO audit_event (at, door, caller, correlation_id, resource, version, knowledge_version, outcome, outputs)
                VALUES (@at, @door, @caller, @correlation, @resource, @version, @knowledge, @outcome, @outputs)
                """, tx)
                .With("at", e.At.ToUnixTimeMilliseconds()).With("door", e.Door).With("caller", e.Caller).With("correlation", e.CorrelationId)
                .With("resource", e.Resource).With("version", e.Version).With("knowledge", e.KnowledgeVersion).With("outcome", e.Outcome)
                .With("outputs", string.Join(",", e.Outputs));
            await cmd.ExecuteNonQueryAsync(ct);
        }
        await tx.CommitAsync(ct);
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

    [LoggerMessage(Level = LogLevel.Information, Message = "Audit retention: {Deleted} entries older than {KeepDays} days deleted")]
    private static partial void Purged(ILogger logger, int deleted, int keepDays);

    [LoggerMessage(Level = LogLevel.Error, Message = "Audit backlog full: {Dropped} audit entries dropped so far")]
    private static partial void Dropped(ILogger logger, long dropped);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Audit entries not stored yet ({Count}), will retry: {Reason}")]
    private static partial void StoreFailed(ILogger logger, string reason, int count);
}
