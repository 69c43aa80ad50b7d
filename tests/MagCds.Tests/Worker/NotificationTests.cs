using System.Net;
using System.Net.Http.Json;
using System.Text;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Microsoft.Extensions.DependencyInjection;
using MagCds.Service.Storage;
using MagCds.Tests.Support;
using static MagCds.Tests.Support.WorkerHarness;

namespace MagCds.Tests.Worker;

/// <summary>
/// The notification endpoint with every shape a FHIR server sends (TestData/Notifications: R4 Subscriptions Backport
/// Bundles; classic R4 rest-hook calls), with polling off so that only notifications drive the work.
/// </summary>
[TestFixture(StoreProvider.Sqlite)]
[TestFixture(StoreProvider.Postgres)]
public sealed class NotificationTests(StoreProvider provider) : WorkerTestBase(provider)
{
    private const string Endpoint = "/worker/notifications";
    protected override async Task PrepareAsync()
    {
        // bp-1 … bp-4 exist on the server (ids as the notification files name them); polling is off.
        for (int i = 1; i <= 4; i++)
        {
            var obs = Result($"bp-patient-{i}", 23.5m, $"ACC-BP-{i}");
            obs.Id = $"bp-{i}";
            await Fhir.Client.UpdateAsync(obs);
        }
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        await Fhir.ClearRequestsAsync();
    }

    private async Task<List<string>> AssessedAsync() =>
        (await H.AllAsync<RiskAssessment>()).Select(r => r.Basis[0].Reference ?? "").Order().ToList();

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string? body, string? secret = Secret, string contentType = "application/fhir+json")
    {
        using var req = new HttpRequestMessage(method, path);
        if (body is not null) req.Content = new StringContent(body, Encoding.UTF8, contentType);
        if (secret is not null) req.Headers.Add("X-MagCds-Secret", secret);
        return await H.Client.SendAsync(req);
    }

    private Task<HttpResponseMessage> NotifyAsync(string file) => SendAsync(HttpMethod.Post, Endpoint, TestFiles.Text("Notifications/" + file));

    [Test]
    public async Task An_id_only_event_queues_its_focus_and_a_handshake_queues_nothing()
    {
        using (var r = await NotifyAsync("Bundle-backport-handshake.json")) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        // What a notification asks for is stored before it is answered, so this is known now, not after some turns.
        var queue = H.Service!.Services.GetRequiredService<MagCds.Service.Storage.WorkQueue>();
        string server = H.Service.Services.GetRequiredService<MagCds.Service.Worker.WorkerFhirClient>().Server;
        Assert.That(await queue.GetStateAsync(server, MagCds.Service.Worker.Poller.RequestKey, CancellationToken.None), Is.Null, "a handshake asks for no poll");
        using (var r = await NotifyAsync("Bundle-backport-id-only-event-1.json")) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await queue.GetStateAsync(server, MagCds.Service.Worker.Poller.RequestKey, CancellationToken.None), Is.Null, "nor does an event without a gap");
        await H.DrainedAsync(1);
        Assert.That(await AssessedAsync(), Is.EqualTo(new[] { "Observation/bp-1" }), "only the notified result, nothing else");
        Assert.That((await Fhir.RequestsAsync()).Any(r => r.Url.Contains("_lastUpdated", StringComparison.Ordinal)), Is.False, "no poll was needed");
    }

    /// <summary>
    /// A notification Bundle with an entry that is not valid FHIR (here the Backport status, so its type and event
    /// number are unknown) asks for a catch-up poll: it was acknowledged as an empty Bundle and the event lost (found by
    /// a black-box probe).
    /// </summary>
    [Test]
    public async Task A_notification_with_an_unreadable_entry_asks_for_a_catch_up_poll()
    {
        string body = TestFiles.Text("Notifications/Bundle-backport-id-only-event-1.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(body)!;
        json["entry"]![0]!["resource"]!["parameter"]![0]!["valueReference"]!["reference"] = ""; // FHIR strings may not be empty
        using (var r = await SendAsync(HttpMethod.Post, Endpoint, json.ToJsonString()))
        {
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK), "acknowledged: nothing is lost");
            Assert.That(await r.Content.ReadAsStringAsync(), Does.Contain("a poll was requested"));
        }
        await WaitUntilAsync(async () => (await Fhir.RequestsAsync()).Any(r => r.Url.Contains("_lastUpdated=gt", StringComparison.Ordinal)), "the catch-up poll ran");
    }

    [Test]
    public async Task A_gap_in_event_numbers_is_recovered_through_events_or_a_catch_up_poll()
    {
        using (await NotifyAsync("Bundle-backport-id-only-event-1.json")) { }
        await H.DrainedAsync(1);
        // Events 2 and 3 never arrived; event 4 (full resource) shows the gap.
        using (await NotifyAsync("Bundle-backport-full-resource-event-4.json")) { }
        await WaitUntilAsync(async () => (await AssessedAsync()).Count == 4, "the missed results are assessed");
        var urls = (await Fhir.RequestsAsync()).Select(r => r.Url).ToList();
        int events = urls.FindIndex(u => u.Contains("/Subscription/lab-anti-mag/$events?eventsSinceNumber=2&eventsUntilNumber=3", StringComparison.Ordinal));
        int poll = urls.FindIndex(u => u.Contains("_lastUpdated=gt", StringComparison.Ordinal));
        Assert.That(events, Is.GreaterThanOrEqualTo(0), "the server was asked for the missed events first");
        Assert.That(poll, Is.GreaterThan(events), "this server has no $events, so a catch-up poll followed");
        // The operator sees the gap and what became of it.
        Assert.That(H.Service!.Logs.Lines, Has.One.Contains("Backport Subscription \\\"Subscription/lab-anti-mag\\\" skipped events 2 to 3"));
        Assert.That(H.Service!.Logs.Lines, Has.One.Contains("failed (\\\"http-404\\\"): a catch-up poll finds what they were about"));
    }

    /// <summary>$events refused (403: no right to it) or failing (503, more often than one call's retries absorb): the gap is recovered by a catch-up poll, not asked for again on every turn.</summary>
    [TestCase(403)]
    [TestCase(503)]
    public async Task A_gap_whose_events_cannot_be_fetched_is_recovered_by_a_poll(int status)
    {
        await InjectAsync(status, 100, "GET", "/fhir/R4/Subscription/lab-anti-mag/$events");
        using (await NotifyAsync("Bundle-backport-id-only-event-1.json")) { }
        await H.DrainedAsync(1);
        using (await NotifyAsync("Bundle-backport-full-resource-event-4.json")) { }
        await WaitUntilAsync(async () => (await AssessedAsync()).Count == 4, "the missed results are assessed");
        // A later event (empty payload: it asks for a poll) makes the worker's loop turn again after the recovery; once
        // its poll has run, a worker that asked for the gap on every turn would have asked again.
        int polls = (await Fhir.RequestsAsync()).Count(r => r.Url.Contains("_lastUpdated=gt", StringComparison.Ordinal));
        using (await NotifyAsync("Bundle-backport-empty-event-5.json")) { }
        await WaitUntilAsync(async () => (await Fhir.RequestsAsync()).Count(r => r.Url.Contains("_lastUpdated=gt", StringComparison.Ordinal)) > polls,
            "the later event's poll ran");
        await H.DrainedAsync(4);
        var urls = (await Fhir.RequestsAsync()).Select(r => r.Url).ToList();
        Assert.That(urls.Count(u => u.Contains("/$events", StringComparison.Ordinal)), Is.InRange(1, 4), "asked once (with the HTTP layer's retries for a 503), not on every turn");
        Assert.That(urls, Has.Some.Contains("_lastUpdated=gt"), "a catch-up poll instead");
    }

    [Test]
    public async Task A_subscription_named_on_another_host_is_asked_for_events_on_the_configured_server_only()
    {
        // Anyone who can read the channel secret could name a Subscription on their own host; the worker's credentials
        // must only ever go to the configured FHIR server.
        static string Elsewhere(string file) => TestFiles.Text("Notifications/" + file)
            .Replace("\"reference\": \"Subscription/lab-anti-mag\"", "\"reference\": \"http://127.0.0.1:9/fhir/Subscription/lab-anti-mag\"", StringComparison.Ordinal);
        using (await SendAsync(HttpMethod.Post, Endpoint, Elsewhere("Bundle-backport-id-only-event-1.json"))) { }
        await H.DrainedAsync(1);
        using (await SendAsync(HttpMethod.Post, Endpoint, Elsewhere("Bundle-backport-full-resource-event-4.json"))) { }
        await WaitUntilAsync(async () => (await AssessedAsync()).Count == 4, "the missed results are assessed");
        Assert.That((await Fhir.RequestsAsync()).Select(r => r.Url), Has.Some.Contains("/fhir/R4/Subscription/lab-anti-mag/$events?eventsSinceNumber=2"));
    }

    [Test]
    public async Task A_heartbeat_announcing_unseen_events_starts_a_catch_up()
    {
        using (await NotifyAsync("Bundle-backport-handshake.json")) { }
        using (await NotifyAsync("Bundle-backport-heartbeat-after-3.json")) { }
        await WaitUntilAsync(async () => (await AssessedAsync()).Count == 4, "the catch-up poll found every result");
    }

    [Test]
    public async Task An_empty_payload_or_an_empty_classic_post_asks_for_a_poll()
    {
        using (var r = await NotifyAsync("Bundle-backport-empty-event-5.json")) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await WaitUntilAsync(async () => (await AssessedAsync()).Count == 4, "the poll found every result");

        await Fhir.ClearRequestsAsync();
        using (var r = await SendAsync(HttpMethod.Post, Endpoint, null)) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await WaitUntilAsync(async () => (await Fhir.RequestsAsync()).Any(x => x.Url.Contains("_lastUpdated=gt", StringComparison.Ordinal)), "a poll ran");
    }

    [Test]
    public async Task A_poll_asked_for_is_retried_until_the_server_answers()
    {
        // Polling is off (subscriptions only), so the poll an empty notification asks for is the only way to the
        // results: when it fails (every attempt of the first poll gets 503), it must be tried again, not forgotten.
        using (var http = new HttpClient())
        using (var f = await http.PostAsJsonAsync(Fhir.RootUrl + "/admin/faults", new { status = 503, count = 4, method = "GET", path = "/fhir/R4/Observation?_lastUpdated" }))
            f.EnsureSuccessStatusCode();
        using (var r = await SendAsync(HttpMethod.Post, Endpoint, null)) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await WaitUntilAsync(async () => (await AssessedAsync()).Count == 4, "the poll was tried again after it failed and found every result", seconds: 90);
        var polls = (await Fhir.RequestsAsync()).Count(x => x.Url.Contains("_lastUpdated=gt", StringComparison.Ordinal));
        Assert.That(polls, Is.GreaterThanOrEqualTo(5), "four failed attempts, then the poll that answered");
    }

    [Test]
    public async Task A_classic_rest_hook_put_queues_that_observation_and_other_types_are_ignored()
    {
        var obs = await Fhir.Client.ReadAsync<Observation>("Observation/bp-2");
        using (var r = await SendAsync(HttpMethod.Put, Endpoint + "/Observation/bp-2", obs!.ToJson())) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        using (var r = await SendAsync(HttpMethod.Put, Endpoint + "/Patient/bp-patient-2", """{"resourceType":"Patient","id":"bp-patient-2"}""")) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await H.DrainedAsync(1);
        Assert.That(await AssessedAsync(), Is.EqualTo(new[] { "Observation/bp-2" }));
        Assert.That((await H.QueueAsync()).GetProperty("done").GetInt64(), Is.EqualTo(1), "the Patient was never queued");
    }

    /// <summary>
    /// The URL of a classic rest-hook PUT names the resource: without a body it is that resource that is queued (it
    /// only asked for a poll), and a body that is another resource is refused (it queued the body's). Found by a
    /// black-box probe.
    /// </summary>
    [Test]
    public async Task A_classic_rest_hook_put_queues_the_resource_its_url_names()
    {
        using (var r = await SendAsync(HttpMethod.Put, Endpoint + "/Observation/bp-3", null)) Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var other = await Fhir.Client.ReadAsync<Observation>("Observation/bp-4");
        using (var r = await SendAsync(HttpMethod.Put, Endpoint + "/Observation/bp-2", other!.ToJson()))
        {
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { "invalid-query" }));
        }
        await H.DrainedAsync(1);
        Assert.That(await AssessedAsync(), Is.EqualTo(new[] { "Observation/bp-3" }), "the one the URL named, and no poll");
        Assert.That((await Fhir.RequestsAsync()).Any(x => x.Url.Contains("_lastUpdated=gt", StringComparison.Ordinal)), Is.False);
    }

    /// <summary>
    /// A classic rest-hook PUT whose body MagCds cannot read (a value Firely's strict parser refuses, an element it does
    /// not know, no status) still names its resource in the URL: it is queued, with a warning, rather than refused
    /// with 400 and lost when polling is off. The ids "." and "..", dot-segments in a URL, are never queued (they made
    /// the worker read Observation/ and the server's base). Found by a black-box probe.
    /// </summary>
    [Test]
    public async Task A_rest_hook_put_with_an_unreadable_body_queues_the_resource_its_url_names()
    {
        using (var r = await SendAsync(HttpMethod.Put, Endpoint + "/Observation/bp-1",
                   """{"resourceType":"Observation","id":"bp-1","status":"final","code":{"text":"x"},"valueQuantity":{"value":"abc"}}"""))
        {
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            var outcome = (OperationOutcome)await Http.ReadAsync(r);
            Assert.That(Http.Codes(outcome), Is.EqualTo(new[] { "notification-queued", "unparseable" }));
            Assert.That(outcome.Issue[1].Severity, Is.EqualTo(OperationOutcome.IssueSeverity.Warning));
        }
        await H.DrainedAsync(1);
        Assert.That(await AssessedAsync(), Is.EqualTo(new[] { "Observation/bp-1" }), "the current version was read from the server and assessed");

        // A POST names nothing in its URL: an unreadable body there is still refused (400), as before.
        using (var r = await SendAsync(HttpMethod.Post, Endpoint, """{"resourceType":"Observation","id":"bp-2","valueQuantity":{"value":"abc"}}"""))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));

        foreach (var dots in new[] { ".", ".." })
        {
            string bundle = TestFiles.Text("Notifications/Bundle-backport-id-only-event-1.json").Replace("Observation/bp-1", "Observation/" + dots);
            Assert.That(bundle, Does.Contain("Observation/" + dots + "\""));
            using var r = await SendAsync(HttpMethod.Post, Endpoint, bundle);
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(((OperationOutcome)await Http.ReadAsync(r)).Issue[0].Details?.Text, Does.Contain("a poll was requested"), $"Observation/{dots} is not queued; a catch-up poll finds what the entry was about");
        }
        await H.DrainedAsync(2); // the two catch-up polls asked for, and what they found, done
        Assert.That((await Fhir.RequestsAsync()).Where(x => x.Method == "GET").Where(x => x.Url.TrimEnd('/').EndsWith("/fhir/R4", StringComparison.Ordinal) || x.Url.Contains("/Observation/?", StringComparison.Ordinal)
                                                           || x.Url.TrimEnd('/').EndsWith("/Observation", StringComparison.Ordinal)), Is.Empty);
    }

    [TestCase("wrong-secret", HttpStatusCode.Unauthorized, "unauthorized")]
    [TestCase(null, HttpStatusCode.Unauthorized, "unauthorized")]
    public async Task A_notification_without_the_secret_is_refused(string? secret, HttpStatusCode status, string code)
    {
        using var r = await SendAsync(HttpMethod.Post, Endpoint, TestFiles.Text("Notifications/Bundle-backport-id-only-event-1.json"), secret);
        Assert.That(r.StatusCode, Is.EqualTo(status));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { code }));
        Assert.That((await H.QueueAsync()).GetProperty("pending").GetInt64(), Is.Zero);
    }

    [TestCase("{\"resourceType\": \"Bundle\", \"type\": ", "application/fhir+json", HttpStatusCode.BadRequest, "unparseable")]
    [TestCase("<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"history\"/>", "application/fhir+xml", HttpStatusCode.BadRequest, "unparseable")]
    [TestCase("{}", "text/plain", HttpStatusCode.UnsupportedMediaType, "unsupported-media-type")]
    public async Task A_malformed_notification_gets_an_OperationOutcome(string body, string contentType, HttpStatusCode status, string code)
    {
        using var r = await SendAsync(HttpMethod.Post, Endpoint, body, contentType: contentType);
        Assert.That(r.StatusCode, Is.EqualTo(status));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { code }));
    }

    [Test]
    public async Task Admin_endpoints_need_the_api_key()
    {
        using var anonymous = H.Service!.CreateClient();
        using var r = await anonymous.GetAsync("/admin/worker");
        Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { "unauthorized" }));
        using var replay = await anonymous.PostAsync("/admin/worker/dead-letters/1/replay", null);
        Assert.That(replay.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }
}

/// <summary>What is refused before any notification or admin call is looked at.</summary>
public sealed class WorkerEndpointSetupTests
{
    [Test]
    public async Task Without_a_secret_or_any_authentication_configured_the_endpoints_refuse_everything()
    {
        using var f = new MagCdsFactory(new Dictionary<string, string?>
        {
            ["MagCds:Worker:Enabled"] = "true",
            ["MagCds:Worker:FhirServerUrl"] = "http://127.0.0.1:9/fhir", // nothing listens there; the worker only logs its failures
        });
        using var client = f.CreateClient();
        using var notify = await client.PostAsync("/worker/notifications", null);
        Assert.That(notify.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(notify)), Is.EqualTo(new[] { "forbidden" }));
        using var admin = await client.GetAsync("/admin/worker");
        Assert.That(admin.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "no one can be an admin until keys, JWTs or certificates are configured");
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(admin)), Is.EqualTo(new[] { "forbidden" }));
        // Said at start-up too, not only to the server whose notifications bounce (found by an integrator's probe).
        // The worker starts beside the host, so its line may come a moment after the first answers.
        for (int i = 0; i < 50 && !f.Logs.Lines.Any(l => l.Contains("Subscription:Secret is not set", StringComparison.Ordinal)); i++) await Task.Delay(100);
        Assert.That(f.Logs.Lines, Has.One.Contains("Subscription:Secret is not set: every notification to /worker/notifications is refused (403)"));
    }

    [Test]
    public async Task With_the_worker_off_its_endpoints_do_not_exist()
    {
        using var f = new MagCdsFactory();
        using var client = f.CreateClient();
        using var notify = await client.PostAsync("/worker/notifications", null);
        Assert.That(notify.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(f.Services.GetServices<Microsoft.Extensions.Hosting.IHostedService>().OfType<MagCds.Service.Worker.WorkerService>(), Is.Empty);
    }
}
