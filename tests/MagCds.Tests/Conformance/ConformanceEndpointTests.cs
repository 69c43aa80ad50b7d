using System.Net;
using Hl7.Fhir.Model;
using MagCds.Service.Conformance;
using MagCds.Service.FhirRest;
using MagCds.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace MagCds.Tests.Conformance;

/// <summary>The package as the running service serves it: read, ?url= search, both formats.</summary>
public class ConformanceEndpointTests : ServiceTests
{
    private const string Base = "https://magcds.org/fhir";

    protected override IReadOnlyDictionary<string, string?>? Settings => new Dictionary<string, string?>
    {
        ["MagCds:AdditionalCodes:0"] = "urn:oid:1.2.3.4.5.99|MAGM",
    };

    private async Task<Resource> GetAsync(string url, FhirFormat format, HttpStatusCode expected = HttpStatusCode.OK)
    {
        using var req = new HttpRequestMessage(HttpMethod.Get, url);
        req.Headers.TryAddWithoutValidation("Accept", FhirWire.MediaType(format));
        var resp = await Client.SendAsync(req);
        Assert.That(resp.StatusCode, Is.EqualTo(expected), url);
        Assert.That(resp.Content.Headers.ContentType!.MediaType, Is.EqualTo(FhirWire.MediaType(format)));
        return await Http.ReadAsync(resp);
    }

    private static IEnumerable<TestCaseData> Served()
    {
        foreach (var format in new[] { FhirFormat.Json, FhirFormat.Xml })
            foreach (var (type, id) in new[]
                     {
                         ("StructureDefinition", "magcds-observation"), ("StructureDefinition", "magcds-risk-assessment"),
                         ("StructureDefinition", "magcds-detected-issue"), ("OperationDefinition", "mag-evaluate"),
                         ("PlanDefinition", "magcds-knowledge"), ("CodeSystem", "magcds-outcome"), ("CodeSystem", "magcds-rules"),
                         ("ValueSet", "anti-mag-igm-codes"), ("ValueSet", "magcds-interpretation"), ("CapabilityStatement", "magcds"),
                     })
                yield return new TestCaseData(type, id, format).SetArgDisplayNames(type, id, format.ToString());
    }

    [TestCaseSource(nameof(Served))]
    public async Task Each_resource_is_served_by_id_and_found_by_its_canonical_url(string type, string id, FhirFormat format)
    {
        var read = await GetAsync($"/fhir/{type}/{id}", format);
        Assert.That((read.TypeName, read.Id), Is.EqualTo((type, id)));
        var (url, version) = PackageArtifacts.CanonicalOf(read);
        Assert.That(url, Is.EqualTo($"{Base}/{type}/{id}"));

        var found = (Bundle)await GetAsync($"/fhir/{type}?url={Uri.EscapeDataString(url)}", format);
        Assert.Multiple(() =>
        {
            Assert.That(found.Type, Is.EqualTo(Bundle.BundleType.Searchset));
            Assert.That(found.Total, Is.EqualTo(1));
            Assert.That(found.Entry.Single().Resource!.IsExactly(read), Is.True, "search and read return the same resource");
            Assert.That(found.Entry.Single().FullUrl, Does.EndWith($"/fhir/{type}/{id}"));
        });
        var versioned = (Bundle)await GetAsync($"/fhir/{type}?url={Uri.EscapeDataString(url + "|" + version)}", format);
        Assert.That(versioned.Total, Is.EqualTo(1));
    }

    [Test]
    public async Task A_search_for_an_unknown_url_is_an_empty_searchset_and_an_unknown_id_is_404()
    {
        var none = (Bundle)await GetAsync("/fhir/StructureDefinition?url=" + Uri.EscapeDataString(Base + "/StructureDefinition/nope"), FhirFormat.Json);
        Assert.That((none.Total, none.Entry.Count), Is.EqualTo((0, 0)));
        var oo = (OperationOutcome)await GetAsync("/fhir/StructureDefinition/nope", FhirFormat.Json, HttpStatusCode.NotFound);
        Assert.That(Http.Codes(oo), Is.EqualTo(new[] { "not-found" }));
    }

    [Test]
    public async Task An_unsupported_search_parameter_is_left_out_of_the_self_link_or_refused_when_strict()
    {
        // R4: the self link says which parameters were applied, so a client sees that name= filtered nothing.
        var all = (Bundle)await GetAsync("/fhir/StructureDefinition?name=zzz&_count=1", FhirFormat.Json);
        Assert.That(all.Total, Is.EqualTo(3), "nothing was filtered");
        Assert.That(all.SelfLink!.OriginalString, Does.EndWith("/fhir/StructureDefinition"));
        var applied = (Bundle)await GetAsync($"/fhir/StructureDefinition?url={Uri.EscapeDataString(Base + "/StructureDefinition/magcds-observation")}&name=zzz", FhirFormat.Json);
        Assert.That(applied.SelfLink!.OriginalString, Does.EndWith("/fhir/StructureDefinition?url=" + Uri.EscapeDataString(Base + "/StructureDefinition/magcds-observation")));

        using var strict = new HttpRequestMessage(HttpMethod.Get, "/fhir/StructureDefinition?name=zzz");
        strict.Headers.Add("Prefer", "handling=strict");
        using var resp = await Client.SendAsync(strict);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Is.EqualTo(new[] { "invalid-parameters" }));
    }

    [Test]
    public async Task Searching_a_type_without_url_lists_every_resource_of_that_type()
    {
        var all = (Bundle)await GetAsync("/fhir/ValueSet", FhirFormat.Json);
        Assert.That(all.Entry.Select(e => e.Resource!.Id), Is.EquivalentTo(Factory.Services.GetRequiredService<ConformancePackage>()
            .Resources.OfType<ValueSet>().Select(v => v.Id)));
    }

    [Test]
    public async Task The_served_code_ValueSet_includes_the_local_codes_this_deployment_is_configured_with()
    {
        var vs = (ValueSet)await GetAsync("/fhir/ValueSet/anti-mag-igm-codes", FhirFormat.Json);
        Assert.That(vs.Compose!.Include.SelectMany(i => i.Concept.Select(c => $"{i.System}|{c.Code}")),
            Is.EquivalentTo(new[] { "http://loinc.org|39087-2", "urn:oid:1.2.3.4.5.99|MAGM" }));
        // Not the package's ValueSet (LOINC only), so not under the package's url|version either.
        var published = Factory.Services.GetRequiredService<ConformancePackage>().Resources.OfType<StructureDefinition>().First().Version;
        Assert.That(vs.Version, Does.StartWith(published + "-local.").And.Length.EqualTo(published!.Length + 15));
    }

    [Test]
    public async Task The_served_profiles_have_snapshots_and_the_PlanDefinition_is_the_running_knowledge()
    {
        var sd = (StructureDefinition)await GetAsync("/fhir/StructureDefinition/magcds-risk-assessment", FhirFormat.Xml);
        Assert.That(sd.Snapshot!.Element.Single(e => e.ElementId == "RiskAssessment.note").Min, Is.EqualTo(1));
        var plan = (PlanDefinition)await GetAsync("/fhir/PlanDefinition/magcds-knowledge", FhirFormat.Json);
        Assert.That(plan.Version, Is.EqualTo(CoreUnderTest.Knowledge.Version));
        FhirValidation.AssertValid(plan);
    }
}

/// <summary>A second LOINC code is a local addition too: the served code ValueSet is then not the published one.</summary>
public class LocalLoincCodeTests : ServiceTests
{
    protected override IReadOnlyDictionary<string, string?>? Settings => new Dictionary<string, string?>
    {
        ["MagCds:AdditionalCodes:0"] = "http://loinc.org|99999-9",
    };

    [Test]
    public async Task The_code_ValueSet_with_another_LOINC_code_is_served_under_a_version_of_its_own()
    {
        var vs = (ValueSet)await Http.ReadAsync(await Client.GetAsync("/fhir/ValueSet/anti-mag-igm-codes"));
        Assert.That(vs.Compose!.Include.SelectMany(i => i.Concept.Select(c => c.Code)), Is.EquivalentTo(new[] { "39087-2", "99999-9" }));
        Assert.That(vs.Version, Does.Contain("-local."));
    }
}
