using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Storage;

/// <summary>One CDS Hooks feedback item as received (the user comment may hold PHI: it is stored, never logged).</summary>
public sealed record FeedbackItem(
    string ServiceId, string Card, string Outcome, IReadOnlyList<string> AcceptedSuggestions,
    string? OverrideSystem, string? OverrideCode, string? OverrideDisplay, string? UserComment, DateTimeOffset OutcomeTimestamp);

public sealed record FeedbackCount(string ServiceId, string Outcome, string? OverrideCode, long Count);

/// <summary>
/// Durable CDS Hooks feedback in SQLite (the embedded store). Storing is idempotent: the same item sent again (same
/// service, card, outcome and time) is kept once, since clients may repeat feedback.
/// </summary>
public sealed class FeedbackStore
{
    private readonly string _connectionString;

    public FeedbackStore(IOptions<StoreOptions> options)
    {
        _connectionString = options.Value.SqliteConnectionString;
        using var c = Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS cds_feedback (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                service_id TEXT NOT NULL,
                card_uuid TEXT NOT NULL,
                outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
                accepted_suggestions TEXT NOT NULL,
                override_system TEXT, override_code TEXT, override_display TEXT,
                user_comment TEXT,
                outcome_timestamp TEXT NOT NULL,
                UNIQUE (service_id, card_uuid, outcome, outcome_timestamp));
            """;
        cmd.ExecuteNonQuery();
    }

    private SqliteConnection Open()
    {
        var c = new SqliteConnection(_connectionString);
        c.Open();
        return c;
    }

    /// <summary>Stores all items in one transaction (all or nothing); returns how many were new.</summary>
    public async Task<int> AddAsync(IReadOnlyList<FeedbackItem> items, CancellationToken ct)
    {
        await using var c = Open();
        await using var tx = (SqliteTransaction)await c.BeginTransactionAsync(ct);
        int added = 0;
        foreach (var f in items)
        {
            await using var cmd = c.CreateCommand();
            cmd.Transaction = tx;
            cmd.CommandText = """
                INSERT OR IGNORE INTO cds_feedback (service_id, card_uuid, outcome, accepted_suggestions, override_system, override_code, override_display, user_comment, outcome_timestamp)
                VALUES ($s, $c, $o, $a, $rs, $rc, $rd, $u, $t)
                """;
            cmd.Parameters.AddWithValue("$s", f.ServiceId);
            cmd.Parameters.AddWithValue("$c", f.Card);
            cmd.Parameters.AddWithValue("$o", f.Outcome);
            cmd.Parameters.AddWithValue("$a", string.Join(",", f.AcceptedSuggestions));
            cmd.Parameters.AddWithValue("$rs", (object?)f.OverrideSystem ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$rc", (object?)f.OverrideCode ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$rd", (object?)f.OverrideDisplay ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$u", (object?)f.UserComment ?? DBNull.Value);
            cmd.Parameters.AddWithValue("$t", f.OutcomeTimestamp.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", System.Globalization.CultureInfo.InvariantCulture));
            added += await cmd.ExecuteNonQueryAsync(ct);
        }
        await tx.CommitAsync(ct);
        return added;
    }

    public async Task<IReadOnlyList<FeedbackCount>> CountsAsync(CancellationToken ct)
    {
        await using var c = Open();
        await using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT service_id, outcome, override_code, COUNT(*) FROM cds_feedback GROUP BY service_id, outcome, override_code ORDER BY 1, 2, 3";
        var list = new List<FeedbackCount>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
            list.Add(new FeedbackCount(r.GetString(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2), r.GetInt64(3)));
        return list;
    }
}
