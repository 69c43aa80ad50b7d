namespace MagCds.Service.Storage;

/// <summary>
/// Remembers one-time token ids (CDS Hooks JWT jti) in the store until they expire, so a token is accepted once
/// across every replica that shares the store, and across restarts.
/// </summary>
public sealed class ReplayGuard(Database db, TimeProvider time)
{
    private long _lastSweep;

    /// <summary>True the first time <paramref name="key"/> is seen before <paramref name="until"/>; false for a replay.</summary>
    public async Task<bool> FirstUseAsync(string key, DateTimeOffset until, CancellationToken ct)
    {
        long now = time.GetUtcNow().ToUnixTimeMilliseconds();
        await using var w = await db.OpenWriterAsync(ct);
        var c = w.Connection;
        // An entry whose token has expired may be taken over; a live one may not.
        await using var cmd = c.Command("""
            INSERT INTO seen_token (token_key, expires_at) VALUES (@key, @until)
            ON CONFLICT (token_key) DO UPDATE SET expires_at = excluded.expires_at WHERE seen_token.expires_at < @now
            """).With("key", key).With("until", until.ToUnixTimeMilliseconds()).With("now", now);
        bool first = await cmd.ExecuteNonQueryAsync(ct) == 1;
        if (now - Interlocked.Read(ref _lastSweep) > 60_000)
        {
            Interlocked.Exchange(ref _lastSweep, now);
            // Housekeeping after the token is recorded: its failure must not fail the call (a retry with the same
            // token would then be refused as a replay); the next sweep takes what this one left.
            try
            {
                await using var sweep = c.Command("DELETE FROM seen_token WHERE expires_at < @now").With("now", now);
                await sweep.ExecuteNonQueryAsync(ct);
            }
            catch (System.Data.Common.DbException) { }
        }
        return first;
    }
}
