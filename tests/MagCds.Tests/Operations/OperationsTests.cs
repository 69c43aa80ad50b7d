using System.Net;
using System.Text.Json;
using Hl7.Fhir.Model;
using MagCds.Tests.Support;

namespace MagCds.Tests.Operations;

/// <summary>Health probes, security headers and rate limits, on the real service in memory.</summary>
public sealed class OperationsTests
{
    [Test]
    public async Task Liveness_answers_and_readiness_reports_knowledge_store_and_warm_up()
    {
        using var f = new MagCdsFactory();
        using var client = f.CreateClient();
        using var live = await client.GetAsync("/health/live");
        Assert.That(live.StatusCode, Is.EqualTo(HttpStatusCode.OK));

        JsonElement checks = default;
        await WorkerHarness.WaitUntilAsync(async () =>
        {
            using var ready = await client.GetAsync("/health/ready");
            checks = JsonDocument.Parse(await ready.Content.ReadAsStringAsync()).RootElement.GetProperty("checks");
            return ready.StatusCode == HttpStatusCode.OK;
        }, "the service is ready", 30);
        Assert.That(checks.EnumerateObject().Select(c => (c.Name, c.Value.GetProperty("status").GetString())),
            Is.EquivalentTo(new[] { ("knowledge", "Healthy"), ("store", "Healthy"), ("warm-up", "Healthy") }));
    }

    [Test]
    public async Task Warming_up_is_reported_as_degraded_not_as_a_failure()
    {
        // Every start warms up: the health check service logs Unhealthy at error level, which would page someone.
        var warmUp = new MagCds.Service.Hosting.WarmUp(CoreUnderTest.Evaluator);
        var before = await warmUp.CheckHealthAsync(new Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckContext(), CancellationToken.None);
        Assert.That(before.Status, Is.EqualTo(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Degraded));
        await warmUp.StartAsync(CancellationToken.None);
        await warmUp.Completed;
        var after = await warmUp.CheckHealthAsync(new Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckContext(), CancellationToken.None);
        Assert.That(after.Status, Is.EqualTo(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy));
    }

    [Test]
    public async Task Readiness_fails_when_the_store_cannot_be_reached()
    {
        // The SQLite file's folder disappears after start-up (no pooling, so every check opens the file anew).
        string dir = Directory.CreateTempSubdirectory("magcds-health-").FullName;
        string db = Path.Combine(dir, "store.db");
        using var f = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:Store:SqliteConnectionString"] = $"Data Source={db};Pooling=False" });
        using var client = f.CreateClient();
        await WorkerHarness.WaitUntilAsync(async () => (await client.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK, "ready first", 30);
        Directory.Delete(dir, recursive: true);
        using var ready = await client.GetAsync("/health/ready");
        Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        string body = await ready.Content.ReadAsStringAsync();
        Assert.That(body, Does.Contain("\"store\":{\"status\":\"Unhealthy\"").And.Not.Contain(dir), "says which check failed, not where the file was");
        // The probe did its job: its request line is information (the failing check has its own line), not an error.
        var line = f.Logs.Lines.Last(l => l.Contains("\"RequestRoute\":\"/health/ready\"", StringComparison.Ordinal) && l.Contains("\"StatusCode\":503", StringComparison.Ordinal));
        Assert.That(line, Does.Not.Contain("\"@l\":\"Error\""));
    }

    [TestCase("/health/live")]
    [TestCase("/fhir/metadata")]
    [TestCase("/no-such-route")]
    public async Task Every_response_carries_the_security_headers(string path)
    {
        using var f = new MagCdsFactory();
        using var client = f.CreateClient();
        using var resp = await client.GetAsync(path);
        Assert.That(resp.Headers.GetValues("X-Content-Type-Options"), Is.EqualTo(new[] { "nosniff" }));
        Assert.That(resp.Headers.GetValues("X-Frame-Options"), Is.EqualTo(new[] { "DENY" }));
        Assert.That(resp.Headers.GetValues("Referrer-Policy"), Is.EqualTo(new[] { "no-referrer" }));
        Assert.That(resp.Headers.CacheControl?.NoStore, Is.True);
        Assert.That(resp.Headers.GetValues("Content-Security-Policy").Single(), Does.StartWith("default-src 'none'"));
        Assert.That(resp.Headers.Contains("Strict-Transport-Security"), Is.False, "not over plain HTTP");
        using var https = f.CreateClient(new Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactoryClientOptions { BaseAddress = new Uri("https://localhost") });
        using var secure = await https.GetAsync(path);
        Assert.That(secure.Headers.GetValues("Strict-Transport-Security"), Is.EqualTo(new[] { "max-age=31536000" }));
    }

    [Test]
    public async Task A_client_over_its_rate_gets_429_with_Retry_After_and_an_OperationOutcome()
    {
        using var f = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:RateLimit:PermitsPerSecond"] = "1", ["MagCds:RateLimit:Burst"] = "3" });
        using var client = f.CreateClient();
        // Eight at once; on a busy machine they may reach the limiter over some time, during which the bucket refills
        // one permit a second, so the bound is the burst plus one per second that passed.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var responses = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ =>
            client.PostAsync(Http.Evaluate, Http.Raw(TestFiles.Text("Observation-btu-medium.json"), "application/fhir+json"))));
        int refills = (int)Math.Ceiling(clock.Elapsed.TotalSeconds);
        var statuses = responses.Select(r => r.StatusCode).ToList();
        Assert.That(statuses.Count(s => s == HttpStatusCode.OK), Is.InRange(3, 3 + refills), "the burst (3) is allowed, plus the refills");
        Assert.That(statuses.Where(s => s != HttpStatusCode.OK), Is.All.EqualTo(HttpStatusCode.TooManyRequests));
        var refused = responses.FirstOrDefault(r => r.StatusCode == HttpStatusCode.TooManyRequests);
        Assert.That(refused, Is.Not.Null, "then the limit applies");
        Assert.That(refused!.Headers.RetryAfter?.Delta, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(1)));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(refused)), Is.EqualTo(new[] { "too-many-requests" }));
        using var health = await client.GetAsync("/health/live");
        Assert.That(health.StatusCode, Is.EqualTo(HttpStatusCode.OK), "probes are never limited");
        foreach (var r in responses) r.Dispose();
    }

    [Test]
    public async Task One_client_at_the_CDS_Hooks_target_rate_is_not_throttled_by_default()
    {
        // An EHR sends every call from one address, and the CDS Hooks door is to serve it 2,000 calls a second:
        // the default limit must lie above that, with room for a burst (6,000 calls sent as fast as they go, about a
        // second in process, are within it).
        using var f = new MagCdsFactory();
        using var client = f.CreateClient();
        var statuses = new System.Collections.Concurrent.ConcurrentBag<HttpStatusCode>();
        await Parallel.ForEachAsync(Enumerable.Range(0, 6000), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (_, ct) =>
        {
            using var r = await client.GetAsync("/cds-services", ct);
            statuses.Add(r.StatusCode);
        });
        Assert.That(statuses.Count(s => s == HttpStatusCode.TooManyRequests), Is.Zero);
        Assert.That(statuses, Is.All.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task Prometheus_metrics_count_evaluations_by_door_and_outcome_without_PHI()
    {
        using var f = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:Telemetry:Prometheus"] = "true" });
        using var client = f.CreateClient();
        using (var r = await client.PostAsync(Http.Evaluate, Http.Raw(TestFiles.Text("Observation-btu-medium.json"), "application/fhir+json")))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));

        string metrics = "";
        await WorkerHarness.WaitUntilAsync(async () =>
        {
            metrics = await client.GetStringAsync("/metrics");
            return metrics.Contains("magcds_evaluations_total", StringComparison.Ordinal);
        }, "the evaluation is counted", 30);
        Assert.That(metrics, Does.Match(@"magcds_evaluations_total\{[^}]*door=""fhir-rest""[^}]*outcome=""Elevated""[^}]*\} 1"));
        Assert.That(metrics, Does.Contain("http_server_request_duration_seconds"), "requests per route");
        Assert.That(metrics, Does.Not.Contain("pat-oakhaven").And.Not.Contain("ACC-BTU-MEDIUM"));
    }

    [Test]
    public async Task Without_Prometheus_configured_there_is_no_metrics_endpoint()
    {
        using var f = new MagCdsFactory();
        using var client = f.CreateClient();
        using var r = await client.GetAsync("/metrics");
        Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }
}
