using System.Net;
using System.Text;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Service.Storage;
using MagCds.Tests.Support;
using static MagCds.Tests.Support.WorkerHarness;

namespace MagCds.Tests.Worker;

/// <summary>The watched FHIR server is down for a while, or wants a token: work waits, or is refused, and nothing is lost.</summary>
[NonParallelizable]
public sealed class OutageTests
{
    private static async Task NotifyAsync(HttpClient client, string observationId)
    {
        using var req = new HttpRequestMessage(HttpMethod.Put, $"/worker/notifications/Observation/{observationId}")
        {
            Content = new StringContent("""{"resourceType":"Observation","id":"x","status":"final","code":{"text":"x"}}""".Replace("\"x\",\"status", $"\"{observationId}\",\"status"), Encoding.UTF8, "application/fhir+json"),
        };
        req.Headers.Add("X-MagCds-Secret", Secret);
        using var resp = await client.SendAsync(req);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), "a notification is stored even while the FHIR server is down");
    }

    [Test]
    public async Task Work_waits_while_the_server_is_down_and_completes_when_it_is_back()
    {
        int port = FreePort();
        var store = await StoreUnderTest.SettingsAsync(StoreProvider.Sqlite);
        var settings = new Dictionary<string, string?>(store)
        {
            ["MagCds:Worker:Enabled"] = "true",
            ["MagCds:Worker:FhirServerUrl"] = $"http://127.0.0.1:{port}/fhir/R4", // nothing listens there yet
            ["MagCds:Worker:PollIntervalSeconds"] = "0",
            ["MagCds:Worker:MaxAttempts"] = "2", // an outage outlasts any count of attempts: it is waited for
            ["MagCds:Worker:RetryBaseDelaySeconds"] = "0.2",
            ["MagCds:Worker:RetryMaxDelaySeconds"] = "1",
            ["MagCds:Worker:RequestTimeoutSeconds"] = "3",
            ["MagCds:Worker:Subscription:Secret"] = Secret,
        };
        foreach (var (k, v) in AdminKeySettings) settings[k] = v;
        using var service = new MagCdsFactory(settings);
        using var client = service.CreateClient();
        client.DefaultRequestHeaders.Add("X-API-Key", AdminKey);
        await NotifyAsync(client, "outage-1");
        await WaitUntilAsync(() => Task.FromResult(service.Logs.Lines.Count(l => l.Contains("Worker will retry", StringComparison.Ordinal)) >= 3),
            "the worker has retried a few times");

        // The server comes back (on the same address), with the result the notification named.
        await using var fhir = new FhirTestServer(port: port);
        await fhir.StartAsync();
        var obs = Result("outage-patient", 23.5m, "ACC-OUTAGE-1");
        obs.Id = "outage-1";
        await fhir.Client.UpdateAsync(obs);

        await WaitUntilAsync(async () => (await fhir.AllAsync<RiskAssessment>()).Count == 1, "the waiting work completes", 60);
        var queue = System.Text.Json.JsonDocument.Parse(await client.GetStringAsync("/admin/worker")).RootElement.GetProperty("queue");
        Assert.That(queue.GetProperty("deadLetters").GetInt64(), Is.Zero);
        var reasons = service.Logs.Lines.Where(l => l.Contains("Worker will retry", StringComparison.Ordinal)).ToList();
        Assert.That(reasons.All(l => l.Contains("unreachable", StringComparison.Ordinal) || l.Contains("circuit-open", StringComparison.Ordinal)
                                     || l.Contains("timeout", StringComparison.Ordinal)), Is.True, string.Join("\n", reasons));
    }

    [Test]
    public async Task A_static_bearer_token_is_sent_and_a_wrong_one_ends_in_dead_letters()
    {
        await using var fhir = new FhirTestServer(requiredToken: "right-token");
        await fhir.StartAsync();
        var obs = await fhir.SeedAsync(Result("bearer-patient", 23.5m, "ACC-BEARER-1"));

        await using (var ok = await WorkerHarness.CreateAsync(fhir, StoreProvider.Sqlite, keepServerData: true))
        {
            await ok.StartAsync(new() { ["MagCds:Worker:Auth"] = "Bearer", ["MagCds:Worker:BearerToken"] = "right-token" });
            await ok.DrainedAsync(1);
            Assert.That((await fhir.AllAsync<RiskAssessment>()).Single().Basis[0].Reference, Is.EqualTo("Observation/" + obs.Id));
            Assert.That((await fhir.RequestsAsync()).Where(r => r.Status == 401), Is.Empty);
        }

        await using var wrong = await WorkerHarness.CreateAsync(fhir, StoreProvider.Sqlite, keepServerData: true);
        await wrong.StartAsync(new()
        {
            ["MagCds:Worker:Auth"] = "Bearer", ["MagCds:Worker:BearerToken"] = "wrong-token", ["MagCds:Worker:PollIntervalSeconds"] = "0",
        });
        await NotifyAsync(wrong.Client, obs.Id!);
        await WaitUntilAsync(async () => (await wrong.QueueAsync()).GetProperty("deadLetters").GetInt64() == 1, "401s end in a dead letter after the attempts");
        var dead = System.Text.Json.JsonDocument.Parse(await wrong.Client.GetStringAsync("/admin/worker/dead-letters")).RootElement[0];
        Assert.That(dead.GetProperty("reason").GetString(), Is.EqualTo("http-401"));
        Assert.That(dead.GetProperty("attempts").GetInt32(), Is.EqualTo(4), "401 is retried (a token may be fixed) up to MaxAttempts");
    }
}
