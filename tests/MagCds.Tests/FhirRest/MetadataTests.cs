using System.Net;
using Hl7.Fhir.Model;
using MagCds.Service.FhirRest;
using MagCds.Tests.Support;

namespace MagCds.Tests.FhirRest;

public class MetadataTests : ServiceTests
{

    [TestCase("application/fhir+json")]
    [TestCase("application/fhir+xml")]
    public async Task Metadata_advertises_the_operation_in_both_formats(string accept)
    {
        using var req = new HttpRequestMessage(HttpMethod.Get, "/fhir/metadata");
        req.Headers.TryAddWithoutValidation("Accept", accept);
        var resp = await Client.SendAsync(req);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(resp.Content.Headers.ContentType!.MediaType, Is.EqualTo(accept));
        var cs = (CapabilityStatement)await Http.ReadAsync(resp);
        var observation = cs.Rest.Single().Resource.Single(r => r.Type == "Observation");
        Assert.That(observation.Operation.Select(o => (o.Name, o.Definition)), Is.EquivalentTo(new[]
        {
            ("mag-evaluate", "https://magcds.org/fhir/OperationDefinition/mag-evaluate"),
            ("validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate"),
        }));
        Assert.That(observation.SupportedProfile, Is.EqualTo(new[] { "https://magcds.org/fhir/StructureDefinition/magcds-observation" }));
        FhirValidation.AssertValid(cs);
    }

    /// <summary>R4 capabilities modes: full and normal are the CapabilityStatement; MagCds has no TerminologyCapabilities (found by a probe).</summary>
    [TestCase("full", 200)]
    [TestCase("normal", 200)]
    [TestCase("terminology", 404)]
    [TestCase("bogus", 400)]
    public async Task Metadata_answers_each_mode_for_what_it_is(string mode, int status)
    {
        var resp = await Client.GetAsync("/fhir/metadata?mode=" + mode);
        Assert.That((int)resp.StatusCode, Is.EqualTo(status));
        var answer = await Http.ReadAsync(resp);
        Assert.That(answer, status == 200 ? Is.InstanceOf<CapabilityStatement>() : Is.InstanceOf<OperationOutcome>());
    }

    [Test]
    public async Task The_published_OperationDefinition_advertises_exactly_the_parameters_the_code_accepts_and_returns()
    {
        var resp = await Client.GetAsync("/fhir/OperationDefinition/mag-evaluate");
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var od = (OperationDefinition)await Http.ReadAsync(resp);
        Assert.Multiple(() =>
        {
            Assert.That(od.Parameter.Where(p => p.Use == OperationParameterUse.In).Select(p => p.Name), Is.EquivalentTo(MagEvaluateOperation.In.All));
            Assert.That(od.Parameter.Where(p => p.Use == OperationParameterUse.Out).Select(p => p.Name), Is.EquivalentTo(MagEvaluateOperation.Out.All));
            Assert.That(od.Code, Is.EqualTo(MagEvaluateOperation.Name));
        });
        FhirValidation.AssertValid(od);
    }

    [Test]
    public async Task Every_output_parameter_the_service_returns_is_declared()
    {
        var resp = await Client.PostAsync(Http.Evaluate, Http.Body(TestFiles.Resource("Bundle-two-patients.json"), FhirFormat.Json));
        var p = (Parameters)await Http.ReadAsync(resp);
        Assert.That(p.Parameter.Select(x => x.Name).Distinct(), Is.SubsetOf(MagEvaluateOperation.Out.All));
    }
}
