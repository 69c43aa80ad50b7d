using Hl7.Fhir.Model;
using MagCds.Core.Evaluation;
using MagCds.Core.Outputs;

namespace MagCds.Tests.Core;

/// <summary>
/// The output ids and identifiers are a contract with every system that stored earlier outputs: the worker's
/// conditional creates and an engine's retries match on them. These values were computed by the release that first
/// shipped them; a change to how ids are derived (a faster hash, a different join) must not change them. A new
/// knowledge version changes ids by design, so the knowledge version is fixed here.
/// </summary>
public class DeterministicIdsTests
{
    private const string KnowledgeVersion = "2026.11.1";

    private static Observation Result() => new()
    {
        Status = ObservationStatus.Final,
        Code = new CodeableConcept("http://loinc.org", "39087-2"),
        Subject = new ResourceReference("Patient/p1"),
        Value = new Quantity(25000, "BTU"),
        Issued = new DateTimeOffset(2026, 3, 2, 8, 0, 0, TimeSpan.Zero),
    };

    private static IEnumerable<TestCaseData> Inputs()
    {
        var byIdentifier = Result();
        byIdentifier.Identifier.Add(new Identifier("urn:oid:1.2.3", "LAB-1"));
        byIdentifier.Meta = new Meta { VersionId = "3" };
        yield return new TestCaseData(new EvaluationInput(byIdentifier, "Observation/x", "Observation"),
            "c895f573645ff12e14e2024035fa51cc", "ra-6dc0503aefd550ba751cad557b48d639ca17b9c4", "urn:uuid:6dc0503a-efd5-80ba-b51c-ad557b48d639",
            "di-7b48d639ca17b9c499f7ebde7f43468df191b770", "urn:uuid:ca17b9c4-99f7-8bde-bf43-468df191b770", "ra-88d3524425f52dd7942d261d59a156263c75af39")
            .SetName("business identifier and meta.versionId");

        var byId = Result();
        byId.Id = "obs-1";
        yield return new TestCaseData(new EvaluationInput(byId, null, "Observation"),
            "5f1daf37a8a97e28d3c1d8facb5121a7", "ra-d13e0ceb865beba9e89f53f5fb3179e474fcd12a", "urn:uuid:d13e0ceb-865b-8ba9-a89f-53f5fb3179e4",
            "di-fb3179e474fcd12a0de0a858c078763e6beed7f2", "urn:uuid:74fcd12a-0de0-8858-8078-763e6beed7f2", "ra-09518a0745d8f4dbc08fe45cd2e10e97b7ec1720")
            .SetName("logical id, version from the content");

        var byReference = Result();
        byReference.Subject = new ResourceReference { Identifier = new Identifier("urn:mrn", "M1") };
        yield return new TestCaseData(new EvaluationInput(byReference, "urn:uuid:0b7e6c4a-2f55-4d7e-9d7c-1f6f0f3f9a10", "Bundle.entry[0].resource"),
            "06974ac6d6147620b68657f7590e3a96", "ra-a74dd26003e773853c1da5d17dbe3f5d6114ac87", "urn:uuid:a74dd260-03e7-8385-bc1d-a5d17dbe3f5d",
            "di-7dbe3f5d6114ac87bd964bdbe90e8991d94c2141", "urn:uuid:6114ac87-bd96-8bdb-a90e-8991d94c2141", "ra-c93d70b42cd47ae3b61cff33e6af507467c6baf7")
            .SetName("Bundle fullUrl, subject by identifier");

        var byContent = Result();
        byContent.Subject = null;
        byContent.ReferenceRange.Add(new Observation.ReferenceRangeComponent { High = new Quantity(1000, "BTU") });
        yield return new TestCaseData(new EvaluationInput(byContent, null, "Observation"),
            "841924f805aea750823701c7c8288e85", "ra-224061781c17557588756a5c8c42cc0a1366234e", "urn:uuid:22406178-1c17-8575-8875-6a5c8c42cc0a",
            "di-8c42cc0a1366234e64034a6222181450fb276ec9", "urn:uuid:1366234e-6403-8a62-a218-1450fb276ec9", "ra-7d1038d3bd712cbd3c37ccebba1e448bd93567b3")
            .SetName("no id, identifier or reference: content fingerprint");
    }

    [TestCaseSource(nameof(Inputs))]
    public void Ids_stay_what_earlier_releases_made(EvaluationInput input, string series, string raId, string raUrn, string diId, string diUrn, string retractionId)
    {
        var keys = DeterministicIds.Keys(input);
        var ids = DeterministicIds.For(keys, KnowledgeVersion);
        Assert.Multiple(() =>
        {
            Assert.That(keys.Series, Is.EqualTo(series));
            Assert.That(ids.RiskAssessmentId, Is.EqualTo(raId));
            Assert.That(ids.RiskAssessmentUrn, Is.EqualTo(raUrn));
            Assert.That(ids.DetectedIssueId, Is.EqualTo(diId));
            Assert.That(ids.DetectedIssueUrn, Is.EqualTo(diUrn));
            Assert.That(DeterministicIds.For(keys, KnowledgeVersion, "retraction").RiskAssessmentId, Is.EqualTo(retractionId));
        });
    }

    [Test]
    public void Ids_are_the_same_on_every_thread()
    {
        // The hash object is reused per thread; results must not depend on which thread, or what it hashed before.
        var (input, expected) = (Inputs().Select(c => (EvaluationInput)c.Arguments[0]!).ToList(), Inputs().Select(c => (string)c.Arguments[2]!).ToList());
        var seen = new System.Collections.Concurrent.ConcurrentBag<(int, string)>();
        Parallel.For(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 4 }, n =>
        {
            int k = n % input.Count;
            seen.Add((k, DeterministicIds.For(DeterministicIds.Keys(input[k]), KnowledgeVersion).RiskAssessmentId));
        });
        Assert.That(seen.Where(s => s.Item2 != expected[s.Item1]), Is.Empty);
        Assert.That(seen, Has.Count.EqualTo(400));
    }
}
