using System.Net;
using Hl7.Fhir.Model;
using MagCds.Service.FhirRest;
using MagCds.Tests.Support;

namespace MagCds.Tests.Conformance;

/// <summary>POST /fhir/Observation/$validate: an integration engineer checks a mapping before go-live.</summary>
public class ValidateOperationTests : ServiceTests
{
    private const string Validate = "/fhir/Observation/$validate";
    private const string Key = "lab-engine-key-000001";

    protected override IReadOnlyDictionary<string, string?>? Settings => new Dictionary<string, string?>
    {
        ["MagCds:Security:ApiKeys:0:Name"] = "lab-engine", ["MagCds:Security:ApiKeys:0:Key"] = Key,
        ["MagCds:AdditionalCodes:0"] = "urn:oid:1.2.3.4.5.99|MAGM",
    };

    private async Task<(HttpStatusCode Status, OperationOutcome Outcome)> ValidateAsync(HttpContent content, FhirFormat accept = FhirFormat.Json, bool withKey = true, string query = "")
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, Validate + query) { Content = content };
        req.Headers.TryAddWithoutValidation("Accept", FhirWire.MediaType(accept));
        if (withKey) req.Headers.Add("X-API-Key", Key);
        var resp = await Client.SendAsync(req);
        return (resp.StatusCode, (OperationOutcome)await Http.ReadAsync(resp));
    }

    private static IEnumerable<OperationOutcome.IssueComponent> Errors(OperationOutcome oo) =>
        oo.Issue.Where(i => i.Severity is OperationOutcome.IssueSeverity.Error or OperationOutcome.IssueSeverity.Fatal);

    [TestCase(FhirFormat.Json)]
    [TestCase(FhirFormat.Xml)]
    public async Task A_well_mapped_Observation_conforms_and_the_answer_says_what_mag_evaluate_would_do(FhirFormat format)
    {
        var (status, oo) = await ValidateAsync(Http.Body(TestFiles.Resource("Observation-btu-medium.json"), format), format);
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(Errors(oo), Is.Empty, () => FhirValidation.Describe(oo.Issue));
            Assert.That(oo.Issue.Where(i => i.Severity == OperationOutcome.IssueSeverity.Warning), Is.Empty, () => FhirValidation.Describe(oo.Issue));
            Assert.That(oo.Issue.Select(i => i.Diagnostics ?? ""), Has.Some.Contains("conforms to https://magcds.org/fhir/StructureDefinition/magcds-observation"));
            Assert.That(oo.Issue.Select(i => i.Details?.Text ?? ""), Has.Some.Contains("as 'elevated' by rule 'buhlmann-btu'"));
        });
    }

    [Test]
    public async Task A_national_profile_the_service_does_not_hold_is_a_warning_not_an_error()
    {
        // Lab feeds often claim profiles of their own country (here US Core); that says nothing against MagCds's own.
        const string usCore = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab";
        var obs = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        obs.Meta = new Meta { Profile = [usCore] };
        var (status, oo) = await ValidateAsync(Http.Body(obs, FhirFormat.Json));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(Errors(oo), Is.Empty, () => FhirValidation.Describe(oo.Issue));
        Assert.That(oo.Issue.Where(i => i.Severity == OperationOutcome.IssueSeverity.Warning).Select(i => $"{i.Details?.Text} {i.Diagnostics}"),
            Has.Some.Contains(usCore), "the claim is still named");
        Assert.That(oo.Issue.Select(i => i.Diagnostics ?? ""), Has.Some.Contains("conforms to https://magcds.org/fhir/StructureDefinition/magcds-observation"));
    }

    [Test]
    public async Task Profiles_a_caller_claims_are_named_as_not_checked_and_never_compiled()
    {
        // Any profile a caller names would otherwise be looked up and compiled (seconds each for a base-specification
        // profile, kept for good, with a full garbage collection after each new one): callers could stall the service.
        const string own = "https://magcds.org/fhir/StructureDefinition/magcds-observation";
        var plain = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        plain.Meta = new Meta { Profile = [own] };
        var (first, _) = await ValidateAsync(Http.Body(plain, FhirFormat.Json)); // everything such a result needs is compiled
        Assert.That(first, Is.EqualTo(HttpStatusCode.OK));
        int compiledBefore = Compiled();
        string[] claims = [.. Enumerable.Range(0, 5).Select(i => $"https://made-up.example/StructureDefinition/p{i}"), "http://hl7.org/fhir/StructureDefinition/vitalsigns"];
        var obs = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        obs.Meta = new Meta { Profile = [.. claims, own] };
        var (status, oo) = await ValidateAsync(Http.Body(obs, FhirFormat.Json));
        Assert.That(status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(Errors(oo), Is.Empty, () => FhirValidation.Describe(oo.Issue));
        var warnings = oo.Issue.Where(i => i.Severity == OperationOutcome.IssueSeverity.Warning).Select(i => i.Diagnostics ?? "").ToList();
        foreach (var claim in claims) Assert.That(warnings, Has.One.Contains($"'{claim}', which $validate does not check"));
        Assert.That(Compiled(), Is.EqualTo(compiledBefore), () => "no definition was compiled for the claims:\n" + string.Join("\n", Factory.Logs.Lines.Where(l => l.Contains("compiled", StringComparison.Ordinal))));

        int Compiled() => Factory.Logs.Lines.Count(l => l.Contains("compiled new definitions", StringComparison.Ordinal));
    }

    [Test]
    public async Task A_configured_local_code_conforms_to_the_served_ValueSet()
    {
        var (status, oo) = await ValidateAsync(Http.Body(TestFiles.Resource("Observation-local-code.json"), FhirFormat.Json));
        Assert.That((status, Errors(oo).Count()), Is.EqualTo((HttpStatusCode.OK, 0)), () => FhirValidation.Describe(oo.Issue));
    }

    [Test]
    public async Task A_poor_mapping_is_valid_to_ask_about_and_every_problem_is_named_with_its_element()
    {
        var obs = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        obs.Code = new CodeableConcept("http://loinc.org", "2345-7"); // glucose, not anti-MAG
        obs.Subject = null;
        obs.Value = new FhirBoolean(true);
        var (status, oo) = await ValidateAsync(Http.Body(obs, FhirFormat.Json));
        var errors = Errors(oo).ToList();
        Assert.Multiple(() =>
        {
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), "$validate answers 200 whether or not the resource is valid");
            Assert.That(errors.SelectMany(e => e.Expression), Has.Some.StartsWith("Observation.code"));
            Assert.That(errors.SelectMany(e => e.Expression), Has.Some.StartsWith("Observation.value"));
            Assert.That(FhirValidation.Describe(errors), Does.Contain("subject"));
            Assert.That(Http.Codes(oo), Does.Contain("not-anti-mag"), "and what $mag-evaluate would say about it");
        });
    }

    [Test]
    public async Task A_body_that_is_not_FHIR_is_reported_as_the_validation_result()
    {
        var (status, oo) = await ValidateAsync(Http.Raw("""{"resourceType":"Observation","status":"final","bogus":1}""", "application/fhir+json"));
        Assert.That((status, Http.Codes(oo).Single()), Is.EqualTo((HttpStatusCode.OK, "unparseable")));
    }

    [Test]
    public async Task A_Parameters_with_a_resource_is_accepted_and_another_profile_or_type_is_refused()
    {
        var obs = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        var ok = new Parameters { Parameter = [new Parameters.ParameterComponent { Name = "resource", Resource = obs }] };
        Assert.That((await ValidateAsync(Http.Body(ok, FhirFormat.Json))).Status, Is.EqualTo(HttpStatusCode.OK));

        ok.Parameter.Add(new Parameters.ParameterComponent { Name = "profile", Value = new Canonical("http://hl7.org/fhir/StructureDefinition/vitalsigns") });
        var (status, oo) = await ValidateAsync(Http.Body(ok, FhirFormat.Json));
        Assert.That((status, Http.Codes(oo).Single()), Is.EqualTo((HttpStatusCode.BadRequest, "invalid-parameters")));

        var (typeStatus, typeOo) = await ValidateAsync(Http.Body(new Patient { Id = "p" }, FhirFormat.Json));
        Assert.That((typeStatus, Http.Codes(typeOo).Single()), Is.EqualTo((HttpStatusCode.UnprocessableEntity, "unsupported-resource")));
    }

    /// <summary>
    /// FHIR operations take parameters of a primitive type in the URL too: a profile or mode given there is checked as
    /// in a Parameters body, not ignored (found by a black-box probe: the answer said the Observation conforms, without
    /// saying the profile asked for was not the one checked).
    /// </summary>
    [TestCase("?profile=http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab", HttpStatusCode.BadRequest)]
    [TestCase("?mode=delete", HttpStatusCode.BadRequest)]
    [TestCase("?mode=create&mode=delete", HttpStatusCode.BadRequest)]
    [TestCase("?mode=update", HttpStatusCode.OK)]
    [TestCase("?profile=https://magcds.org/fhir/StructureDefinition/magcds-observation", HttpStatusCode.OK)]
    public async Task A_profile_or_mode_in_the_URL_is_checked_like_one_in_the_body(string query, HttpStatusCode expected)
    {
        var (status, oo) = await ValidateAsync(Http.Body(TestFiles.Resource("Observation-btu-medium.json"), FhirFormat.Json), query: query);
        Assert.That(status, Is.EqualTo(expected), string.Join(" ", oo.Issue.Select(i => i.Details?.Text ?? i.Diagnostics)));
        if (expected == HttpStatusCode.BadRequest) Assert.That(Http.Codes(oo).Single(), Is.EqualTo("invalid-parameters"));
    }

    [Test]
    public async Task It_needs_the_same_credentials_as_mag_evaluate()
    {
        var (status, oo) = await ValidateAsync(Http.Body(TestFiles.Resource("Observation-btu-medium.json"), FhirFormat.Json), withKey: false);
        Assert.That((status, Http.Codes(oo).Single()), Is.EqualTo((HttpStatusCode.Unauthorized, "unauthorized")));
    }
}
