namespace MagCds.Service.Storage;

/// <summary>One CDS Hooks feedback item as received (the user comment may hold PHI: it is stored, never logged).</summary>
public sealed record FeedbackItem(
    string ServiceId, string Card, string Outcome, IReadOnlyList<string> AcceptedSuggestions,
    string? OverrideSystem, string? OverrideCode, string? OverrideDisplay, string? UserComment, DateTimeOffset OutcomeTimestamp);

public sealed record FeedbackCount(string ServiceId, string Outcome, string? OverrideCode, long Count);

/// <summary>Feedback of one day (UTC, from the outcome time stamp) by outcome and override reason.</summary>
public sealed record FeedbackDay(string Day, string Outcome, string? OverrideCode, long Count);

/// <summary>
/// Durable CDS Hooks feedback. Storing is idempotent: the same item sent again (same service, card, outcome and
/// time) is kept once, since clients may repeat feedback.
/// </summary>
public sealed class FeedbackStore(Database db)
{
    /// <summary>How a time stamp is stored: ISO-8601 UTC text, so comparing and cutting it works alike on both databases.</summary>
    private static string Stamp(DateTimeOffset d) => d.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Stores the items in one transaction; returns those that were new (an item sent again is kept once).</summary>
    public async Task<IReadOnlyList<FeedbackItem>> AddAsync(IReadOnlyList<FeedbackItem> items, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        await using var tx = await c.BeginTransactionAsync(ct);
        var added = new List<FeedbackItem>();
        foreach (var f in items)
        {
            await using var cmd = c.Command("""
                INSERT INTO cds_feedback (service_id, card_uuid, outcome, accepted_suggestions, override_system, override_code, override_display, user_comment, outcome_timestamp)
                VALUES (@s, @c, @o, @a, @rs, @rc, @rd, @u, @t)
                ON CONFLICT DO NOTHING
                """, tx)
                .With("s", f.ServiceId).With("c", f.Card).With("o", f.Outcome).With("a", string.Join(",", f.AcceptedSuggestions))
                .With("rs", f.OverrideSystem).With("rc", f.OverrideCode).With("rd", f.OverrideDisplay).With("u", f.UserComment)
                .With("t", Stamp(f.OutcomeTimestamp));
            if (await cmd.ExecuteNonQueryAsync(ct) == 1) added.Add(f);
        }
        await tx.CommitAsync(ct);
        return added;
    }

    /// <summary>Erases the comments of feedback from before <paramref name="before"/>; returns how many.</summary>
    public async Task<int> ForgetCommentsAsync(DateTimeOffset before, CancellationToken ct)
    {
        await using var w = await db.OpenWriterAsync(ct);
        await using var cmd = w.Connection.Command("UPDATE cds_feedback SET user_comment = NULL WHERE user_comment IS NOT NULL AND outcome_timestamp < @before")
            .With("before", Stamp(before));
        return await cmd.ExecuteNonQueryAsync(ct);
    }

    public async Task<IReadOnlyList<FeedbackCount>> CountsAsync(CancellationToken ct)
    {
        await using var c = await db.OpenAsync(ct);
        await using var cmd = c.Command("SELECT service_id, outcome, override_code, COUNT(*) FROM cds_feedback GROUP BY service_id, outcome, override_code ORDER BY 1, 2, 3");
        var list = new List<FeedbackCount>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
            list.Add(new FeedbackCount(r.GetString(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2), r.GetInt64(3)));
        return list;
    }

    /// <summary>Feedback per day since <paramref name="since"/>, oldest first (the console's chart).</summary>
    public async Task<IReadOnlyList<FeedbackDay>> DailyAsync(DateTimeOffset since, CancellationToken ct)
    {
        await using var c = await db.OpenAsync(ct);
        // Time stamps are stored as ISO-8601 UTC text, so the first 10 characters are the day on both databases.
        await using var cmd = c.Command("""
            SELECT substr(outcome_timestamp, 1, 10) AS day, outcome, override_code, COUNT(*) FROM cds_feedback
            WHERE outcome_timestamp >= @since GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
            """).With("since", Stamp(since));
        var list = new List<FeedbackDay>();
        await using var r = await cmd.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
            list.Add(new FeedbackDay(r.GetString(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2), r.GetInt64(3)));
        return list;
    }
}
