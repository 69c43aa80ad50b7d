using System.Net;
using MagCds.Service.Storage;
using MagCds.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace MagCds.Tests.Storage;

/// <summary>
/// SQLite's log is copied into the database by a background checkpoint, not inside a commit (where it held the single
/// writer for tens of milliseconds while CDS Hooks calls waited to record their jti), and nothing is lost on the way.
/// </summary>
public sealed class SqliteCheckpointerTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 26, 8, 0, 0, TimeSpan.Zero);

    [Test]
    public async Task Commits_do_not_checkpoint_by_themselves_at_SQLite_s_default_of_1000_pages()
    {
        var clock = new FixedClock(Now);
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(StoreProvider.Sqlite));
        var guard = new ReplayGuard(db, clock);
        // 1,200 commits of at least one page each: past SQLite's default threshold, short of the backstop (10,000).
        for (int i = 0; i < 1_200; i++)
            Assert.That(await guard.FirstUseAsync($"issuer|jti-{i}", Now.AddMinutes(5), CancellationToken.None), Is.True);
        var (log, _) = await new SqliteCheckpointer(db, clock, NullLogger<SqliteCheckpointer>.Instance).CheckpointAsync(CancellationToken.None);
        Assert.That(log, Is.GreaterThan(1_200), "no commit copied the log into the database on its way (left to the background checkpoints)");
    }

    [Test]
    public async Task A_checkpoint_copies_the_whole_log_and_what_was_written_stays()
    {
        var options = await StoreUnderTest.OptionsAsync(StoreProvider.Sqlite);
        var clock = new FixedClock(Now);
        await using (var db = StoreUnderTest.Open(options))
        {
            var guard = new ReplayGuard(db, clock);
            for (int i = 0; i < 300; i++)
                Assert.That(await guard.FirstUseAsync($"issuer|jti-{i}", Now.AddMinutes(5), CancellationToken.None), Is.True);

            var (log, copied) = await new SqliteCheckpointer(db, clock, NullLogger<SqliteCheckpointer>.Instance).CheckpointAsync(CancellationToken.None);
            Assert.That(log, Is.GreaterThan(300), "300 commits, each at least one page, are all still in the log");
            Assert.That(copied, Is.EqualTo(log), "nothing was reading, so every frame is copied");
        }

        await using var reopened = StoreUnderTest.Open(options);
        var again = new ReplayGuard(reopened, clock);
        Assert.That(await again.FirstUseAsync("issuer|jti-299", Now.AddMinutes(5), CancellationToken.None), Is.False, "a replay is still refused");
        Assert.That(await again.FirstUseAsync("issuer|jti-300", Now.AddMinutes(5), CancellationToken.None), Is.True);
    }

    [Test]
    public async Task The_service_checkpoints_in_the_background()
    {
        using var f = new MagCdsFactory();
        using var client = f.CreateClient();
        using (var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(TestFiles.Text("Observation-btu-medium.json"), "application/fhir+json") })
        {
            req.Headers.Add("X-Request-Id", "CHECKPOINTED-1");
            using var r = await client.SendAsync(req);
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK)); // its audit entry is a commit to the store's log
        }

        // Until a checkpoint copies it, the commit is only in the log: a copy of the database file alone lacks it.
        await WorkerHarness.WaitUntilAsync(async () => await DatabaseFileAloneHoldsAsync(f.StorePath, "CHECKPOINTED-1"),
            "a background checkpoint has copied the audit entry into the database file", 10);
        Assert.That(f.Services.GetRequiredService<SqliteCheckpointer>().Last, Is.Not.Null);
    }

    private static async Task<bool> DatabaseFileAloneHoldsAsync(string path, string correlationId)
    {
        string copy = Path.Combine(Path.GetTempPath(), $"magcds-copy-{Guid.NewGuid():N}.db");
        try
        {
            File.Copy(path, copy);
            await using var c = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={copy};Pooling=False");
            await c.OpenAsync();
            await using var cmd = c.Command("SELECT count(*) FROM audit_event WHERE correlation_id = @id").With("id", correlationId);
            return Convert.ToInt64(await cmd.ExecuteScalarAsync()) == 1;
        }
        catch (Microsoft.Data.Sqlite.SqliteException)
        {
            return false; // copied mid-write, or before the table reached the file: try again
        }
        finally
        {
            foreach (var suffix in (string[])["", "-wal", "-shm"]) File.Delete(copy + suffix);
        }
    }
}
