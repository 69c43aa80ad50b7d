using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace MagCds.Tests.CdsHooks;

/// <summary>
/// Prefetch semantics against a real FHIR server (Medplum's FHIR engine, tests/fhir-test-server): a missing key or an
/// OperationOutcome means MagCds queries fhirServer with the call's access token; null means nothing found.
/// </summary>
[NonParallelizable]
public class PrefetchFallbackTests : ServiceWithFhirServer
{
    private const string AccessToken = "ehr-access-token-7f3a91";
    private const string Patient = "pat-fallback";

    protected override Dictionary<string, string?> Settings => new()
    {
        ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true",
        ["MagCds:CdsHooks:AllowInsecureFhirServer"] = "true",
        ["MagCds:CdsHooks:FhirQueryTimeoutSeconds"] = "3",
    };

    protected override string? RequiredToken => AccessToken;

    [OneTimeSetUp]
    public async Task Seed()
    {

        var latest = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        latest.Id = null;
        latest.Subject = new ResourceReference("Patient/" + Patient);
        var earlier = TestFiles.Resource<Observation>("Observation-btu-high.json");
        earlier.Id = null;
        earlier.Subject = new ResourceReference("Patient/" + Patient);
        earlier.Effective = new FhirDateTime("2025-09-01T08:00:00Z");
        var someoneElse = TestFiles.Resource<Observation>("Observation-btu-low.json");
        someoneElse.Id = null;
        someoneElse.Subject = new ResourceReference("Patient/someone-else");
        foreach (var o in new[] { latest, earlier, someoneElse }) await Fhir.SeedAsync(o);
    }

    [SetUp]
    public async Task ClearLog() => await Fhir.ClearRequestsAsync();

    private async Task<HttpResponseMessage> Call(string body) =>
        await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body, null));

    private static JsonElement Card(string json) => JsonDocument.Parse(json).RootElement.GetProperty("cards").EnumerateArray().Single();

    [Test]
    public async Task A_missing_key_is_fetched_from_fhirServer_with_the_access_token()
    {
        var resp = await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, AccessToken, includeResultsKey: false));
        string json = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), json);
        var card = Card(json);
        Assert.That(card.GetProperty("summary").GetString(), Does.StartWith("Anti-MAG IgM 25000 BTU: raised"));
        Assert.That(card.GetProperty("detail").GetString(), Does.Contain("88000 BTU").And.Contain("25000 BTU (this result)"), "the earlier result came from the server too");

        var requests = await Fhir.RequestsAsync();
        var search = requests.Single();
        Assert.Multiple(() =>
        {
            Assert.That(search.Method, Is.EqualTo("GET"));
            Assert.That(search.Url, Does.Contain("Observation?patient=" + Patient).And.Contain("39087-2").And.Contain("_sort=-date"));
            Assert.That(search.HasAuthorization, Is.True);
            Assert.That(search.Status, Is.EqualTo(200));
        });
    }

    [TestCase(null, TestName = "A prefetched page with more pages and no stated sort is read again from fhirServer")]
    [TestCase("_sort=date", TestName = "A prefetched page sorted oldest first is read again from fhirServer")]
    [TestCase("_sort=code", TestName = "A prefetched page sorted by another element is read again from fhirServer")]
    [TestCase("x_sort=-date", TestName = "A prefetched page whose self link only looks sorted is read again from fhirServer")]
    public async Task A_prefetched_page_not_said_to_be_newest_first_is_read_again(string? selfQuery)
    {
        // The EHR sent page 1 of several, holding an older result, without saying it sorted newest first: the latest
        // may be elsewhere.
        var page = OlderResultPage(selfQuery);
        var resp = await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, AccessToken, resultsSlot: JsonNode.Parse(page.ToJson())));
        string json = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), json);
        Assert.That(Card(json).GetProperty("summary").GetString(), Does.StartWith("Anti-MAG IgM 25000 BTU"), "the latest result, from the server");
        Assert.That((await Fhir.RequestsAsync()).Single().Url, Does.Contain("Observation?patient=" + Patient));

        // With no FHIR server to ask, the call cannot be answered safely.
        using var alone = await Call(CdsKit.PatientView(Patient, null, null, null, resultsSlot: JsonNode.Parse(page.ToJson())));
        Assert.That(alone.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed));
    }

    /// <summary>Page 1 of several holding one older, raised result (88000 BTU), with a self link of that query.</summary>
    private Bundle OlderResultPage(string? selfQuery)
    {
        var older = TestFiles.Resource<Observation>("Observation-btu-high.json");
        older.Subject = new ResourceReference("Patient/" + Patient);
        older.Effective = new FhirDateTime("2025-09-01T08:00:00Z");
        var page = new Bundle { Type = Bundle.BundleType.Searchset, Entry = [new Bundle.EntryComponent { Resource = older }] };
        if (selfQuery is not null)
            page.Link.Add(new Bundle.LinkComponent { Relation = "self", Url = Fhir.BaseUrl + "/Observation?patient=" + Patient + "&" + selfQuery });
        page.Link.Add(new Bundle.LinkComponent { Relation = "next", Url = Fhir.BaseUrl + "/Observation?patient=" + Patient + "&_offset=1" });
        return page;
    }

    [Test]
    public async Task A_prefetched_page_said_to_be_newest_first_is_used_as_it_is()
    {
        var resp = await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, AccessToken, resultsSlot: JsonNode.Parse(OlderResultPage("_sort=-date").ToJson())));
        string json = await resp.Content.ReadAsStringAsync();
        Assert.That(Card(json).GetProperty("summary").GetString(), Does.StartWith("Anti-MAG IgM 88000 BTU"), "the newest of the page the EHR sent");
        Assert.That(await Fhir.RequestsAsync(), Is.Empty);
    }

    [TestCase("""{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}""", TestName = "A search answered 200 with an OperationOutcome gives 412, not an empty answer")]
    [TestCase("""{"resourceType":"Patient","id":"pat-fallback"}""", TestName = "A search answered 200 with a Patient gives 412, not an empty answer")]
    [TestCase("""{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Observation","status":"not-a-status","code":{"coding":[{"system":"http://loinc.org","code":"39087-2"}]},"subject":{"reference":"Patient/pat-fallback"},"valueQuantity":{"value":25000,"unit":"BTU"}}}]}""",
        TestName = "A search answered with a result no FHIR release allows gives 412, not 500")]
    [TestCase("""{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"too-costly"}]},"search":{"mode":"outcome"}}]}""",
        TestName = "A search answered with a Bundle reporting an error gives 412, not an empty answer")]
    [TestCase("""{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"39087-2"}]},"subject":{"reference":"Patient/pat-fallback"},"valueQuantity":{"value":25000,"unit":"BTU"},"note":[{"text":"cut in an emoji \ud83d"}]}}]}""",
        TestName = "A search answered with text that holds half of a UTF-16 surrogate pair gives 412, not 500")]
    public async Task A_search_answer_that_is_no_readable_searchset_gives_412(string answer)
    {
        await Fhir.FaultAsync(200, 1, "GET", "/fhir/R4/Observation", rawBody: answer);
        using var resp = await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, AccessToken, includeResultsKey: false));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed), await resp.Content.ReadAsStringAsync());
        Assert.That((await Fhir.RequestsAsync()).Single().Status, Is.EqualTo(200));
    }

    /// <summary>An answer nested deeper than the parser reads (found by a black-box probe: it gave 500).</summary>
    [Test]
    public async Task A_search_answer_nested_too_deep_gives_412_not_500()
    {
        var deep = new JsonObject { ["url"] = "http://example.org/x", ["valueString"] = "v" };
        for (int i = 0; i < 40; i++) deep = new JsonObject { ["url"] = "http://example.org/x", ["extension"] = new JsonArray(deep) };
        var obs = JsonNode.Parse(TestFiles.Resource<Observation>("Observation-btu-medium.json").ToJson())!.AsObject();
        obs["subject"] = new JsonObject { ["reference"] = "Patient/" + Patient };
        obs["extension"] = new JsonArray(deep);
        var page = new JsonObject { ["resourceType"] = "Bundle", ["type"] = "searchset", ["entry"] = new JsonArray(new JsonObject { ["resource"] = obs }) };
        await Fhir.FaultAsync(200, 1, "GET", "/fhir/R4/Observation", body: page);
        using var resp = await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, AccessToken, includeResultsKey: false));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed), await resp.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// A prefetched search that failed (an error OperationOutcome among its entries) is looked up again, never read as
    /// "no results", which hid the patient's raised result behind an empty answer (found by a black-box probe).
    /// </summary>
    [Test]
    public async Task A_prefetched_search_that_reports_an_error_is_fetched_again()
    {
        var failed = JsonNode.Parse("""{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"too-costly"}]},"search":{"mode":"outcome"}}]}""");
        using var resp = await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, AccessToken, resultsSlot: failed));
        string json = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), json);
        Assert.That(Card(json).GetProperty("indicator").GetString(), Is.EqualTo("warning"));
        Assert.That(await Fhir.RequestsAsync(), Has.Count.EqualTo(1));
        using var without = await Call(CdsKit.PatientView(Patient, null, null, null, resultsSlot: failed!.DeepClone()));
        Assert.That(without.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed), "no server to ask: 412, not an empty answer");
    }

    /// <summary>
    /// A prefetch is read as MagCds reads the same server's answers: elements R4 does not define (the meta.author
    /// Medplum adds) are skipped, not refused with 400 (CDS Hooks: prefetched data equals a query's; found by a probe).
    /// </summary>
    [Test]
    public async Task A_prefetch_with_elements_a_server_adds_of_its_own_gets_its_card()
    {
        var obs = JsonNode.Parse(TestFiles.Resource<Observation>("Observation-btu-medium.json").ToJson())!.AsObject();
        obs["meta"] = new JsonObject { ["versionId"] = "1", ["author"] = new JsonObject { ["reference"] = "Practitioner/p1" }, ["project"] = "p" };
        var page = new JsonObject { ["resourceType"] = "Bundle", ["type"] = "searchset", ["entry"] = new JsonArray(new JsonObject { ["resource"] = obs }) };
        using var resp = await Call(CdsKit.PatientView("pat-oakhaven", null, null, null, resultsSlot: page));
        string json = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), json);
        Assert.That(Card(json).GetProperty("summary").GetString(), Does.StartWith("Anti-MAG IgM 25000 BTU: raised"));
    }

    [Test]
    public async Task A_FHIR_server_that_keeps_failing_does_not_cut_the_other_servers_off()
    {
        // Enough failing calls at once to open a circuit breaker (the standard one opens at 100 attempts with one in
        // ten failing), all naming a server nobody listens at. The breaker is per server: the working one still answers.
        string dead = $"http://127.0.0.1:{DeadPort()}/fhir";
        var failing = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ =>
            Call(CdsKit.PatientView(Patient, null, dead, AccessToken, includeResultsKey: false))));
        Assert.That(failing.Select(r => r.StatusCode), Has.All.EqualTo(HttpStatusCode.PreconditionFailed));
        foreach (var r in failing) r.Dispose();
        Assert.That(Service.Logs.Lines, Has.Some.Contains("BrokenCircuitException"), "the dead server's circuit did open");

        using var resp = await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, AccessToken, includeResultsKey: false));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), await resp.Content.ReadAsStringAsync());
        // The pipelines are the ones FhirServerPipelines hands out (whose number it bounds): one for each server.
        Assert.That(Service.Services.GetRequiredService<MagCds.Service.CdsHooks.FhirServerPipelines>().Servers,
            Does.Contain(new Uri(dead).GetLeftPart(UriPartial.Authority)).And.Contain(new Uri(Fhir.BaseUrl).GetLeftPart(UriPartial.Authority)));
    }

    /// <summary>A loopback port nothing listens on (taken and released at once).</summary>
    private static int DeadPort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    [Test]
    public async Task An_OperationOutcome_in_the_slot_is_handled_by_fetching()
    {
        var oo = JsonNode.Parse("""{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"timeout"}]}""");
        var resp = await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, AccessToken, resultsSlot: oo));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(Card(await resp.Content.ReadAsStringAsync()).GetProperty("indicator").GetString(), Is.EqualTo("warning"));
        Assert.That(await Fhir.RequestsAsync(), Has.Count.EqualTo(1));
    }

    /// <summary>A patient portal's call (the user is the patient) gets no card, and nothing is fetched for it.</summary>
    [Test]
    public async Task A_patient_users_call_reads_nothing()
    {
        var body = JsonNode.Parse(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, AccessToken, includeResultsKey: false))!.AsObject();
        body["context"]!["userId"] = "Patient/" + Patient;
        var resp = await Call(body.ToJsonString());
        Assert.That(await resp.Content.ReadAsStringAsync(), Is.EqualTo("{\"cards\":[]}"));
        Assert.That(await Fhir.RequestsAsync(), Is.Empty);
    }

    [Test]
    public async Task A_null_key_means_nothing_found_and_nothing_is_fetched()
    {
        var resp = await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, AccessToken));
        Assert.That(await resp.Content.ReadAsStringAsync(), Is.EqualTo("{\"cards\":[]}"));
        Assert.That(await Fhir.RequestsAsync(), Is.Empty);
    }

    [Test]
    public async Task A_full_prefetch_is_used_as_it_is()
    {
        var obs = TestFiles.Resource<Observation>("Observation-btu-low.json");
        var resp = await Call(CdsKit.PatientView("pat-oakhaven", [obs], Fhir.BaseUrl, AccessToken));
        Assert.That(Card(await resp.Content.ReadAsStringAsync()).GetProperty("summary").GetString(), Does.Contain("4500 BTU"));
        Assert.That(await Fhir.RequestsAsync(), Is.Empty);
    }

    [Test]
    public async Task A_server_that_refuses_the_token_gives_412()
    {
        var resp = await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, "wrong-token", includeResultsKey: false));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed));
        Assert.That((await Fhir.RequestsAsync()).Single().Status, Is.EqualTo(401), "a 401 is not retried");
    }

    [Test]
    public async Task An_unreachable_server_gives_412_in_bounded_time()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop(); // nothing listens there now
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var resp = await Call(CdsKit.PatientView(Patient, null, $"http://127.0.0.1:{port}/fhir", AccessToken, includeResultsKey: false));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed));
        Assert.That(sw.Elapsed, Is.LessThan(TimeSpan.FromSeconds(15)), "bounded by FhirQueryTimeoutSeconds (3 s), with slack for a loaded machine");
    }

    [Test]
    public async Task Neither_the_access_token_nor_the_patient_id_reaches_the_logs()
    {
        await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, AccessToken, includeResultsKey: false));
        await Call(CdsKit.PatientView(Patient, null, Fhir.BaseUrl, "wrong-token", includeResultsKey: false));
        var lines = Service.Logs.Lines;
        Assert.That(lines, Is.Not.Empty);
        Assert.That(lines.Where(l => l.Contains(AccessToken, StringComparison.Ordinal) || l.Contains("wrong-token", StringComparison.Ordinal) || l.Contains(Patient, StringComparison.Ordinal)), Is.Empty);
    }
}
