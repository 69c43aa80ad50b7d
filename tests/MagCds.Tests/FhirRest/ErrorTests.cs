using System.Diagnostics;
using System.Net;
using System.Text;
using Hl7.Fhir.Model;
using MagCds.Service.FhirRest;
using MagCds.Tests.Support;

namespace MagCds.Tests.FhirRest;

/// <summary>Bad input gets a clear OperationOutcome with a machine-readable code and the right status; never a 500 or a stack trace.</summary>
public class ErrorTests : ServiceTests
{
    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?> { ["MagCds:FhirRest:MaxRequestBodyBytes"] = "65536" };

    private static string Obs => TestFiles.Text("Observation-btu-medium.json");

    private static IEnumerable<TestCaseData> BadBodies()
    {
        TestCaseData Case(string name, string body, string mediaType, int status, string code) =>
            new TestCaseData(body, mediaType, status, code).SetArgDisplayNames(name);
        yield return Case("truncated JSON", Obs[..200], "application/fhir+json", 400, "unparseable");
        yield return Case("not JSON at all", "hello", "application/fhir+json", 400, "unparseable");
        yield return Case("empty body", "", "application/fhir+json", 400, "unparseable");
        yield return Case("unknown element", Obs.Replace("\"status\": \"final\"", "\"status\": \"final\", \"bogus\": 1"), "application/fhir+json", 400, "unparseable");
        yield return Case("decimal too large", Obs.Replace("25000", "1e308"), "application/fhir+json", 400, "unparseable");
        yield return Case("NaN spelled out", Obs.Replace("25000", "NaN"), "application/fhir+json", 400, "unparseable");
        yield return Case("no resourceType", "{\"status\":\"final\"}", "application/fhir+json", 400, "unparseable");
        yield return Case("deep nesting", new string('[', 5000) + new string(']', 5000), "application/fhir+json", 400, "unparseable");
        yield return Case("malformed XML", "<Observation xmlns=\"http://hl7.org/fhir\"><status value=\"final\"/>", "application/fhir+xml", 400, "unparseable");
        yield return Case("XXE", "<?xml version=\"1.0\"?><!DOCTYPE o [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><Observation xmlns=\"http://hl7.org/fhir\"><status value=\"&x;\"/></Observation>", "application/fhir+xml", 400, "unparseable");
        yield return Case("billion laughs", "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><Observation xmlns=\"http://hl7.org/fhir\"><status value=\"&c;\"/></Observation>", "application/fhir+xml", 400, "unparseable");
        yield return Case("wrong content type", Obs, "text/plain", 415, "unsupported-media-type");
        yield return Case("HTML form", "a=b", "application/x-www-form-urlencoded", 415, "unsupported-media-type");
        yield return Case("a Patient", "{\"resourceType\":\"Patient\",\"id\":\"p\"}", "application/fhir+json", 422, "unsupported-resource");
        yield return Case("Parameters with an unknown name", "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"obs\",\"valueString\":\"x\"}]}", "application/fhir+json", 400, "invalid-parameters");
        yield return Case("Parameters without observation", "{\"resourceType\":\"Parameters\",\"id\":\"p1\"}", "application/fhir+json", 400, "invalid-parameters");
        yield return Case("Parameters with a value, not a resource", "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"observation\",\"valueString\":\"x\"}]}", "application/fhir+json", 400, "invalid-parameters");
        // FHIR inv-1: a resource and a value (or parts) in one parameter; which one was meant is not guessed.
        yield return Case("Parameters with a resource and a value", "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"observation\",\"valueString\":\"x\",\"resource\":" + TestFiles.Text("Observation-btu-medium.json") + "}]}", "application/fhir+json", 400, "invalid-parameters");
        yield return Case("Parameters with a resource and parts", "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"observation\",\"part\":[{\"name\":\"x\",\"valueString\":\"y\"}],\"resource\":" + TestFiles.Text("Observation-btu-medium.json") + "}]}", "application/fhir+json", 400, "invalid-parameters");
        yield return Case("empty Bundle", "{\"resourceType\":\"Bundle\",\"type\":\"batch\"}", "application/fhir+json", 422, "nothing-evaluated");
        yield return Case("entry fullUrl with a control character", "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{\"fullUrl\":\"urn:x\\u0000y\",\"resource\":{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"39087-2\"}]},\"subject\":{\"reference\":\"Patient/p\"},\"valueQuantity\":{\"value\":25000,\"unit\":\"BTU\"}}}]}", "application/fhir+json", 422, "unparseable-entry");
        yield return Case("nothing evaluated", TestFiles.Text("Observation-wrong-code.json"), "application/fhir+json", 422, "nothing-evaluated");
        // FHIR: what a modifier or implicit rules MagCds does not know may change is not processed, on a wrapper too.
        const string obs = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"39087-2\"}]},\"subject\":{\"reference\":\"Patient/p\"},\"valueQuantity\":{\"value\":25000,\"unit\":\"BTU\"}}";
        const string modifier = "\"modifierExtension\":[{\"url\":\"https://lab.example/unknown\",\"valueBoolean\":true}]";
        yield return Case("Bundle with implicit rules", $"{{\"resourceType\":\"Bundle\",\"implicitRules\":\"https://lab.example/rules\",\"type\":\"batch\",\"entry\":[{{\"resource\":{obs}}}]}}", "application/fhir+json", 422, "unknown-modifier");
        yield return Case("Parameters with implicit rules", $"{{\"resourceType\":\"Parameters\",\"implicitRules\":\"https://lab.example/rules\",\"parameter\":[{{\"name\":\"observation\",\"resource\":{obs}}}]}}", "application/fhir+json", 422, "unknown-modifier");
        yield return Case("parameter under a modifier", $"{{\"resourceType\":\"Parameters\",\"parameter\":[{{\"name\":\"observation\",{modifier},\"resource\":{obs}}}]}}", "application/fhir+json", 422, "unknown-modifier");
        yield return Case("Bundle entry under a modifier", $"{{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{{{modifier},\"resource\":{obs}}}]}}", "application/fhir+json", 422, "unknown-modifier");
        yield return Case("Bundle entry request under a modifier", $"{{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{{\"resource\":{obs},\"request\":{{{modifier},\"method\":\"POST\",\"url\":\"Observation\"}}}}]}}", "application/fhir+json", 422, "unknown-modifier");
    }

    [TestCaseSource(nameof(BadBodies))]
    public async Task Bad_input_gets_its_status_and_code_in_an_OperationOutcome(string body, string mediaType, int status, string code)
    {
        var resp = await Client.PostAsync(Http.Evaluate, Http.Raw(body, mediaType));
        string text = await resp.Content.ReadAsStringAsync();
        Assert.That((int)resp.StatusCode, Is.EqualTo(status), text);
        var oo = (OperationOutcome)await Http.ReadAsync(resp);
        Assert.Multiple(() =>
        {
            Assert.That(Http.Codes(oo), Does.Contain(code));
            Assert.That(oo.Issue.First().Code, Is.Not.Null);
            Assert.That(oo.Id, Is.EqualTo(resp.Headers.GetValues("X-Request-Id").Single()), "the error carries the correlation id");
            Assert.That(text, Does.Not.Contain("   at ").And.Not.Contain("Exception"), "no stack trace or exception name");
        });
    }

    [TestCase("{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"information\",\"code\":\"informational\"}]}", "not an OperationOutcome.")]
    [TestCase("{\"resourceType\":\"Patient\",\"id\":\"p1\"}", "not a Patient.")]
    public async Task A_resource_of_another_type_is_named_in_the_answer(string body, string says)
    {
        var resp = await Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(body, "application/fhir+json") });
        var oo = (OperationOutcome)await Http.ReadAsync(resp);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.UnprocessableEntity));
        Assert.That(oo.Issue[0].Details?.Text, Does.EndWith(says));
    }

    [Test]
    public async Task A_DTD_is_refused_by_name_not_as_XML_that_is_not_well_formed()
    {
        // Found by a black-box probe: a well-formed body with a DTD was told "not well-formed (line 0, position 0)".
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate)
        {
            Content = Http.Raw("<?xml version=\"1.0\"?><!DOCTYPE Observation><Observation xmlns=\"http://hl7.org/fhir\"><status value=\"final\"/></Observation>", "application/fhir+xml"),
        };
        var resp = await Client.SendAsync(req);
        var oo = (OperationOutcome)await Http.ReadAsync(resp);
        Assert.That((resp.StatusCode, Http.Codes(oo).Single()), Is.EqualTo((HttpStatusCode.BadRequest, "unparseable")));
        Assert.That(oo.Issue[0].Details?.Text, Does.Contain("document type declaration").And.Not.Contain("not well-formed"));
    }

    [Test]
    public async Task A_refused_request_is_logged_with_the_status_the_caller_got_and_no_exception()
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(Obs[..100], "application/fhir+json") };
        req.Headers.Add("X-Request-Id", "refused-request-log-check");
        await Client.SendAsync(req);
        var lines = Factory.Logs.Lines.Where(l => l.Contains("refused-request-log-check", StringComparison.Ordinal)).ToList();
        Assert.That(lines.Any(l => l.Contains("responded 400", StringComparison.Ordinal)), Is.True, string.Join("\n", lines));
        Assert.That(lines.Any(l => l.Contains("\"RequestRoute\":\"/fhir/Observation/$mag-evaluate\"", StringComparison.Ordinal)), Is.True, "names the door that refused it");
        Assert.That(lines.Where(l => l.Contains("\"@x\"", StringComparison.Ordinal) || l.Contains("\"@l\":\"Error\"", StringComparison.Ordinal)), Is.Empty);
    }

    [TestCase("json", 400, @"at Observation\.effective")]
    [TestCase("xml", 400, @"at Observation\.effective")]
    [TestCase("bundle-entry", 200, @"at Bundle\.entry\[0\]\.resource\.effective")]
    [TestCase("unknown-element", 400, @"at Observation[,.]")]
    [TestCase("unknown-attribute", 400, @"at Observation\.status[,.]")]
    [TestCase("unknown-resource", 400, @"at the resource[,.]")]
    public async Task An_error_names_where_the_body_is_wrong_but_never_quotes_its_text(string shape, int status, string where)
    {
        // A bad value may be a name or an identifier, and so may a made-up element name: error answers end up in
        // engines' error queues, alerts and tickets.
        const string Value = "ZQBADDATE-Smithers";
        string json = Obs.Replace("2026-03-02T09:15:00Z", Value);
        var (body, mediaType) = shape switch
        {
            "json" => (json, "application/fhir+json"),
            "xml" => ("<Observation xmlns=\"http://hl7.org/fhir\"><status value=\"final\"/><code><text value=\"x\"/></code><effectiveDateTime value=\"" + Value + "\"/></Observation>", "application/fhir+xml"),
            "bundle-entry" => ("{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":" + json + "},{\"resource\":" + Obs + "}]}", "application/fhir+json"),
            "unknown-element" => (Obs.Replace("\"status\": \"final\"", "\"status\": \"final\", \"Smithers\": 1"), "application/fhir+json"),
            "unknown-attribute" => ("<Observation xmlns=\"http://hl7.org/fhir\"><status value=\"final\" Smithers=\"x\"/><code><text value=\"x\"/></code></Observation>", "application/fhir+xml"),
            _ => ("<Smithers xmlns=\"http://hl7.org/fhir\"><status value=\"final\"/></Smithers>", "application/fhir+xml"),
        };
        var resp = await Client.PostAsync(Http.Evaluate, Http.Raw(body, mediaType));
        string text = await resp.Content.ReadAsStringAsync();
        Assert.That((int)resp.StatusCode, Is.EqualTo(status), text);
        Assert.That(text, Does.Not.Contain("Smithers"));
        Assert.That(text, Does.Match(where), "where the problem is");
    }

    [Test]
    public async Task Invalid_UTF8_is_refused_with_400()
    {
        var bytes = Encoding.UTF8.GetBytes(Obs).Concat(new byte[] { 0xC3, 0x28 }).ToArray();
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new("application/fhir+json");
        var resp = await Client.PostAsync(Http.Evaluate, content);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Does.Contain("unparseable"));
    }

    [Test]
    public async Task A_body_over_the_configured_limit_gets_413()
    {
        var big = new Bundle { Type = Bundle.BundleType.Batch };
        var obs = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        for (int i = 0; i < 100; i++) big.Entry.Add(new Bundle.EntryComponent { Resource = obs });
        var resp = await Client.PostAsync(Http.Evaluate, Http.Body(big, FhirFormat.Json));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.RequestEntityTooLarge));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Does.Contain("payload-too-large"));
    }

    [Test]
    public async Task A_bundle_with_one_unreadable_entry_still_returns_the_good_results_and_says_which_entry_failed()
    {
        var bundle = TestFiles.Resource<Bundle>("Bundle-two-patients.json");
        string json = Http.Text(bundle, FhirFormat.Json).Replace("\"value\":640", "\"value\":\"abc\"");
        var resp = await Client.PostAsync(Http.Evaluate, Http.Raw(json, "application/fhir+json"));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var p = (Parameters)await Http.ReadAsync(resp);
        var outcome = (OperationOutcome)p.Parameter.Single(x => x.Name == "outcome").Resource!;
        var bad = outcome.Issue.Single(i => i.Details != null && i.Details.Coding.Any(c => c.Code == "unparseable-entry"));
        Assert.Multiple(() =>
        {
            Assert.That(bad.Expression, Is.EqualTo(new[] { "Bundle.entry[1]" }));
            Assert.That(p.Parameter.Count(x => x.Name == "riskAssessment"), Is.EqualTo(2), "the two good entries are evaluated");
        });
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(3)]
    public async Task A_null_bundle_entry_is_reported_at_its_place_and_the_others_are_evaluated(int at)
    {
        var bundle = TestFiles.Resource<Bundle>("Bundle-two-patients.json");
        using var doc = System.Text.Json.JsonDocument.Parse(Http.Text(bundle, FhirFormat.Json));
        var entries = doc.RootElement.GetProperty("entry").EnumerateArray().Select(e => e.GetRawText()).ToList();
        entries.Insert(Math.Min(at, entries.Count), "null");
        string json = Http.Text(bundle, FhirFormat.Json);
        int start = json.IndexOf("\"entry\":[", StringComparison.Ordinal) + "\"entry\":[".Length;
        int end = json.LastIndexOf(']');
        json = json[..start] + string.Join(",", entries) + json[end..];

        var resp = await Client.PostAsync(Http.Evaluate, Http.Raw(json, "application/fhir+json"));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var p = (Parameters)await Http.ReadAsync(resp);
        var outcome = (OperationOutcome)p.Parameter.Single(x => x.Name == "outcome").Resource!;
        var bad = outcome.Issue.Single(i => i.Details != null && i.Details.Coding.Any(c => c.Code == "unparseable-entry"));
        Assert.That(bad.Expression, Is.EqualTo(new[] { $"Bundle.entry[{Math.Min(at, entries.Count - 1)}]" }));
        Assert.That(p.Parameter.Count(x => x.Name == "riskAssessment"), Is.EqualTo(entries.Count - 1), "every other entry is evaluated");
    }

    [TestCase("text/html", 406)]
    [TestCase("application/fhir+xml", 200)]
    [TestCase("application/fhir+json;q=0.5, application/fhir+xml;q=0.9", 200)]
    [TestCase("*/*", 200)]
    public async Task Accept_is_honoured(string accept, int status)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(Obs, "application/fhir+json") };
        req.Headers.TryAddWithoutValidation("Accept", accept);
        var resp = await Client.SendAsync(req);
        Assert.That((int)resp.StatusCode, Is.EqualTo(status));
        string expected = status == 406 || accept == "*/*" ? "application/fhir+json" : "application/fhir+xml";
        Assert.That(resp.Content.Headers.ContentType!.MediaType, Is.EqualTo(expected));
    }

    /// <summary>Of formats the client takes equally, the one it sent: an XML request gets XML (found by a black-box probe).</summary>
    [TestCase("application/fhir+json;q=0.1, application/fhir+xml;q=0.1", "application/fhir+xml", "application/fhir+xml")]
    [TestCase("application/fhir+json, application/fhir+xml", "application/fhir+xml", "application/fhir+xml")]
    [TestCase("application/fhir+xml, application/fhir+json", "application/fhir+json", "application/fhir+json")]
    [TestCase("application/fhir+json;q=0.9, application/fhir+xml;q=0.1", "application/fhir+xml", "application/fhir+json")]
    public async Task Of_formats_accepted_equally_the_request_s_own_is_answered(string accept, string sent, string expected)
    {
        string body = sent == "application/fhir+xml" ? Http.Text(TestFiles.Resource("Observation-btu-medium.json"), FhirFormat.Xml) : Obs;
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(body, sent) };
        req.Headers.TryAddWithoutValidation("Accept", accept);
        var resp = await Client.SendAsync(req);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(resp.Content.Headers.ContentType!.MediaType, Is.EqualTo(expected));
    }

    [TestCase("xml", "application/fhir+xml")]
    [TestCase("json", "application/fhir+json")]
    [TestCase("application/fhir+xml", "application/fhir+xml")]
    public async Task Format_parameter_wins_over_Accept(string format, string expected)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate + "?_format=" + Uri.EscapeDataString(format)) { Content = Http.Raw(Obs, "application/fhir+json") };
        req.Headers.TryAddWithoutValidation("Accept", "application/fhir+json");
        var resp = await Client.SendAsync(req);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(resp.Content.Headers.ContentType!.MediaType, Is.EqualTo(expected));
    }

    [Test]
    public async Task A_format_parameter_written_into_the_URL_unencoded_is_understood()
    {
        // "application/fhir+xml" typed into an engine's URL field arrives with a space for the "+".
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate + "?_format=application/fhir+xml") { Content = Http.Raw(Obs, "application/fhir+json") };
        var resp = await Client.SendAsync(req);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(resp.Content.Headers.ContentType!.MediaType, Is.EqualTo("application/fhir+xml"));
    }

    [TestCase("Content-Type", "application/fhir+json; charset=iso-8859-1", 415)]
    [TestCase("Content-Type", "application/fhir+json; charset=UTF-16", 415)]
    [TestCase("Content-Type", "application/fhir+json; charset=\"UTF-8\"", 200)]
    [TestCase("Content-Type", "application/fhir+json; charset=us-ascii", 200)]
    [TestCase("Content-Type", "application/fhir+json; fhirVersion=3.0", 415)]
    [TestCase("Accept", "application/fhir+json; fhirVersion=5.0", 406)]
    [TestCase("Content-Type", "application/fhir+json; fhirVersion=4.0", 200)]
    public async Task A_media_type_naming_another_FHIR_version_is_refused(string header, string value, int status)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(Obs, "application/fhir+json") };
        if (header == "Accept") req.Headers.TryAddWithoutValidation("Accept", value);
        else req.Content.Headers.ContentType = System.Net.Http.Headers.MediaTypeHeaderValue.Parse(value);
        var resp = await Client.SendAsync(req);
        Assert.That((int)resp.StatusCode, Is.EqualTo(status));
        if (status != 200) Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Does.Contain(status == 415 ? "unsupported-media-type" : "not-acceptable"));
    }

    [Test]
    public async Task A_compressed_body_gets_415_saying_which_encoding_is_taken()
    {
        using var compressed = new MemoryStream();
        using (var gz = new System.IO.Compression.GZipStream(compressed, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
            gz.Write(Encoding.UTF8.GetBytes(Obs));
        var content = new ByteArrayContent(compressed.ToArray());
        content.Headers.ContentType = new("application/fhir+json");
        content.Headers.ContentEncoding.Add("gzip");
        var resp = await Client.PostAsync(Http.Evaluate, content);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.UnsupportedMediaType));
        Assert.That(resp.Headers.TryGetValues("Accept-Encoding", out var accepted) ? accepted : [], Is.EqualTo(new[] { "identity" }));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Does.Contain("unsupported-media-type"));
    }

    [Test]
    public async Task A_format_parameter_naming_another_FHIR_version_percent_encoded_is_refused()
    {
        // "; fhirVersion=3.0" with its space encoded as %20: only the media type's own space is read as a "+".
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate + "?_format=application%2Ffhir%2Bjson%3B%20fhirVersion%3D3.0") { Content = Http.Raw(Obs, "application/fhir+json") };
        var resp = await Client.SendAsync(req);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.NotAcceptable));
    }

    [TestCase("ISO-8859-1", false)]
    [TestCase("UTF-16", false)]
    [TestCase("UTF-8", true)]
    public async Task An_XML_body_declaring_another_encoding_is_still_read_as_the_UTF8_it_is(string declared, bool byteOrderMark)
    {
        // FHIR bodies are UTF-8; a declaration copied from elsewhere ("ISO-8859-1") must not turn "µ" into "Âµ".
        string xml = "<?xml version=\"1.0\" encoding=\"" + declared + "\"?><Observation xmlns=\"http://hl7.org/fhir\"><id value=\"enc\"/><status value=\"final\"/>"
            + "<code><coding><system value=\"http://loinc.org\"/><code value=\"39087-2\"/></coding></code><subject><reference value=\"Patient/p1\"/></subject>"
            + "<effectiveDateTime value=\"2026-03-02T09:15:00Z\"/><valueQuantity><value value=\"25000\"/><unit value=\"µg BTU\"/></valueQuantity></Observation>";
        var content = new ByteArrayContent([.. (byteOrderMark ? Encoding.UTF8.GetPreamble() : []), .. Encoding.UTF8.GetBytes(xml)]);
        content.Headers.ContentType = new("application/fhir+xml");
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate + "?_format=json") { Content = content };
        var resp = await Client.SendAsync(req);
        string text = await resp.Content.ReadAsStringAsync();
        Assert.That(text, Does.Contain("Result: 25000 µg BTU").And.Not.Contain("Âµ"));
    }

    [Test]
    public async Task An_unknown_route_answers_404_with_an_OperationOutcome()
    {
        var resp = await Client.GetAsync("/fhir/Patient/123");
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Does.Contain("not-found"));
    }

    [TestCase("GET", "/fhir/Observation/$mag-evaluate", "POST")]
    [TestCase("PUT", "/cds-services/magcds-patient-view", "POST")]
    [TestCase("DELETE", "/cds-services", "GET, HEAD")]
    [TestCase("POST", "/fhir/metadata", "GET, HEAD")]
    [TestCase("POST", "/health/live", "GET, HEAD")]
    [TestCase("PUT", "/health/ready", "GET, HEAD")]
    public async Task A_known_route_asked_with_another_method_gets_405_with_Allow(string method, string path, string allow)
    {
        using var req = new HttpRequestMessage(new HttpMethod(method), path);
        var resp = await Client.SendAsync(req);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.MethodNotAllowed));
        Assert.That(resp.Content.Headers.Allow, Is.EquivalentTo(allow.Split(", ")));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Is.EqualTo(new[] { "method-not-allowed" }));

        var unknown = await Client.GetAsync("/fhir/NoSuchThing");
        Assert.That(unknown.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }

    [Test]
    public async Task An_error_outcome_carries_an_engines_message_id_as_a_valid_FHIR_id()
    {
        string messageId = "ORU_R01:" + new string('A', 100);
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw("{\"resourceType\":\"Patient\",\"id\":\"x\"}", "application/fhir+json") };
        req.Headers.Add("X-Request-Id", messageId);
        var resp = await Client.SendAsync(req);
        Assert.That(resp.Headers.GetValues("X-Request-Id").Single(), Is.EqualTo(messageId), "the header keeps the id as sent");
        var oo = (OperationOutcome)await Http.ReadAsync(resp);
        Assert.That(oo.Id, Does.Match("^[A-Za-z0-9\\-.]{1,64}$").And.StartsWith("ORU-R01-AAAA"));
        FhirValidation.AssertValid(oo);
    }

    [Test]
    public async Task The_callers_request_id_is_echoed_under_its_own_name_and_an_unsafe_one_is_replaced()
    {
        using var good = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(Obs, "application/fhir+json") };
        good.Headers.Add("X-Request-Id", "MSG-20260303.0001");
        var r1 = await Client.SendAsync(good);
        Assert.That(r1.Headers.GetValues("X-Request-Id").Single(), Is.EqualTo("MSG-20260303.0001"));

        using var evil = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(Obs, "application/fhir+json") };
        evil.Headers.TryAddWithoutValidation("X-Request-Id", "x\"} injected {\"" + new string('a', 300));
        var r2 = await Client.SendAsync(evil);
        Assert.That(r2.Headers.GetValues("X-Request-Id").Single(), Does.Match("^[0-9a-f]{32}$"));

        // An engine that names its id X-Correlation-Id gets it back under that name too.
        using var other = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(Obs, "application/fhir+json") };
        other.Headers.Add("X-Correlation-Id", "ABC-1");
        var r3 = await Client.SendAsync(other);
        Assert.That((r3.Headers.GetValues("X-Correlation-Id").Single(), r3.Headers.GetValues("X-Request-Id").Single()), Is.EqualTo(("ABC-1", "ABC-1")));
        Assert.That(Factory.Logs.Lines.Any(l => l.Contains("\"CorrelationId\":\"ABC-1\"", StringComparison.Ordinal)), Is.True, "its log lines carry it");

        var lines = Factory.Logs.Lines.Where(l => l.Contains("MSG-20260303.0001", StringComparison.Ordinal)).ToList();
        Assert.That(lines, Has.Count.GreaterThanOrEqualTo(2), "the evaluation line and the request line carry the correlation id");
        Assert.That(lines.Any(l => l.Contains("Evaluated 1 inputs", StringComparison.Ordinal)), Is.True);
    }
}
