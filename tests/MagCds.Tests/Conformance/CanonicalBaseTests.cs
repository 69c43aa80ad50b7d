using System.Net;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Service.Conformance;
using MagCds.Service.FhirRest;
using MagCds.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace MagCds.Tests.Conformance;

/// <summary>A deployer's canonical base moves every artifact and every output together (a bad one stops start-up: ServiceProcessTests).</summary>
public class CanonicalBaseTests
{
    private const string Hospital = "https://fhir.example-hospital.org/magcds";

    [Test]
    public async Task Outputs_outcomes_and_the_served_package_all_use_the_configured_base_and_still_conform()
    {
        await using var f = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:CanonicalBase"] = Hospital });
        using var client = f.CreateClient();

        var resp = await client.PostAsync(Http.Evaluate, Http.Body(TestFiles.Resource("Parameters-history-rising.json"), FhirFormat.Json));
        string answer = await resp.Content.ReadAsStringAsync();
        var package = f.Services.GetRequiredService<ConformancePackage>();
        string served = string.Concat(package.Resources.Select(r => r.ToJson()));
        Assert.Multiple(() =>
        {
            Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), answer);
            Assert.That(answer, Does.Contain(Hospital + "/StructureDefinition/magcds-risk-assessment")
                .And.Contain(Hospital + "/CodeSystem/magcds-interpretation").And.Contain(Hospital + "/CodeSystem/magcds-outcome"));
            Assert.That(answer, Does.Not.Contain("magcds.org"));
            Assert.That(served, Does.Contain(Hospital + "/ValueSet/magcds-rules"));
            Assert.That(served, Does.Not.Contain("magcds.org"));
        });
        // The response passed the profile check (MagCdsFactory) against this deployment's own package.
        Assert.That(f.Conformance.Checked, Is.GreaterThan(0));
        Assert.That(f.Conformance.Failures, Is.Empty);

        var found = (Bundle)await Http.ReadAsync(await client.GetAsync("/fhir/StructureDefinition?url=" + Uri.EscapeDataString(Hospital + "/StructureDefinition/magcds-observation")));
        Assert.That(found.Total, Is.EqualTo(1));
    }

    /// <summary>
    /// With a public address configured, a searchset's links use it, not the Host header the request sent (a header
    /// anyone can set: the links repeated it).
    /// </summary>
    [Test]
    public async Task Search_links_use_the_configured_public_address_not_the_Host_header()
    {
        const string Public = "https://magcds.hospital.example";
        await using var f = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:CdsHooks:PublicBaseUrl"] = Public + "/" });
        using var client = f.CreateClient();
        using var req = new HttpRequestMessage(HttpMethod.Get, "/fhir/StructureDefinition");
        req.Headers.Host = "attacker.example";
        var found = (Bundle)await Http.ReadAsync(await client.SendAsync(req));
        Assert.That(found.SelfLink!.OriginalString, Is.EqualTo(Public + "/fhir/StructureDefinition"));
        Assert.That(found.Entry.Select(e => e.FullUrl), Has.All.StartWith(Public + "/fhir/StructureDefinition/"));
    }

    [Test]
    public async Task The_validator_warms_up_in_the_background_while_the_service_is_already_ready()
    {
        await using var f = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:FhirRest:WarmUpValidator"] = "true" });
        using var client = f.CreateClient();
        var ready = await client.GetAsync("/health/ready");
        Assert.That(ready.StatusCode, Is.EqualTo(HttpStatusCode.OK), "readiness does not wait for the validator");
        var validator = f.Services.GetRequiredService<ProfileValidator>();
        await WorkerHarness.WaitUntilAsync(() => System.Threading.Tasks.Task.FromResult(validator.IsWarm), "the validator is warm", 60);
    }
}
