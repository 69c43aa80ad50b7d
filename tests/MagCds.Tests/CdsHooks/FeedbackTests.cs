using System.Net;
using Hl7.Fhir.Model;
using MagCds.Service.Storage;
using MagCds.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace MagCds.Tests.CdsHooks;

public class FeedbackTests
{
    private const string Url = "/cds-services/magcds-patient-view/feedback";
    private static Dictionary<string, string?> Dev(string? store = null)
    {
        var d = new Dictionary<string, string?> { ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true" };
        if (store is not null) d["MagCds:Store:SqliteConnectionString"] = "Data Source=" + store;
        return d;
    }

    private static IEnumerable<TestCaseData> Malformed()
    {
        yield return new TestCaseData("{}").SetArgDisplayNames("no feedback array");
        yield return new TestCaseData("""{"feedback":[]}""").SetArgDisplayNames("empty array");
        yield return new TestCaseData("""{"feedback":[{"outcome":"accepted","acceptedSuggestions":[{"id":"x"}],"outcomeTimestamp":"2021-12-11T10:05:31Z"}]}""").SetArgDisplayNames("no card");
        yield return new TestCaseData("""{"feedback":[{"card":"c","outcome":"maybe","outcomeTimestamp":"2021-12-11T10:05:31Z"}]}""").SetArgDisplayNames("bad outcome");
        yield return new TestCaseData("""{"feedback":[{"card":"c","outcome":"accepted","outcomeTimestamp":"2021-12-11T10:05:31Z"}]}""").SetArgDisplayNames("accepted without suggestions");
        yield return new TestCaseData("""{"feedback":[{"card":"c","outcome":"overridden","outcomeTimestamp":"yesterday"}]}""").SetArgDisplayNames("bad timestamp");
        yield return new TestCaseData("""{"feedback":[{"card":"c","outcome":"overridden","overrideReason":{"reason":{"code":"x"}},"outcomeTimestamp":"2021-12-11T10:05:31Z"}]}""").SetArgDisplayNames("reason without system");
        yield return new TestCaseData("""{"feedback":[{"card":"c","outcome":"overridden","outcomeTimestamp":"2021-12-11T10:05:31Z"},{"card":null}]}""").SetArgDisplayNames("second item bad");
        yield return new TestCaseData("not json").SetArgDisplayNames("not JSON");
        yield return new TestCaseData("""{"feedback":[{"card":"a","card":"b","outcome":"overridden","outcomeTimestamp":"2021-12-11T10:05:31Z"}]}""").SetArgDisplayNames("a member given twice");
        yield return new TestCaseData("""{"feedback":[{"card":"c","outcome":"overridden","outcomeTimestamp":"Fri, 11 Dec 2020 00:00:00 GMT"}]}""").SetArgDisplayNames("an HTTP date as timestamp");
        // PostgreSQL refuses NUL in text, and a long card id exceeds its unique index: refused at the door, not a 500.
        yield return new TestCaseData("""{"feedback":[{"card":"c","outcome":"overridden","overrideReason":{"userComment":"a\u0000b"},"outcomeTimestamp":"2021-12-11T10:05:31Z"}]}""").SetArgDisplayNames("NUL in a comment");
        // Half of a UTF-16 surrogate pair, escaped: no .NET string holds it (found by a black-box probe: a 500).
        yield return new TestCaseData("""{"feedback":[{"card":"c\ud800","outcome":"overridden","outcomeTimestamp":"2021-12-11T10:05:31Z"}]}""").SetArgDisplayNames("half a surrogate pair in the card id");
        yield return new TestCaseData("""{"feedback":[{"card":"c","outcome":"overridden","overrideReason":{"userComment":"cut \ud83d"},"outcomeTimestamp":"2021-12-11T10:05:31Z"}]}""").SetArgDisplayNames("half a surrogate pair in a comment");
        yield return new TestCaseData("{\"feedback\":[{\"card\":\"" + new string('c', 10_000) + "\",\"outcome\":\"overridden\",\"outcomeTimestamp\":\"2021-12-11T10:05:31Z\"}]}").SetArgDisplayNames("a 10,000-character card id");
    }

    [TestCaseSource(nameof(Malformed))]
    public async Task Malformed_feedback_gets_400_and_stores_nothing(string body)
    {
        await using var f = new MagCdsFactory(Dev());
        var resp = await f.CreateClient().SendAsync(CdsKit.Post(Url, body, null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Does.Contain("invalid-feedback"));
        Assert.That(await f.Services.GetRequiredService<FeedbackStore>().CountsAsync(CancellationToken.None), Is.Empty);
    }

    [Test]
    public async Task Feedback_survives_a_restart()
    {
        string store = Path.Combine(Path.GetTempPath(), $"magcds-restart-{Guid.NewGuid():N}.db");
        const string body = """{"feedback":[{"card":"c1","outcome":"overridden","overrideReason":{"reason":{"code":"already-known","system":"https://magcds.org/fhir/CodeSystem/magcds-override-reason","display":"Result already known and being acted on"},"userComment":"seen"},"outcomeTimestamp":"2026-11-20T10:00:00Z"}]}""";
        await using (var first = new MagCdsFactory(Dev(store)))
            Assert.That((await first.CreateClient().SendAsync(CdsKit.Post(Url, body, null))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await using var second = new MagCdsFactory(Dev(store));
        var counts = await second.Services.GetRequiredService<FeedbackStore>().CountsAsync(CancellationToken.None);
        Assert.That(counts.Single(), Is.EqualTo(new FeedbackCount("magcds-patient-view", "overridden", "already-known", 1)));
    }

    [Test]
    public async Task Comments_older_than_the_retention_period_are_erased_and_the_counts_stay()
    {
        // A clinician's free text may name the patient: it is kept FeedbackCommentKeepDays (90 by default), by the feedback's own time.
        string store = Path.Combine(Path.GetTempPath(), $"magcds-retention-{Guid.NewGuid():N}.db");
        static string Item(string card, DateTimeOffset at) =>
            $$"""{"card":"{{card}}","outcome":"overridden","overrideReason":{"userComment":"ZQCOMMENT {{card}}"},"outcomeTimestamp":"{{at.UtcDateTime:yyyy-MM-ddTHH:mm:ssZ}}"}""";
        string body = $$"""{"feedback":[{{Item("old", DateTimeOffset.UtcNow.AddDays(-91))}},{{Item("recent", DateTimeOffset.UtcNow.AddDays(-1))}}]}""";
        await using (var first = new MagCdsFactory(Dev(store)))
            Assert.That((await first.CreateClient().SendAsync(CdsKit.Post(Url, body, null))).StatusCode, Is.EqualTo(HttpStatusCode.OK));

        // Retention runs at start-up, then hourly.
        await using var second = new MagCdsFactory(Dev(store));
        var db = second.Services.GetRequiredService<Database>();
        Task<List<string>> Comments() => StoreUnderTest.FeedbackCommentsAsync(db);
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while ((await Comments())[0] != "old=(erased)" && DateTime.UtcNow < deadline) await Task.Delay(100);
        Assert.That(await Comments(), Is.EqualTo(new[] { "old=(erased)", "recent=ZQCOMMENT recent" }));
        var counts = await second.Services.GetRequiredService<FeedbackStore>().CountsAsync(CancellationToken.None);
        Assert.That(counts.Single().Count, Is.EqualTo(2), "both items still count");
    }

    [Test]
    public async Task The_feedback_metric_counts_each_item_once_and_only_MagCds_reasons_by_name()
    {
        var seen = new System.Collections.Concurrent.ConcurrentBag<string>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (i, l) => { if (i.Meter.Name == MagCds.Service.CdsHooks.CdsHooksMetrics.MeterName && i.Name == "magcds.cdshooks.feedback") l.EnableMeasurementEvents(i); };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var t in tags) if (t.Key == "override_reason") seen.Add((string)t.Value!);
        });
        listener.Start();

        await using var f = new MagCdsFactory(Dev());
        var client = f.CreateClient();
        const string known = """{"feedback":[{"card":"m1","outcome":"overridden","overrideReason":{"reason":{"code":"already-known","system":"https://magcds.org/fhir/CodeSystem/magcds-override-reason"}},"outcomeTimestamp":"2026-11-20T10:00:00Z"}]}""";
        const string foreign = """{"feedback":[{"card":"m2","outcome":"overridden","overrideReason":{"reason":{"code":"attacker-9720-1","system":"urn:x"}},"outcomeTimestamp":"2026-11-20T10:00:00Z"}]}""";
        foreach (var body in new[] { known, known, known, foreign })
            Assert.That((await client.SendAsync(CdsKit.Post(Url, body, null))).StatusCode, Is.EqualTo(HttpStatusCode.OK));

        Assert.That(seen.Order(), Is.EqualTo(new[] { "already-known", "other" }), "the resent item once; a foreign code as 'other'");
    }

    [Test]
    public async Task Feedback_needs_a_valid_JWT_by_default()
    {
        await using var f = new MagCdsFactory();
        var resp = await f.CreateClient().SendAsync(CdsKit.Post(Url, """{"feedback":[]}""", null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test]
    public async Task Feedback_with_a_token_for_the_feedback_url_is_accepted()
    {
        using var kit = new CdsKit();
        await using var f = new MagCdsFactory(kit.TrustSettings());
        const string body = """{"feedback":[{"card":"c1","outcome":"accepted","acceptedSuggestions":[{"id":"s1"}],"outcomeTimestamp":"2026-11-20T10:00:00Z"}]}""";
        var resp = await f.CreateClient().SendAsync(CdsKit.Post(Url, body, kit.Token(CdsKit.Base + Url)));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }
}
