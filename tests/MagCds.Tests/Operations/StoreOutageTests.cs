using System.Net;
using Hl7.Fhir.Model;
using MagCds.Service.Storage;
using MagCds.Tests.Support;

namespace MagCds.Tests.Operations;

/// <summary>
/// A store that stops answering while MagCds runs: calls that need it get 503 store-unavailable with Retry-After
/// (nothing stored, retry later), never a 500 that reads like a MagCds defect; the REST door, which does not wait for
/// the store, goes on answering.
/// </summary>
public sealed class StoreOutageTests
{
    [Test]
    public async Task Calls_that_need_the_store_get_503_store_unavailable_while_it_is_gone()
    {
        var settings = await StoreUnderTest.SettingsAsync(StoreProvider.Postgres);
        string connection = settings["MagCds:Store:PostgresConnectionString"]!;
        settings["MagCds:CdsHooks:AllowUnsignedCalls"] = "true";
        foreach (var (k, v) in WorkerHarness.AdminKeySettings) settings[k] = v;
        await using var f = new MagCdsFactory(settings);
        var client = f.CreateClient();
        client.DefaultRequestHeaders.Add("X-API-Key", WorkerHarness.AdminKey);
        using (var before = await client.GetAsync("/admin/audit")) Assert.That(before.StatusCode, Is.EqualTo(HttpStatusCode.OK));

        await PostgresServer.Shared.DropDatabaseAsync(connection);

        const string feedback = """{"feedback":[{"card":"4e0a3a1e-3283-4575-ab82-028d55fe2719","outcome":"overridden","outcomeTimestamp":"2026-11-20T10:00:00Z"}]}""";
        foreach (var request in new Func<HttpRequestMessage>[]
                 {
                     () => CdsKit.Post("/cds-services/magcds-patient-view/feedback", feedback, null),
                     () => new HttpRequestMessage(HttpMethod.Get, "/admin/audit"),
                 })
        {
            using var resp = await client.SendAsync(request());
            Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(resp.Headers.RetryAfter?.Delta, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Does.Contain("store-unavailable"));
        }
        using (var evaluate = await client.PostAsync(Http.Evaluate, Http.Raw(TestFiles.Text("Observation-btu-medium.json"), "application/fhir+json")))
            Assert.That(evaluate.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the REST door does not wait for the store");
        Assert.That(f.Logs.Lines.Count(l => l.Contains("answered 503 store-unavailable", StringComparison.Ordinal)), Is.EqualTo(2));
        Assert.That(f.Logs.Lines.Any(l => l.Contains("Unexpected failure", StringComparison.Ordinal)), Is.False);
    }
}
