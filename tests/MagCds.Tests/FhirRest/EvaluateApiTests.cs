using System.Net;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Service.FhirRest;
using MagCds.Tests.Support;

namespace MagCds.Tests.FhirRest;

/// <summary>Every case of cases.json through POST /fhir/Observation/$mag-evaluate, once in JSON and once in XML.</summary>
[TestFixture(FhirFormat.Json)]
[TestFixture(FhirFormat.Xml)]
public class EvaluateApiTests(FhirFormat format) : ServiceTests
{
    private static IEnumerable<TestCaseData> Cases() => TestFiles.CaseData();

    [TestCaseSource(nameof(Cases))]
    public async Task Each_case_answers_as_expected_and_returns_what_the_core_returns(Case c)
    {
        var input = TestFiles.Resource(c.File);
        var (resp, body) = await Http.PostAsync(Client, Http.Evaluate, Http.Body(input, format), format);

        Assert.That((int)resp.StatusCode, Is.EqualTo(c.Http), () => body.ToJson());
        Assert.That(resp.Content.Headers.ContentType!.MediaType, Is.EqualTo(FhirWire.MediaType(format)));
        if (c.Http != 200)
        {
            var oo = (OperationOutcome)body;
            Assert.That(Http.Codes(oo), Is.SupersetOf(c.Codes!));
            return;
        }

        var p = (Parameters)body;
        var outputs = p.Parameter.Where(x => x.Name is MagEvaluateOperation.Out.RiskAssessment or MagEvaluateOperation.Out.DetectedIssue)
            .Select(x => x.Resource!).ToList();
        var expected = CoreUnderTest.EvaluateFile(c.File).Outputs.ToList();
        Assert.Multiple(() =>
        {
            Assert.That(outputs.OfType<RiskAssessment>().Count(), Is.EqualTo(c.RiskAssessments));
            Assert.That(outputs.OfType<DetectedIssue>().Count(), Is.EqualTo(c.DetectedIssues));
            // What travelled over HTTP (in either format) is exactly what the core built.
            Assert.That(outputs.Select(o => o.ToJson()), Is.EqualTo(expected.Select(o => o.ToJson())));
            var outcome = (OperationOutcome)p.Parameter.Single(x => x.Name == MagEvaluateOperation.Out.Outcome).Resource!;
            Assert.That(Http.Codes(outcome), Does.Contain("evaluated"));
            Assert.That(Http.Codes(outcome), Is.SupersetOf(c.Codes ?? []));
            Assert.That(p.Parameter.Single(x => x.Name == MagEvaluateOperation.Out.KnowledgeVersion).Value?.ToString(), Is.EqualTo(CoreUnderTest.Knowledge.Version));
        });
        FhirValidation.AssertValid(p);
    }

    [Test]
    public async Task Posting_the_same_input_twice_returns_identical_bodies()
    {
        var input = TestFiles.Resource("Bundle-oru-converted.json");
        var first = await Client.PostAsync(Http.Evaluate, Http.Body(input, format));
        var second = await Client.PostAsync(Http.Evaluate, Http.Body(input, format));
        Assert.That(await second.Content.ReadAsStringAsync(), Is.EqualTo(await first.Content.ReadAsStringAsync()));
    }

    [Test]
    public async Task A_bundle_from_an_ORU_message_returns_the_anti_MAG_result_and_says_what_happened_to_each_entry()
    {
        var (resp, body) = await Http.PostAsync(Client, Http.Evaluate, Http.Body(TestFiles.Resource("Bundle-oru-converted.json"), format), format);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var p = (Parameters)body;
        var ra = (RiskAssessment)p.Parameter.Single(x => x.Name == "riskAssessment").Resource!;
        var outcome = (OperationOutcome)p.Parameter.Single(x => x.Name == "outcome").Resource!;
        Assert.Multiple(() =>
        {
            Assert.That(ra.Basis.Single().Reference, Is.EqualTo("urn:uuid:0a1b2c3d-0000-4000-8000-000000000002"));
            Assert.That(ra.Subject.Reference, Is.EqualTo("urn:uuid:6f1c2a6e-5d0b-4f0e-9a43-1b2c3d4e5f60"));
            Assert.That(outcome.Issue.Single(i => Http.Codes(new OperationOutcome { Issue = [i] }).Contains("not-anti-mag")).Expression, Is.EqualTo(new[] { "Bundle.entry[3].resource" }));
            Assert.That(outcome.Issue.Single(i => Http.Codes(new OperationOutcome { Issue = [i] }).Contains("missing-value")).Expression, Is.EqualTo(new[] { "Bundle.entry[4].resource" }));
        });
    }

    [Test]
    public async Task A_bundle_entry_with_an_id_is_referred_to_by_its_id_not_its_fullUrl()
    {
        // FHIR-Converter writes fullUrl urn:uuid:X and id X (request PUT Observation/X): the outputs live outside that
        // Bundle, where only Observation/X resolves.
        var obs = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        obs.Id = "0a1b2c3d-0000-4000-8000-000000000009";
        var bundle = new Bundle { Type = Bundle.BundleType.Batch };
        bundle.Entry.Add(new Bundle.EntryComponent { FullUrl = "urn:uuid:" + obs.Id, Resource = obs });
        var (resp, body) = await Http.PostAsync(Client, Http.Evaluate, Http.Body(bundle, format), format);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var ra = (RiskAssessment)((Parameters)body).Parameter.Single(x => x.Name == "riskAssessment").Resource!;
        Assert.That(ra.Basis.Single().Reference, Is.EqualTo("Observation/" + obs.Id));
    }
}
