using System.Diagnostics.Metrics;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hl7.Fhir.Model;
using MagCds.Service.CdsHooks;
using MagCds.Tests.Support;

namespace MagCds.Tests.CdsHooks;

/// <summary>Discovery, request validation (4xx with an OperationOutcome, never 500), patient safety, CORS and the secure default.</summary>
public class RequestTests : ServiceTests
{
    protected override IReadOnlyDictionary<string, string?> Settings => Unsigned(("MagCds:CdsHooks:AllowedOrigins:0", "https://sandbox.cds-hooks.org"));

    [Test]
    public async Task Discovery_lists_the_three_services_with_their_prefetch()
    {
        var resp = await Client.GetAsync("/cds-services");
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var root = JsonDocument.Parse(await resp.Content.ReadAsStringAsync()).RootElement;
        var services = root.GetProperty("services").EnumerateArray().ToList();
        Assert.That(services.Select(s => (s.GetProperty("id").GetString(), s.GetProperty("hook").GetString())), Is.EquivalentTo(new[]
        {
            ((string?)"magcds-patient-view", (string?)"patient-view"), ("magcds-order-select", "order-select"), ("magcds-order-sign", "order-sign"),
        }));
        foreach (var s in services)
        {
            Assert.That(s.GetProperty("description").GetString(), Is.Not.Empty);
            Assert.That(s.GetProperty("prefetch").GetProperty("antiMagResults").GetString(),
                Is.EqualTo("Observation?patient={{context.patientId}}&code=http://loinc.org|39087-2&_sort=-date&_count=21"));
            Assert.That(s.GetProperty("prefetch").GetProperty("patient").GetString(), Is.EqualTo("Patient/{{context.patientId}}"));
            Assert.That(s.TryGetProperty("usageRequirements", out _), Is.False, "optional members are omitted, not null");
        }
    }

    private static string Valid => CdsKit.PatientView("pat-oakhaven", [TestFiles.Resource("Observation-btu-medium.json")]);

    private static IEnumerable<TestCaseData> BadRequests()
    {
        TestCaseData C(string name, Func<JsonObject, JsonNode?> edit, int status = 400) => new TestCaseData(edit, status).SetArgDisplayNames(name);
        yield return C("wrong hook for the service", b => b["hook"] = "order-sign");
        yield return C("unknown hook", b => b["hook"] = "lab-report-view");
        yield return C("no hookInstance", b => b.Remove("hookInstance") ? b : b);
        yield return C("hookInstance not a UUID", b => b["hookInstance"] = "123");
        yield return C("no context", b => b.Remove("context") ? b : b);
        yield return C("context not an object", b => b["context"] = "x");
        yield return C("no patientId", b => b["context"]!.AsObject().Remove("patientId") ? b : b);
        yield return C("no userId", b => b["context"]!.AsObject().Remove("userId") ? b : b);
        yield return C("patientId a number", b => b["context"]!["patientId"] = 5);
        // A reference instead of the id matched no result and gave an empty answer (found by a black-box probe).
        yield return C("patientId a reference, not an id", b => b["context"]!["patientId"] = "Patient/pat-oakhaven");
        yield return C("userId not ResourceType/id", b => b["context"]!["userId"] = "garbage");
        yield return C("userId of a type no hook names", b => b["context"]!["userId"] = "Device/1");
        yield return C("extension not an object", b => b["extension"] = "x");
        yield return C("prefetch an array", b => b["prefetch"] = new JsonArray());
        yield return C("prefetch value a string", b => b["prefetch"]!["antiMagResults"] = "Observation/1");
        yield return C("prefetch value not FHIR", b => b["prefetch"]!["antiMagResults"] = new JsonObject { ["resourceType"] = "Nonsense" });
        yield return C("fhirAuthorization without fhirServer", b => b["fhirAuthorization"] = new JsonObject { ["access_token"] = "t", ["token_type"] = "Bearer" });
        yield return C("fhirServer not a URL", b => b["fhirServer"] = "not a url");
    }

    [TestCaseSource(nameof(BadRequests))]
    public async Task A_malformed_call_gets_a_4xx_with_an_OperationOutcome(Func<JsonObject, JsonNode?> edit, int status)
    {
        var body = JsonNode.Parse(Valid)!.AsObject();
        edit(body);
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body.ToJsonString(), null));
        Assert.That((int)resp.StatusCode, Is.EqualTo(status));
        var oo = (OperationOutcome)await Http.ReadAsync(resp);
        Assert.That(Http.Codes(oo), Does.Contain("invalid-cds-request"));
    }

    /// <summary>
    /// MagCds informs healthcare professionals: a patient-view call whose user is the patient or a relative (a patient
    /// portal, which the hook allows) gets no card, not the clinician's card with its treatment options (found by a probe).
    /// </summary>
    [TestCase("Patient/pat-oakhaven", false)]
    [TestCase("RelatedPerson/rp1", false)]
    [TestCase("PractitionerRole/pr1", true)]
    public async Task Only_a_healthcare_professional_gets_a_card(string userId, bool card)
    {
        var body = JsonNode.Parse(Valid)!.AsObject();
        body["context"]!["userId"] = userId;
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body.ToJsonString(), null));
        string json = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), json);
        Assert.That(JsonDocument.Parse(json).RootElement.GetProperty("cards").GetArrayLength(), Is.EqualTo(card ? 1 : 0), json);
    }

    [Test]
    public async Task A_prefetched_result_that_cannot_be_read_refuses_the_call_rather_than_show_an_older_one_as_latest()
    {
        // The newest result has an `issued` without a time zone (invalid in FHIR); the older one is fine.
        var body = JsonNode.Parse(CdsKit.PatientView("pat-oakhaven", [TestFiles.Resource("Observation-btu-not-detected.json"), TestFiles.Resource("Observation-btu-medium.json")]))!.AsObject();
        body["prefetch"]!["antiMagResults"]!["entry"]![0]!["resource"]!["issued"] = "2026-06-02T10:00:00";
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body.ToJsonString(), null));

        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        var oo = (OperationOutcome)await Http.ReadAsync(resp);
        Assert.That(Http.Codes(oo), Does.Contain("invalid-cds-request"));
        Assert.That(oo.Issue[0].Diagnostics ?? oo.Issue[0].Details?.Text, Does.Contain("entry 0"));
    }

    [Test]
    public async Task A_prefetched_entry_without_its_resource_refuses_the_call_rather_than_answer_from_the_others()
    {
        // The entry may be the newest result with its resource cut off (found by a black-box probe: it was dropped, and
        // the order hooks said no result was on file).
        var body = JsonNode.Parse(CdsKit.PatientView("pat-oakhaven", [TestFiles.Resource("Observation-btu-not-detected.json")]))!.AsObject();
        body["prefetch"]!["antiMagResults"]!["entry"]!.AsArray().Insert(0, new JsonObject { ["fullUrl"] = "https://ehr.example/fhir/Observation/cut" });
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body.ToJsonString(), null));

        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        var oo = (OperationOutcome)await Http.ReadAsync(resp);
        Assert.That(Http.Codes(oo), Does.Contain("invalid-cds-request"));
        Assert.That(oo.Issue[0].Diagnostics ?? oo.Issue[0].Details?.Text, Does.Contain("entry 0 has no resource"));
    }

    [TestCase("patientId")]
    [TestCase("hook")]
    public async Task A_member_given_twice_is_refused(string member)
    {
        string valid = Valid;
        string twice = member == "patientId"
            ? valid.Replace("\"patientId\":\"pat-oakhaven\"", "\"patientId\":\"someone-else\",\"patientId\":\"pat-oakhaven\"", StringComparison.Ordinal)
            : valid.Replace("\"hook\":\"patient-view\"", "\"hook\":\"order-sign\",\"hook\":\"patient-view\"", StringComparison.Ordinal);
        Assert.That(twice, Is.Not.EqualTo(valid), "the duplicate is in the body");
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", twice, null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
    }

    [Test]
    public async Task Prefetch_keys_MagCds_does_not_use_are_not_read()
    {
        var body = JsonNode.Parse(Valid)!.AsObject();
        body["prefetch"]!["patient"] = new JsonObject { ["resourceType"] = "Patient", ["id"] = "pat-oakhaven", ["gender"] = "Male" }; // invalid code
        body["prefetch"]!["other"] = new JsonObject { ["resourceType"] = "Foo" };
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body.ToJsonString(), null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(JsonDocument.Parse(await resp.Content.ReadAsStringAsync()).RootElement.GetProperty("cards").GetArrayLength(), Is.EqualTo(1));
    }

    [TestCase("https://ehr.example/fhir/Observation?page=2", true)]
    [TestCase("https://ehr.example/fhir?_getpages=x&_offset=20", true)]
    [TestCase("https://EHR.example:443/fhir/Observation?page=2", true)]
    [TestCase("http://ehr.example/fhir/Observation?page=2", false)]
    [TestCase("https://evil.example/fhir/Observation?page=2", false)]
    [TestCase("https://ehr.example:8443/fhir/Observation?page=2", false)]
    [TestCase("https://ehr.example/fhirx/Observation?page=2", false)]
    [TestCase("https://ehr.example/other/Observation?page=2", false)]
    // Encoded separators a server or proxy may decode after the check (found by a security probe).
    [TestCase("https://ehr.example/fhir/..%2F..%2Fsecret/Observation", false)]
    [TestCase("https://ehr.example/fhir/..%2f%2e%2e%2fsecret", false)]
    [TestCase("https://ehr.example/fhir/%2E%2E/secret", false)]
    [TestCase("https://ehr.example/fhir/..%5Csecret", false)]
    [TestCase("https://ehr.example/fhir/Observation?_getpages=a%2Fb", true)]
    public void The_access_token_follows_only_next_links_on_the_named_server(string link, bool followed) =>
        Assert.That(MagCds.Service.Security.OutboundLinks.IsUnderServer(new Uri(link), new Uri("https://ehr.example/fhir")), Is.EqualTo(followed));

    /// <summary>
    /// JSON may escape half of a UTF-16 surrogate pair ("\ud800" alone: EHR free text cut in the middle of an emoji),
    /// which no .NET string holds: the member is refused with a 400 naming it (found by a black-box probe: a 500).
    /// </summary>
    [TestCase("\"hook\":\"patient-view\"", "\"hook\":\"patient-view\\ud800\"", "hook")]
    [TestCase("\"patientId\":\"pat-oakhaven\"", "\"patientId\":\"pat-oakhaven\\ud800\"", "patientId")]
    [TestCase("\"userId\":\"Practitioner/example\"", "\"userId\":\"Practitioner/\\udc00example\"", "userId")]
    public async Task Text_holding_half_of_a_surrogate_pair_gets_400_naming_the_member(string member, string cut, string name)
    {
        string body = Valid.Replace(member, cut, StringComparison.Ordinal);
        Assert.That(body, Is.Not.EqualTo(Valid), "the test edits the request");
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body, null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        var oo = (OperationOutcome)await Http.ReadAsync(resp);
        Assert.That(Http.Codes(oo), Does.Contain("invalid-cds-request"));
        Assert.That(oo.Issue[0].Details?.Text, Does.Contain(name).And.Contain("surrogate"));
    }

    [TestCase("{not json", "The body is not valid JSON (line 1, byte 2): 'n' is an invalid start of a property name.")]
    [TestCase("{\n  \"hook\": \"patient-view\",\n  \"hookInstance\": \"SMITH-4711 }", "The body is not valid JSON (line 3, byte ")]
    [TestCase("[]", "The body must be a JSON object.")]
    [TestCase("", "The body is not valid JSON (line 1, byte 1): ")]
    public async Task Malformed_JSON_gets_400_saying_where(string body, string says)
    {
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body, null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        string text = await resp.Content.ReadAsStringAsync();
        Assert.That(text, Does.Contain(says));
        Assert.That(text, Does.Not.Contain("SMITH"), "the body's values are never quoted");
    }

    [Test]
    public async Task Unknown_members_the_spec_allows_are_ignored()
    {
        var body = JsonNode.Parse(Valid)!.AsObject();
        body["extension"] = new JsonObject { ["com.example.whatever"] = new JsonObject { ["deep"] = 1 } };
        body["somethingNew"] = 42;
        body["context"]!["encounterId"] = "89284";
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body.ToJsonString(), null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task An_unknown_service_gets_404_and_a_wrong_content_type_415()
    {
        Assert.That((await Client.SendAsync(CdsKit.Post("/cds-services/nope", Valid, null))).StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        var req = new HttpRequestMessage(HttpMethod.Post, "/cds-services/magcds-patient-view") { Content = new StringContent(Valid, System.Text.Encoding.UTF8, "text/plain") };
        Assert.That((await Client.SendAsync(req)).StatusCode, Is.EqualTo(HttpStatusCode.UnsupportedMediaType));
    }

    [TestCase("no-value", TestName = "A newer result without a value does not hide an earlier raised one")]
    [TestCase("modifier", TestName = "A newer result under an unknown modifier does not hide an earlier raised one")]
    [TestCase("cancelled", TestName = "A newer cancelled result does not hide an earlier raised one")]
    public async Task The_card_shows_the_latest_result_that_can_be_assessed(string newer)
    {
        var raised = TestFiles.Resource<Hl7.Fhir.Model.Observation>("Observation-btu-high.json"); // 2026-03-02
        var later = TestFiles.Resource<Hl7.Fhir.Model.Observation>("Observation-btu-low.json");
        later.Id = "later";
        later.Identifier[0].Value = "ACC-LATER";
        later.Effective = new Hl7.Fhir.Model.FhirDateTime("2026-06-01T09:00:00Z");
        later.Issued = new DateTimeOffset(2026, 6, 2, 9, 0, 0, TimeSpan.Zero);
        switch (newer)
        {
            case "no-value":
                later.Value = null;
                later.DataAbsentReason = new Hl7.Fhir.Model.CodeableConcept("http://terminology.hl7.org/CodeSystem/data-absent-reason", "error");
                break;
            case "modifier":
                later.ModifierExtension.Add(new Hl7.Fhir.Model.Extension("https://lab.example/fhir/StructureDefinition/unknown-modifier", new Hl7.Fhir.Model.FhirBoolean(true)));
                break;
            default:
                later.Status = Hl7.Fhir.Model.ObservationStatus.Cancelled;
                break;
        }
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", CdsKit.PatientView("pat-oakhaven", [later, raised]), null));
        string json = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), json);
        var card = JsonDocument.Parse(json).RootElement.GetProperty("cards").EnumerateArray().Single();
        Assert.That(card.GetProperty("indicator").GetString(), Is.EqualTo("warning"));
        Assert.That(card.GetProperty("summary").GetString(), Does.StartWith("Anti-MAG IgM 88000 BTU"));
        Assert.That(card.GetProperty("detail").GetString(), Does.Contain("2026-03-02"), "the card says when that result was taken");
    }

    [Test]
    public async Task A_body_that_starts_with_a_byte_order_mark_is_read_as_the_REST_door_reads_one()
    {
        var bytes = System.Text.Encoding.UTF8.GetPreamble().Concat(System.Text.Encoding.UTF8.GetBytes(Valid)).ToArray();
        using var req = new HttpRequestMessage(HttpMethod.Post, "/cds-services/magcds-patient-view") { Content = new ByteArrayContent(bytes) };
        req.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var resp = await Client.SendAsync(req);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), await resp.Content.ReadAsStringAsync());
    }

    [Test]
    public async Task No_results_in_prefetch_means_no_card()
    {
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", CdsKit.PatientView("pat-oakhaven", null), null));
        Assert.That(await resp.Content.ReadAsStringAsync(), Is.EqualTo("{\"cards\":[]}"));
    }

    [Test]
    public async Task No_prefetch_and_no_fhirServer_gets_412()
    {
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", CdsKit.PatientView("pat-oakhaven", null, includeResultsKey: false), null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Does.Contain("data-unavailable"));
    }

    [Test]
    public async Task An_OperationOutcome_in_the_prefetch_slot_and_no_fhirServer_gets_412_not_a_crash()
    {
        var oo = JsonNode.Parse("""{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"timeout"}]}""");
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", CdsKit.PatientView("pat-oakhaven", null, resultsSlot: oo), null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed));
    }

    [Test]
    public async Task Another_patients_results_are_ignored_and_counted()
    {
        using var ignored = new IgnoredCount();

        var someoneElse = TestFiles.Resource<Observation>("Observation-btu-high.json");
        someoneElse.Subject = new ResourceReference("Patient/someone-else");
        var mine = TestFiles.Resource<Observation>("Observation-btu-not-detected.json");
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", CdsKit.PatientView("pat-oakhaven", [someoneElse, mine]), null));
        Assert.That(await resp.Content.ReadAsStringAsync(), Is.EqualTo("{\"cards\":[]}"), "the raised result of another patient yields no card");
        Assert.That(ignored.Value, Is.EqualTo(1));
    }

    [TestCase("https://ehr.example.org/fhir/Patient/pat-oakhaven", 0, TestName = "A subject given as the patient's URL on the EHR's FHIR server is the patient")]
    [TestCase("https://ehr.example.org/fhir/Patient/pat-oakhaven/_history/3", 0, TestName = "A subject given as a version of the patient's URL on the EHR's FHIR server is the patient")]
    [TestCase("https://other-hospital.example.org/fhir/Patient/pat-oakhaven", 1, TestName = "A subject with the same patient id on another server is another patient")]
    [TestCase("https://ehr.example.org/other/Patient/pat-oakhaven", 1, TestName = "A subject with the same patient id under another base path is another patient")]
    public async Task Absolute_subject_references(string subject, int ignoredExpected)
    {
        using var ignored = new IgnoredCount();

        var raised = TestFiles.Resource<Observation>("Observation-btu-high.json");
        raised.Subject = new ResourceReference(subject);
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", CdsKit.PatientView("pat-oakhaven", [raised], fhirServer: "https://ehr.example.org/fhir"), null));
        string body = await resp.Content.ReadAsStringAsync();
        if (ignoredExpected == 0) Assert.That(body, Does.Contain("\"indicator\":\"warning\""), "the raised result is the patient's: a card");
        else Assert.That(body, Is.EqualTo("{\"cards\":[]}"), "another patient's raised result yields no card");
        Assert.That(ignored.Value, Is.EqualTo(ignoredExpected));
    }

    [Test]
    public async Task CORS_allows_the_configured_origin_only()
    {
        async Task<HttpResponseMessage> Preflight(string origin)
        {
            var req = new HttpRequestMessage(HttpMethod.Options, "/cds-services/magcds-patient-view");
            req.Headers.Add("Origin", origin);
            req.Headers.Add("Access-Control-Request-Method", "POST");
            req.Headers.Add("Access-Control-Request-Headers", "authorization,content-type");
            return await Client.SendAsync(req);
        }
        var ok = await Preflight("https://sandbox.cds-hooks.org");
        var other = await Preflight("https://evil.example");
        Assert.That(ok.Headers.GetValues("Access-Control-Allow-Origin").Single(), Is.EqualTo("https://sandbox.cds-hooks.org"));
        Assert.That(ok.Headers.GetValues("Access-Control-Max-Age").Single(), Is.EqualTo("600"), "a browser need not ask before every call");
        Assert.That(other.Headers.Contains("Access-Control-Allow-Origin"), Is.False);
    }

    /// <summary>
    /// A browser client (the sandbox) can read the answers that are not 200 too: without the CORS header it would see
    /// a network error instead of the OperationOutcome that says what was wrong.
    /// </summary>
    [TestCase("malformed", 400)]
    [TestCase("no-data", 412)]
    [TestCase("ok", 200)]
    public async Task A_cross_origin_call_from_the_configured_origin_can_read_every_answer(string call, int status)
    {
        string body = call switch
        {
            "malformed" => "{\"hook\":\"patient-view\"}",
            "no-data" => CdsKit.PatientView("pat-oakhaven", null, includeResultsKey: false),
            _ => Valid,
        };
        var req = CdsKit.Post("/cds-services/magcds-patient-view", body, null);
        req.Headers.Add("Origin", "https://sandbox.cds-hooks.org");
        var resp = await Client.SendAsync(req);
        Assert.That((int)resp.StatusCode, Is.EqualTo(status), await resp.Content.ReadAsStringAsync());
        Assert.That(resp.Headers.GetValues("Access-Control-Allow-Origin").Single(), Is.EqualTo("https://sandbox.cds-hooks.org"));

        var other = CdsKit.Post("/cds-services/magcds-patient-view", body, null);
        other.Headers.Add("Origin", "https://evil.example");
        Assert.That((await Client.SendAsync(other)).Headers.Contains("Access-Control-Allow-Origin"), Is.False);
    }

    [Test]
    public async Task Development_mode_is_announced_at_start_up()
    {
        await Client.GetAsync("/cds-services");
        Assert.That(Factory.Logs.Lines.Any(l => l.Contains("DEVELOPMENT MODE", StringComparison.Ordinal) && l.Contains("Warning", StringComparison.Ordinal)), Is.True);
    }

    /// <summary>
    /// With the worker on, the two doors read the same number of earlier results by default; an operator who sets one
    /// and not the other is told that cards and the worker's outputs will then differ for long histories.
    /// </summary>
    [TestCase("20", false)]
    [TestCase("10", true)]
    public async Task A_worker_reading_another_history_length_than_the_cards_is_announced(string? historyCount, bool warned)
    {
        await using var both = new MagCdsFactory(new Dictionary<string, string?>
        {
            ["MagCds:Worker:Enabled"] = "true",
            ["MagCds:Worker:FhirServerUrl"] = "http://127.0.0.1:9/fhir",
            ["MagCds:Worker:PollIntervalSeconds"] = "0",
            ["MagCds:Worker:HistoryCount"] = historyCount,
        });
        await both.CreateClient().GetAsync("/cds-services");
        Assert.That(both.Logs.Lines.Any(l => l.Contains("is not MagCds:Worker:HistoryCount", StringComparison.Ordinal) && l.Contains("Warning", StringComparison.Ordinal)), Is.EqualTo(warned));
    }

    [Test]
    public async Task By_default_an_unsigned_call_is_refused()
    {
        await using var secure = new MagCdsFactory();
        var resp = await secure.CreateClient().SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", Valid, null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(secure.Logs.Lines.Any(l => l.Contains("DEVELOPMENT MODE", StringComparison.Ordinal)), Is.False);
        Assert.That(secure.Logs.Lines.Any(l => l.Contains("AllowInsecureFhirServer is on", StringComparison.Ordinal)), Is.False);
    }

    [Test]
    public async Task Allowing_plain_http_FHIR_servers_is_announced_at_start_up()
    {
        // The access token of a call naming an http fhirServer would cross the network in clear (CDS Hooks requires TLS).
        await using var insecure = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:CdsHooks:AllowInsecureFhirServer"] = "true" });
        await insecure.CreateClient().GetAsync("/cds-services");
        Assert.That(insecure.Logs.Lines.Any(l => l.Contains("AllowInsecureFhirServer is on", StringComparison.Ordinal) && l.Contains("Warning", StringComparison.Ordinal)), Is.True);
    }
}

/// <summary>Counts what the metric magcds.cdshooks.other_patient_observations_ignored records while it lives.</summary>
internal sealed class IgnoredCount : IDisposable
{
    private readonly MeterListener _listener = new();
    private long _value;

    public IgnoredCount()
    {
        _listener.InstrumentPublished = (i, l) =>
        {
            if (i.Meter.Name == CdsHooksMetrics.MeterName && i.Name.EndsWith("other_patient_observations_ignored", StringComparison.Ordinal)) l.EnableMeasurementEvents(i);
        };
        _listener.SetMeasurementEventCallback<long>((_, v, _, _) => Interlocked.Add(ref _value, v));
        _listener.Start();
    }

    public long Value => Interlocked.Read(ref _value);

    public void Dispose() => _listener.Dispose();
}
