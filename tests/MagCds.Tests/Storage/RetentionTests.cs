using MagCds.Service.Audit;
using MagCds.Service.Storage;
using MagCds.Service.Worker;
using MagCds.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace MagCds.Tests.Storage;

/// <summary>The store's retention runs at start-up and then every hour of the service's clock, on either store.</summary>
[TestFixture(StoreProvider.Sqlite)]
[TestFixture(StoreProvider.Postgres)]
public sealed class RetentionTests(StoreProvider provider)
{
    private static FeedbackItem Item(string card, DateTimeOffset at) =>
        new("magcds-patient-view", card, "overridden", [], null, null, null, "ZQCOMMENT " + card, at);

    [Test]
    public async Task Rules_apply_at_start_up_and_then_every_hour_of_the_service_clock()
    {
        var now = new DateTimeOffset(2026, 6, 1, 8, 0, 0, TimeSpan.Zero);
        var clock = new FakeTimeProvider(now);
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(provider));
        var feedback = new FeedbackStore(db);
        // Kept 90 days: one comment is past that already, the other will be 30 minutes from now.
        await feedback.AddAsync([Item("old", now.AddDays(-91)), Item("soon", now.AddDays(-90).AddMinutes(30))], CancellationToken.None);
        var auditOptions = Options.Create(new AuditOptions());
        var retention = new Retention(new AuditTrail(db, clock, auditOptions, NullLogger<AuditTrail>.Instance), feedback, new WorkQueue(db, clock),
            auditOptions, Options.Create(new StoreOptions { FeedbackCommentKeepDays = 90 }), Options.Create(new WorkerOptions()), clock, NullLogger<Retention>.Instance);

        Task<List<string>> Comments() => StoreUnderTest.FeedbackCommentsAsync(db);

        await retention.StartAsync(CancellationToken.None);
        try
        {
            await WorkerHarness.WaitUntilAsync(async () => (await Comments())[0] == "old=(erased)", "the start-up run erased the old comment", 10);
            Assert.That(await Comments(), Is.EqualTo(new[] { "old=(erased)", "soon=ZQCOMMENT soon" }));

            clock.Advance(TimeSpan.FromMinutes(59)); // due now, but the next run is an hour after the first
            await Task.Delay(300);
            Assert.That((await Comments())[1], Is.EqualTo("soon=ZQCOMMENT soon"), "no run before the hour");

            clock.Advance(TimeSpan.FromMinutes(1));
            await WorkerHarness.WaitUntilAsync(async () => (await Comments())[1] == "soon=(erased)", "the hourly run erased it", 10);
        }
        finally
        {
            await retention.StopAsync(CancellationToken.None);
        }
    }
}
