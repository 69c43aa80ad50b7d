using System.Data.Common;

namespace MagCds.Service.Storage;

/// <summary>
/// Copies SQLite's write-ahead log into the database once a second, beside the writers instead of inside one of
/// their commits (see <see cref="Database.OpenAsync"/>). A passive checkpoint waits for nobody and nobody waits for
/// it. Does nothing with PostgreSQL.
/// </summary>
public sealed partial class SqliteCheckpointer(Database db, TimeProvider time, ILogger<SqliteCheckpointer> logger) : BackgroundService
{
    internal static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    /// <summary>The outcome of one checkpoint: frames in the log, and how many of them are now in the database.</summary>
    public sealed record Result(long LogFrames, long CheckpointedFrames);

    /// <summary>The latest checkpoint's outcome (a reference, so a reader on another thread never sees half of it).</summary>
    public Result? Last { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (db.Provider != StoreProvider.Sqlite) return;
        using var timer = new PeriodicTimer(Interval, time);
        bool failing = false;
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    Last = await CheckpointAsync(stoppingToken);
                    failing = false;
                }
                catch (DbException e) when (!failing)
                {
                    // Logged once per failure spell; the commits' own checkpoints still bound the log meanwhile.
                    failing = true;
                    Failed(logger, e.GetType().Name);
                }
                catch (DbException) { }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { }
    }

    /// <summary>One passive checkpoint: returns the log's frames and how many of them are in the database now.</summary>
    public async Task<Result> CheckpointAsync(CancellationToken ct)
    {
        await using var c = await db.OpenAsync(ct);
        await using var cmd = c.Command("PRAGMA wal_checkpoint(PASSIVE);");
        await using var r = await cmd.ExecuteReaderAsync(ct);
        // One row: busy flag, frames in the log, frames checkpointed (-1 and -1 when the database is not in WAL mode).
        if (!await r.ReadAsync(ct)) return new Result(0, 0);
        return new Result(r.GetInt64(1), r.GetInt64(2));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "SQLite checkpoint failed ({Reason}); retrying every second")]
    private static partial void Failed(ILogger logger, string reason);
}
