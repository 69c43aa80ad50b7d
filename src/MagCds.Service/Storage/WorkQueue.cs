using System.Data.Common;

namespace MagCds.Service.Storage;

/// <summary>A resource the worker must (re)assess, as leased from the queue.</summary>
/// <param name="ExpiredLeases">How often a lease on the row ran out without the row being finished or handed back (a crash, a stall).</param>
public sealed record WorkItem(long Id, string Server, string ResourceType, string ResourceId, int Generation, int Attempts, DateTimeOffset EnqueuedAt, int ExpiredLeases);

/// <summary>A work item that failed for good, with the reason (an outcome code, never clinical content).</summary>
public sealed record DeadLetter(long Id, string ResourceType, string ResourceId, string Reason, int Attempts, DateTimeOffset EnqueuedAt, DateTimeOffset FailedAt);

public sealed record QueueStats(long Pending, long Leased, long Dead, long Done, TimeSpan Lag);

/// <summary>
/// The worker's durable queue: one row per resource to assess. An event is acknowledged only after its row is
/// committed, so nothing is lost on a crash; a row is leased for a while before processing, so a crashed or killed
/// worker's rows come back when the lease runs out, and replicas on PostgreSQL never process the same row at once.
/// At most one pending row exists per resource: a new event for a resource already waiting bumps its generation, so a
/// worker that read the resource before the event came in processes it again instead of losing the change.
/// The version each resource was last assessed at is kept, so a poll that finds a version already assessed (e.g.
/// one a notification brought in) does not queue it again.
/// </summary>
public sealed class WorkQueue(Database db, TimeProvider time)
{
    private long Now => time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Queues resources (one transaction); a resource already waiting is marked to be read again.</summary>
    public Task EnqueueAsync(string server, IEnumerable<(string Type, string Id)> resources, string source, CancellationToken ct) =>
        EnqueueVersionsAsync(server, resources.Select(r => (r.Type, r.Id, (string?)null)), source, ct);

    /// <summary>Queues resource versions (one transaction), except versions already assessed; returns how many were queued.</summary>
    public async Task<int> EnqueueVersionsAsync(string server, IEnumerable<(string Type, string Id, string? Version)> resources, string source, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var tx = await c.BeginTransactionAsync(ct);
        int queued = await EnqueueAsync(c, tx, server, resources, source, ct);
        await tx.CommitAsync(ct);
        return queued;
    }

    /// <summary>Queues resources and sets worker state in one transaction (a poll page and its cursor).</summary>
    public async Task EnqueueAsync(string server, IEnumerable<(string Type, string Id)> resources, string source,
        IReadOnlyDictionary<string, string> state, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var tx = await c.BeginTransactionAsync(ct);
        await EnqueueAsync(c, tx, server, resources.Select(r => (r.Type, r.Id, (string?)null)), source, ct);
        foreach (var (name, value) in state) await SetStateAsync(c, tx, server, name, value, ct);
        await tx.CommitAsync(ct);
    }

    /// <summary>
    /// Queues resources and, in the same transaction, clears a state value only if it still holds what the caller read
    /// (compare and set): a value another writer changed meanwhile (a recovery gap widened by a new notification) stays.
    /// </summary>
    /// <param name="set">Another state value to write in the same transaction, if any.</param>
    public async Task EnqueueAndClearStateAsync(string server, IEnumerable<(string Type, string Id)> resources, string source,
        string name, string expected, CancellationToken ct, KeyValuePair<string, string>? set = null)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var tx = await c.BeginTransactionAsync(ct);
        await EnqueueAsync(c, tx, server, resources.Select(r => (r.Type, r.Id, (string?)null)), source, ct);
        if (set is { } s) await SetStateAsync(c, tx, server, s.Key, s.Value, ct);
        await using (var cmd = c.Command("UPDATE worker_state SET value = '' WHERE server = @server AND name = @name AND value = @expected", tx)
                         .With("server", server).With("name", name).With("expected", expected))
            await cmd.ExecuteNonQueryAsync(ct);
        await tx.CommitAsync(ct);
    }

    private async Task<int> EnqueueAsync(DbConnection c, DbTransaction tx, string server, IEnumerable<(string Type, string Id, string? Version)> resources, string source, CancellationToken ct)
    {
        long now = Now;
        int queued = 0;
        foreach (var (type, id, version) in resources.Distinct())
        {
            // A null version never matches: an event without a version is always queued.
            await using var cmd = c.Command("""
                INSERT INTO work_item (server, resource_type, resource_id, source, state, enqueued_at, due_at)
                SELECT @server, @type, @id, @source, 'pending', @now, @now
                WHERE NOT EXISTS (SELECT 1 FROM worker_assessed
                                  WHERE server = @server AND resource_type = @type AND resource_id = @id AND version_id = @version)
                ON CONFLICT (server, resource_type, resource_id) WHERE state = 'pending'
                DO UPDATE SET generation = work_item.generation + 1,
                              due_at = CASE WHEN work_item.due_at < @now THEN work_item.due_at ELSE @now END
                """, tx).With("server", server).With("type", type).With("id", id).With("source", source).With("now", now).With("version", version);
            queued += await cmd.ExecuteNonQueryAsync(ct);
        }
        return queued;
    }

    /// <summary>
    /// Leases up to <paramref name="max"/> due rows for <paramref name="lease"/>; rows leased by others are skipped.
    /// With <paramref name="server"/>, only that server's rows: deployments watching different servers may share a store.
    /// </summary>
    public async Task<IReadOnlyList<WorkItem>> LeaseAsync(string owner, int max, TimeSpan lease, CancellationToken ct, string? server = null)
    {
        long now = Now;
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var tx = await c.BeginTransactionAsync(ct);
        await using var cmd = c.Command($"""
            UPDATE work_item SET lease_owner = @owner, lease_until = @until, attempts = attempts + 1,
                                 expired_leases = expired_leases + CASE WHEN lease_until IS NULL THEN 0 ELSE 1 END
            WHERE id IN (SELECT id FROM work_item
                         WHERE state = 'pending' AND due_at <= @now AND (lease_until IS NULL OR lease_until < @now){(server is null ? "" : " AND server = @server")}
                         ORDER BY due_at, id LIMIT @max {db.Sql.SkipLocked})
            RETURNING id, server, resource_type, resource_id, generation, attempts, enqueued_at, expired_leases
            """, tx).With("owner", owner).With("until", now + (long)lease.TotalMilliseconds).With("now", now).With("max", max);
        if (server is not null) cmd.With("server", server);
        var items = new List<WorkItem>();
        await using (var r = await cmd.ExecuteReaderAsync(ct))
        {
            while (await r.ReadAsync(ct))
                items.Add(new WorkItem(r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetInt32(4), r.GetInt32(5),
                    DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(6)), r.GetInt32(7)));
        }
        await tx.CommitAsync(ct);
        return items.OrderBy(i => i.Id).ToList();
    }

    /// <summary>
    /// Marks a leased row done. When an event for the same resource arrived while it was processed (generation moved
    /// on), the row stays pending and due now instead, so the newer state is read. False when the lease was lost.
    /// Earlier dead letters of the same resource are settled (state replayed): it has been processed since, so an
    /// operator is not sent to replay what is already done.
    /// </summary>
    /// <param name="assessedVersion">The resource version that was read and assessed, when known.</param>
    /// <param name="series">The series key of the outputs the assessment wrote or found, kept with the version.</param>
    /// <param name="knowledgeVersion">The knowledge version the assessment was made with, kept with the version.</param>
    public async Task<bool> CompleteAsync(WorkItem item, string owner, string outcome, CancellationToken ct, string? assessedVersion = null, string? series = null,
        string? knowledgeVersion = null)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var tx = await c.BeginTransactionAsync(ct);
        await using var done = c.Command("""
            UPDATE work_item SET state = 'done', outcome = @outcome, finished_at = @now, lease_owner = NULL, lease_until = NULL
            WHERE id = @id AND lease_owner = @owner AND generation = @generation AND state = 'pending'
            """, tx).With("outcome", outcome).With("now", Now).With("id", item.Id).With("owner", owner).With("generation", item.Generation);
        bool completed = await done.ExecuteNonQueryAsync(ct) == 1;
        if (!completed)
        {
            // The attempt succeeded: the re-run for the newer event starts counting afresh.
            await using var again = c.Command("""
                UPDATE work_item SET due_at = @now, outcome = @outcome, lease_owner = NULL, lease_until = NULL, attempts = 0
                WHERE id = @id AND lease_owner = @owner AND state = 'pending'
                """, tx).With("now", Now).With("outcome", outcome).With("id", item.Id).With("owner", owner);
            if (await again.ExecuteNonQueryAsync(ct) == 0) return false; // the lease was lost: another worker owns the row
        }
        await using (var settled = c.Command("""
            UPDATE work_item SET state = 'replayed' WHERE state = 'dead' AND server = @server AND resource_type = @type AND resource_id = @id
            """, tx).With("server", item.Server).With("type", item.ResourceType).With("id", item.ResourceId))
            await settled.ExecuteNonQueryAsync(ct);
        if (assessedVersion is not null)
        {
            await using var seen = c.Command("""
                INSERT INTO worker_assessed (server, resource_type, resource_id, version_id, series, knowledge_version)
                VALUES (@server, @type, @id, @version, @series, @knowledge)
                ON CONFLICT (server, resource_type, resource_id) DO UPDATE SET version_id = excluded.version_id,
                    series = COALESCE(excluded.series, worker_assessed.series), knowledge_version = excluded.knowledge_version
                """, tx).With("server", item.Server).With("type", item.ResourceType).With("id", item.ResourceId).With("version", assessedVersion)
                .With("series", series).With("knowledge", knowledgeVersion);
            await seen.ExecuteNonQueryAsync(ct);
        }
        await tx.CommitAsync(ct);
        return true;
    }

    /// <summary>The version and series key kept for the last assessment of a resource (see <see cref="CompleteAsync"/>), if any.</summary>
    public async Task<(string? Version, string? Series)> LastAssessedAsync(string server, string type, string id, CancellationToken ct)
    {
        await using var c = await db.OpenAsync(ct);
        await using var cmd = c.Command("SELECT version_id, series FROM worker_assessed WHERE server = @server AND resource_type = @type AND resource_id = @id")
            .With("server", server).With("type", type).With("id", id);
        await using var row = await cmd.ExecuteReaderAsync(ct);
        return await row.ReadAsync(ct) ? (row.IsDBNull(0) ? null : row.GetString(0), row.IsDBNull(1) ? null : row.GetString(1)) : (null, null);
    }

    /// <summary>
    /// Extends the lease of a row being processed; false when it was lost (it ran out and another worker took it),
    /// so the holder stops instead of processing the row at the same time as the new owner.
    /// </summary>
    public async Task<bool> RenewAsync(WorkItem item, string owner, TimeSpan lease, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var cmd = c.Command("""
            UPDATE work_item SET lease_until = @until
            WHERE id = @id AND lease_owner = @owner AND state = 'pending'
            """).With("until", Now + (long)lease.TotalMilliseconds).With("id", item.Id).With("owner", owner);
        return await cmd.ExecuteNonQueryAsync(ct) == 1;
    }

    /// <summary>
    /// Gives a leased row back to be tried again after <paramref name="delay"/>, with the reason of this attempt.
    /// <paramref name="failed"/> false (handed back at a stop, not tried) does not count the lease as an attempt. When
    /// an event for the resource arrived meanwhile (generation moved on), the row is due now: the newer state may
    /// succeed where this attempt failed, and an event must not wait out an earlier one's backoff.
    /// </summary>
    public async Task<bool> RetryAsync(WorkItem item, string owner, string reason, TimeSpan delay, CancellationToken ct, bool failed = true)
    {
        long now = Now;
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var cmd = c.Command($"""
            UPDATE work_item SET due_at = CASE WHEN generation = @generation THEN @due ELSE @now END, outcome = @reason,
                                 lease_owner = NULL, lease_until = NULL{(failed ? "" : ", attempts = attempts - 1")}
            WHERE id = @id AND lease_owner = @owner AND state = 'pending'
            """).With("due", now + (long)delay.TotalMilliseconds).With("now", now).With("generation", item.Generation)
            .With("reason", reason).With("id", item.Id).With("owner", owner);
        return await cmd.ExecuteNonQueryAsync(ct) == 1;
    }

    /// <summary>
    /// Moves a leased row to the dead letters, with the reason. When an event for the resource arrived while this
    /// attempt ran (generation moved on), the row stays pending, due now with its attempts counted afresh, as in
    /// <see cref="CompleteAsync"/>: the newer event was acknowledged and must not be buried with the older one.
    /// True only when the row is a dead letter now (false: kept for the newer event, or the lease was lost).
    /// </summary>
    public async Task<bool> DeadLetterAsync(WorkItem item, string owner, string reason, CancellationToken ct)
    {
        long now = Now;
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var cmd = c.Command("""
            UPDATE work_item SET state = CASE WHEN generation = @generation THEN 'dead' ELSE 'pending' END,
                                 finished_at = CASE WHEN generation = @generation THEN @now ELSE finished_at END,
                                 due_at = CASE WHEN generation = @generation THEN due_at ELSE @now END,
                                 attempts = CASE WHEN generation = @generation THEN attempts ELSE 0 END,
                                 outcome = @reason, lease_owner = NULL, lease_until = NULL
            WHERE id = @id AND lease_owner = @owner AND state = 'pending'
            RETURNING state
            """).With("reason", reason).With("now", now).With("generation", item.Generation).With("id", item.Id).With("owner", owner);
        return await cmd.ExecuteScalarAsync(ct) as string == "dead";
    }

    public async Task<IReadOnlyList<DeadLetter>> DeadLettersAsync(int max, CancellationToken ct, string? server = null)
    {
        await using var c = await db.OpenAsync(ct);
        await using var cmd = c.Command($"""
            SELECT id, resource_type, resource_id, outcome, attempts, enqueued_at, finished_at FROM work_item
            WHERE state = 'dead'{(server is null ? "" : " AND server = @server")} ORDER BY finished_at DESC, id DESC LIMIT @max
            """).With("max", max);
        if (server is not null) cmd.With("server", server);
        var list = new List<DeadLetter>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
            list.Add(new DeadLetter(r.GetInt64(0), r.GetString(1), r.GetString(2), r.IsDBNull(3) ? "" : r.GetString(3), r.GetInt32(4),
                DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(5)), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(6))));
        return list;
    }

    /// <summary>
    /// Queues a dead letter of <paramref name="server"/> again (one transaction); false when it has no such dead letter
    /// (one of another server, in a store several deployments share, is theirs: listed, counted and replayed there).
    /// </summary>
    public async Task<bool> ReplayAsync(long deadLetterId, string server, CancellationToken ct) =>
        await ReplayWhereAsync("id = @id AND server = @server", cmd => cmd.With("id", deadLetterId).With("server", server), ct) == 1;

    /// <summary>
    /// Replays every dead letter of <paramref name="server"/>, or only those with <paramref name="reason"/> (after an
    /// outage or a fixed grant, hundreds may wait); returns how many were queued again.
    /// </summary>
    public Task<int> ReplayAllAsync(string server, string? reason, CancellationToken ct) =>
        ReplayWhereAsync("server = @server" + (reason is null ? "" : " AND outcome = @reason"), cmd =>
        {
            cmd.With("server", server);
            if (reason is not null) cmd.With("reason", reason);
        }, ct);

    /// <summary>Marks the dead letters matching <paramref name="where"/> replayed and queues their resources again, in one transaction.</summary>
    private async Task<int> ReplayWhereAsync(string where, Action<DbCommand> bind, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var tx = await c.BeginTransactionAsync(ct);
        await using var mark = c.Command($"""
            UPDATE work_item SET state = 'replayed' WHERE state = 'dead' AND {where}
            RETURNING server, resource_type, resource_id
            """, tx);
        bind(mark);
        var rows = new List<(string Server, string Type, string Id)>();
        await using (var r = await mark.ExecuteReaderAsync(ct))
            while (await r.ReadAsync(ct)) rows.Add((r.GetString(0), r.GetString(1), r.GetString(2)));
        foreach (var byServer in rows.GroupBy(x => x.Server))
            await EnqueueAsync(c, tx, byServer.Key, byServer.Select(x => (x.Type, x.Id, (string?)null)), "replay", ct);
        await tx.CommitAsync(ct);
        return rows.Count;
    }

    /// <summary>
    /// Queues again every resource of <paramref name="server"/> last assessed with a knowledge version other than
    /// <paramref name="knowledgeVersion"/> (or not known), or every resource assessed when <paramref name="all"/>: after
    /// a knowledge upgrade, results keep their earlier outputs until something about them changes, and this is how an
    /// operator has them all assessed with the knowledge in use. They are due one every <paramref name="spacing"/>
    /// from now (queued to start then, which is when their lag counts from), so results that arrive meanwhile, due at
    /// once, go before most of them. Asked again, the ones still waiting for it alone are paced anew (a slower pace for
    /// a busy server); a row being processed, retried, or waiting for an event of its own is left as it is, and nothing
    /// is queued twice. One transaction. Returns how many wait for the re-assessment at this pace.
    /// </summary>
    public async Task<int> EnqueueReassessmentAsync(string server, string knowledgeVersion, bool all, TimeSpan spacing, CancellationToken ct)
    {
        long now = Now;
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var tx = await c.BeginTransactionAsync(ct);
        await using (var repace = c.Command("""
            DELETE FROM work_item WHERE server = @server AND state = 'pending' AND source = 'knowledge'
                                    AND generation = 0 AND attempts = 0 AND lease_owner IS NULL
            """, tx).With("server", server))
            await repace.ExecuteNonQueryAsync(ct);
        // WHERE true: SQLite needs a WHERE before ON CONFLICT to tell the upsert from a join.
        await using var cmd = c.Command($"""
            INSERT INTO work_item (server, resource_type, resource_id, source, state, enqueued_at, due_at)
            SELECT server, resource_type, resource_id, 'knowledge', 'pending', @now + n * @spacing, @now + n * @spacing
            FROM (SELECT server, resource_type, resource_id, ROW_NUMBER() OVER (ORDER BY resource_type, resource_id) - 1 AS n
                  FROM worker_assessed
                  WHERE server = @server{(all ? "" : " AND (knowledge_version IS NULL OR knowledge_version <> @knowledge)")}) AS stale
            WHERE true
            ON CONFLICT (server, resource_type, resource_id) WHERE state = 'pending' DO NOTHING
            """, tx).With("server", server).With("now", now).With("knowledge", knowledgeVersion).With("spacing", (long)spacing.TotalMilliseconds);
        int queued = await cmd.ExecuteNonQueryAsync(ct);
        await tx.CommitAsync(ct);
        return queued;
    }

    /// <summary>How many resources of <paramref name="server"/> were last assessed with another (or an unknown) knowledge version.</summary>
    public async Task<long> AssessedWithOtherKnowledgeAsync(string server, string knowledgeVersion, CancellationToken ct)
    {
        await using var c = await db.OpenAsync(ct);
        await using var cmd = c.Command("""
            SELECT COUNT(*) FROM worker_assessed WHERE server = @server AND (knowledge_version IS NULL OR knowledge_version <> @knowledge)
            """).With("server", server).With("knowledge", knowledgeVersion);
        return Convert.ToInt64(await cmd.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Deletes finished rows (done, replayed) older than <paramref name="age"/>; dead letters stay until replayed.</summary>
    public async Task<int> PurgeAsync(TimeSpan age, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var cmd = c.Command("DELETE FROM work_item WHERE state IN ('done', 'replayed') AND finished_at < @before")
            .With("before", Now - (long)age.TotalMilliseconds);
        return await cmd.ExecuteNonQueryAsync(ct);
    }

    /// <summary>Queue depth (due or leased), leased rows, dead letters, done rows, and the age of the oldest pending row.</summary>
    public async Task<QueueStats> StatsAsync(CancellationToken ct, string? server = null)
    {
        long now = Now;
        await using var c = await db.OpenAsync(ct);
        await using var cmd = c.Command($"""
            SELECT
              COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0),
              COALESCE(SUM(CASE WHEN state = 'pending' AND lease_until >= @now THEN 1 ELSE 0 END), 0),
              COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0),
              COALESCE(SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0),
              MIN(CASE WHEN state = 'pending' THEN enqueued_at END)
            FROM work_item{(server is null ? "" : " WHERE server = @server")}
            """).With("now", now);
        if (server is not null) cmd.With("server", server);
        await using var r = await cmd.ExecuteReaderAsync(ct);
        await r.ReadAsync(ct);
        var lag = r.IsDBNull(4) ? TimeSpan.Zero : TimeSpan.FromMilliseconds(Math.Max(0, now - r.GetInt64(4)));
        return new QueueStats(r.GetInt64(0), r.GetInt64(1), r.GetInt64(2), r.GetInt64(3), lag);
    }

    /// <summary>
    /// Moves everything kept for <paramref name="from"/> to <paramref name="to"/>, in one transaction: the same FHIR
    /// server under a new address (MagCds:Worker:PreviousServerUrl). Waiting rows (one waiting for the same resource
    /// under the new address already stays that one), dead letters and finished rows, the versions assessed, and the
    /// state values the new address does not have yet (the poll cursor, event numbers). Returns the waiting rows and
    /// dead letters moved; a second call finds nothing left.
    /// </summary>
    public async Task<(int Pending, int Dead)> MoveServerAsync(string from, string to, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var tx = await c.BeginTransactionAsync(ct);
        async Task<int> RunAsync(string sql)
        {
            await using var cmd = c.Command(sql, tx).With("from", from).With("to", to);
            if (sql.Contains("@now", StringComparison.Ordinal)) cmd.With("now", Now);
            return await cmd.ExecuteNonQueryAsync(ct);
        }
        int pending = await RunAsync("""
            UPDATE work_item SET server = @to WHERE server = @from AND state = 'pending' AND NOT EXISTS (
              SELECT 1 FROM work_item p WHERE p.server = @to AND p.state = 'pending' AND p.resource_type = work_item.resource_type AND p.resource_id = work_item.resource_id)
            """);
        await RunAsync("UPDATE work_item SET state = 'done', outcome = 'moved-duplicate', finished_at = @now, lease_owner = NULL, lease_until = NULL WHERE server = @from AND state = 'pending'");
        int dead = await RunAsync("UPDATE work_item SET server = @to WHERE server = @from AND state = 'dead'");
        await RunAsync("UPDATE work_item SET server = @to WHERE server = @from");
        await RunAsync("""
            UPDATE worker_assessed SET server = @to WHERE server = @from AND NOT EXISTS (
              SELECT 1 FROM worker_assessed a WHERE a.server = @to AND a.resource_type = worker_assessed.resource_type AND a.resource_id = worker_assessed.resource_id)
            """);
        await RunAsync("DELETE FROM worker_assessed WHERE server = @from");
        await RunAsync("""
            INSERT INTO worker_state (server, name, value)
            SELECT @to, s.name, s.value FROM worker_state s WHERE s.server = @from AND s.value <> ''
            ON CONFLICT (server, name) DO UPDATE SET value = excluded.value WHERE worker_state.value = ''
            """); // an empty value is "not set" (a cleared gap, a row made to be locked): the old address's value wins
        await RunAsync("DELETE FROM worker_state WHERE server = @from");
        await tx.CommitAsync(ct);
        return (pending, dead);
    }

    /// <summary>Waiting rows and dead letters kept under other server addresses than <paramref name="server"/>.</summary>
    public async Task<IReadOnlyDictionary<string, (long Pending, long Dead)>> ElsewhereAsync(string server, CancellationToken ct)
    {
        await using var c = await db.OpenAsync(ct);
        await using var cmd = c.Command("""
            SELECT server, COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0)
            FROM work_item WHERE server <> @server AND state IN ('pending', 'dead') GROUP BY server ORDER BY server
            """).With("server", server);
        var d = new Dictionary<string, (long, long)>(StringComparer.Ordinal);
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct)) d[r.GetString(0)] = (r.GetInt64(1), r.GetInt64(2));
        return d;
    }

    /// <summary>The servers that have a state value of this name (a poll cursor, say).</summary>
    public async Task<IReadOnlyList<string>> ServersWithStateAsync(string name, CancellationToken ct)
    {
        await using var c = await db.OpenAsync(ct);
        await using var cmd = c.Command("SELECT server FROM worker_state WHERE name = @name ORDER BY server").With("name", name);
        var list = new List<string>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct)) list.Add(r.GetString(0));
        return list;
    }

    public async Task<string?> GetStateAsync(string server, string name, CancellationToken ct)
    {
        await using var c = await db.OpenAsync(ct);
        await using var cmd = c.Command("SELECT value FROM worker_state WHERE server = @server AND name = @name").With("server", server).With("name", name);
        return await cmd.ExecuteScalarAsync(ct) as string;
    }

    /// <summary>Every state value of a server whose name starts with <paramref name="prefix"/>.</summary>
    public async Task<IReadOnlyDictionary<string, string>> StatesAsync(string server, string prefix, CancellationToken ct)
    {
        await using var c = await db.OpenAsync(ct);
        await using var cmd = c.Command("SELECT name, value FROM worker_state WHERE server = @server AND substr(name, 1, @n) = @prefix")
            .With("server", server).With("n", prefix.Length).With("prefix", prefix);
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct)) d[r.GetString(0)] = r.GetString(1);
        return d;
    }

    /// <summary>
    /// Reads state values and writes what <paramref name="change"/> makes of them in one transaction, the rows locked
    /// from the read to the commit: a read-modify-write that concurrent callers (notifications on other threads or
    /// replicas) cannot interleave, so none of them works from a stale value or overwrites another's change.
    /// </summary>
    /// <param name="change">Given the current values (null: not set), returns the values to write.</param>
    public async Task<T> UpdateStateAsync<T>(string server, IReadOnlyList<string> names,
        Func<IReadOnlyDictionary<string, string?>, (IReadOnlyDictionary<string, string> Set, T Result)> change, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var tx = await c.BeginTransactionAsync(ct);
        var current = names.ToDictionary(n => n, _ => (string?)null, StringComparer.Ordinal);
        foreach (var name in names)
        {
            // A row that does not exist yet cannot be locked: made first (empty, which every reader takes as not set),
            // in the same order by every caller, so two never wait for each other.
            await using (var make = c.Command("INSERT INTO worker_state (server, name, value) VALUES (@server, @name, '') ON CONFLICT (server, name) DO NOTHING", tx)
                             .With("server", server).With("name", name))
                await make.ExecuteNonQueryAsync(ct);
            await using var read = c.Command($"SELECT value FROM worker_state WHERE server = @server AND name = @name {db.Sql.ForUpdate}", tx)
                .With("server", server).With("name", name);
            current[name] = await read.ExecuteScalarAsync(ct) is string { Length: > 0 } v ? v : null;
        }
        var (set, result) = change(current);
        foreach (var (name, value) in set) await SetStateAsync(c, tx, server, name, value, ct);
        await tx.CommitAsync(ct);
        return result;
    }

    /// <summary>
    /// Claims a named lock of a server for <paramref name="owner"/> until <paramref name="hold"/> from now, when it is
    /// free, released or expired; false while another owner holds it. Shared by replicas through the store.
    /// </summary>
    public async Task<bool> TryClaimAsync(string server, string name, string owner, TimeSpan hold, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        // The value starts with the expiry as 19 digits, so the database compares it as text in time order whatever
        // its collation; '' (released) sorts before every expiry.
        await using var cmd = c.Command("""
            INSERT INTO worker_state (server, name, value) VALUES (@server, @name, @value)
            ON CONFLICT (server, name) DO UPDATE SET value = excluded.value
            WHERE substr(worker_state.value, 1, 19) < @now
            """).With("server", server).With("name", name).With("value", Claim(Now + (long)hold.TotalMilliseconds, owner)).With("now", Claim(Now, null));
        return await cmd.ExecuteNonQueryAsync(ct) == 1;
    }

    /// <summary>Releases a lock claimed with <see cref="TryClaimAsync"/>, if <paramref name="owner"/> still holds it.</summary>
    public async Task ReleaseClaimAsync(string server, string name, string owner, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var cmd = c.Command("UPDATE worker_state SET value = '' WHERE server = @server AND name = @name AND substr(value, 21) = @owner")
            .With("server", server).With("name", name).With("owner", owner);
        await cmd.ExecuteNonQueryAsync(ct);
    }

    private static string Claim(long until, string? owner) =>
        until.ToString("D19", System.Globalization.CultureInfo.InvariantCulture) + (owner is null ? "" : "|" + owner);

    public async Task SetStateAsync(string server, string name, string value, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await SetStateAsync(c, null, server, name, value, ct);
    }

    private static async Task SetStateAsync(DbConnection c, DbTransaction? tx, string server, string name, string value, CancellationToken ct)
    {
        await using var cmd = c.Command("""
            INSERT INTO worker_state (server, name, value) VALUES (@server, @name, @value)
            ON CONFLICT (server, name) DO UPDATE SET value = excluded.value
            """, tx).With("server", server).With("name", name).With("value", value);
        await cmd.ExecuteNonQueryAsync(ct);
    }
}
