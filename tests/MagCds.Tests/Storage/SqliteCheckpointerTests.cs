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
    public async Task Commits_checkpoint_by_themselves_only_past_the_raised_backstop()
    {
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(StoreProvider.Sqlite));
        await using var c = await db.OpenAsync(CancellationToken.None);
        await using var cmd = c.Command("PRAGMA wal_autocheckpoint;");
        Assert.That(Convert.ToInt64(await cmd.ExecuteScalarAsync()), Is.EqualTo(10_000), "SQLite's default is 1,000 pages");
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
        using (var r = await client.PostAsync(Http.Evaluate, Http.Raw(TestFiles.Text("Observation-btu-medium.json"), "application/fhir+json")))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK)); // its audit entry is a write to the store

        var checkpointer = f.Services.GetRequiredService<SqliteCheckpointer>();
        await WorkerHarness.WaitUntilAsync(() => Task.FromResult(checkpointer.Last is { LogFrames: > 0 } last && last.CheckpointedFrames == last.LogFrames),
            "a checkpoint has copied the audit entry's commit", 10);
    }
}
