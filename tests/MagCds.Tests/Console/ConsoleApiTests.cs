using System.Net;
using Hl7.Fhir.Serialization;
using System.Text;
using System.Text.Json;
using MagCds.Tests.Support;

namespace MagCds.Tests.Console;

/// <summary>The console's page and admin API, without a browser: access, headers, and that it shows what the doors answer.</summary>
public class ConsoleApiTests : ServiceTests
{
    private const string AdminKey = "console-admin-key-0001";
    private const string EngineKey = "console-engine-key-0001";

    protected override IReadOnlyDictionary<string, string?>? Settings => new Dictionary<string, string?>
    {
        ["MagCds:Security:ApiKeys:0:Name"] = "reviewer", ["MagCds:Security:ApiKeys:0:Key"] = AdminKey, ["MagCds:Security:ApiKeys:0:Admin"] = "true",
        ["MagCds:Security:ApiKeys:1:Name"] = "engine", ["MagCds:Security:ApiKeys:1:Key"] = EngineKey,
        ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true",
        // So that the test below can name a loopback server and see whether anything calls it.
        ["MagCds:CdsHooks:AllowInsecureFhirServer"] = "true",
        ["MagCds:FhirRest:MaxRequestBodyBytes"] = "200000",
    };

    private static string CdsSample() =>
        new StreamReader(typeof(MagCds.Service.Console.ConsoleEndpoints).Assembly.GetManifestResourceStream("console-samples/cds-hooks-patient-view.json")!).ReadToEnd();

    private async Task<(HttpStatusCode Status, JsonElement Body)> TryAsync(string body, string? key = AdminKey)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, "/admin/console/try") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (key is not null) req.Headers.Add("X-API-Key", key);
        var resp = await Client.SendAsync(req);
        string text = await resp.Content.ReadAsStringAsync();
        return (resp.StatusCode, resp.StatusCode == HttpStatusCode.OK ? JsonDocument.Parse(text).RootElement.Clone() : default);
    }

    [Test]
    public async Task The_page_is_served_with_a_policy_that_allows_only_its_own_scripts_and_styles()
    {
        var resp = await Client.GetAsync("/console/");
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(resp.Content.Headers.ContentType!.MediaType, Is.EqualTo("text/html"));
        string csp = resp.Headers.GetValues("Content-Security-Policy").Single();
        Assert.That(csp, Does.Contain("script-src 'self'").And.Contain("style-src 'self'").And.Not.Contain("unsafe-inline"));
        using var noRedirect = Factory.CreateClient(new Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactoryClientOptions { AllowAutoRedirect = false });
        var redirect = await noRedirect.GetAsync("/console");
        Assert.That((redirect.StatusCode, redirect.Headers.Location?.ToString()), Is.EqualTo((HttpStatusCode.Redirect, "/console/")));
        Assert.That((await Client.GetAsync("/console/nope.js")).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        // Every other answer keeps the API's policy: no active content at all.
        var api = await Client.GetAsync("/fhir/metadata");
        Assert.That(api.Headers.GetValues("Content-Security-Policy").Single(), Does.StartWith("default-src 'none'"));
    }

    [Test]
    public async Task Its_data_needs_an_admin_key()
    {
        Assert.That((await TryAsync("{}", key: null)).Status, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That((await TryAsync("{}", key: EngineKey)).Status, Is.EqualTo(HttpStatusCode.Forbidden));
        foreach (var path in new[] { "/admin/console/samples", "/admin/console/feedback" })
            Assert.That((await Client.GetAsync(path)).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), path);
    }

    [Test]
    public async Task A_CDS_Hooks_request_gets_exactly_the_cards_the_CDS_Hooks_door_returns()
    {
        string request = CdsSample();
        var door = await Client.PostAsync("/cds-services/magcds-patient-view", new StringContent(request, Encoding.UTF8, "application/json"));
        using var fromDoor = JsonDocument.Parse(await door.Content.ReadAsStringAsync());
        var (status, console) = await TryAsync(request);
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(console.GetProperty("kind").GetString(), Is.EqualTo("cds-hooks"));
            Assert.That(console.GetProperty("cds").GetRawText(), Is.EqualTo(fromDoor.RootElement.GetRawText()));
            Assert.That(console.GetProperty("cardDetailHtml")[0].GetString(), Does.Contain("<table>").And.Contain("<strong>Raised anti-MAG IgM result.</strong>"));
            Assert.That(console.GetProperty("trends")[0].GetProperty("points").GetArrayLength(), Is.EqualTo(3));
        });

        // The try is audited as the console's, apart from the EHR's call of the door just before.
        await WorkerHarness.WaitUntilAsync(async () =>
        {
            using var req = new HttpRequestMessage(HttpMethod.Get, "/admin/audit");
            req.Headers.Add("X-API-Key", AdminKey);
            using var audit = JsonDocument.Parse(await (await Client.SendAsync(req)).Content.ReadAsStringAsync());
            var doors = audit.RootElement.EnumerateArray().Select(e => (Door: e.GetProperty("door").GetString(), Caller: e.GetProperty("caller").GetString())).ToList();
            return doors.Contains(("console", "reviewer")) && doors.Contains(("magcds-patient-view", "unsigned-development-call"));
        }, "the door's call and the console's try are audited apart");
    }

    [Test]
    public async Task A_body_the_door_would_refuse_as_too_large_is_shown_as_that_refusal()
    {
        var (status, console) = await TryAsync(new string(' ', 300_000) + "{}");
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK), "the console shows the refusal, it is not one itself");
        Assert.That(console.GetProperty("kind").GetString(), Is.EqualTo("refused"));
        Assert.That(console.GetProperty("status").GetInt32(), Is.EqualTo(413));
        Assert.That(console.GetProperty("outcome").GetProperty("json").GetString(), Does.Contain("payload-too-large"));
    }

    [Test]
    public async Task A_FHIR_message_shows_what_the_REST_door_returns()
    {
        string body = TestFiles.Text("Observation-btu-medium.json");
        var rest = (Hl7.Fhir.Model.Parameters)await Http.ReadAsync(await Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, Http.Evaluate)
        {
            Content = new StringContent(body, Encoding.UTF8, "application/fhir+json"), Headers = { { "X-API-Key", EngineKey } },
        }));
        var (_, console) = await TryAsync(body);
        // The whole resources, not only their ids (ids do not depend on the texts).
        var fromRest = rest.Parameter.Where(p => p.Name is "riskAssessment" or "detectedIssue").Select(p => p.Resource!.ToJson()).ToList();
        Assert.That(fromRest, Has.Count.EqualTo(2));
        Assert.That(console.GetProperty("resources").EnumerateArray()
            .Select(r => new FhirJsonDeserializer().DeserializeResource(r.GetProperty("json").GetString()!).ToJson()), Is.EqualTo(fromRest));
        Assert.That(console.GetProperty("status").GetInt32(), Is.EqualTo(200));
    }

    [Test]
    public async Task Without_prefetch_the_console_never_calls_the_FHIR_server_a_pasted_request_names()
    {
        using var doc = JsonDocument.Parse(CdsSample());
        var request = System.Text.Json.Nodes.JsonNode.Parse(doc.RootElement.GetRawText())!.AsObject();
        request.Remove("prefetch");
        await using var server = await HttpCapture.StartAsync();
        request["fhirServer"] = server.BaseUrl + "r4";
        request["fhirAuthorization"] = System.Text.Json.Nodes.JsonNode.Parse("""{"access_token":"t","token_type":"Bearer","expires_in":300,"scope":"patient/Observation.read","subject":"magcds"}""");
        var (status, console) = await TryAsync(request.ToJsonString());
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(console.GetProperty("status").GetInt32(), Is.EqualTo(412));
        Assert.That(console.GetProperty("outcome").GetProperty("json").GetString(), Does.Contain("data-unavailable"));
        Assert.That(server.Received, Is.Zero, "nothing, and no access token, was sent to the server the pasted request names");
    }
}
