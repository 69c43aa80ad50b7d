using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Tests.Support;

namespace MagCds.Tests.Core;

/// <summary>The validation helper must be able to fail, or "zero errors" everywhere else proves nothing.</summary>
public class ValidatorSelfTests
{
    [Test]
    public void A_RiskAssessment_without_status_and_subject_is_reported_invalid()
    {
        var problems = FhirValidation.Problems(new RiskAssessment { Prediction = [new RiskAssessment.PredictionComponent { Rationale = "x" }] });
        Assert.That(problems.Select(p => p.Details?.Text), Has.Some.Contains("status"));
    }

    [Test]
    public void A_DetectedIssue_with_a_bad_severity_code_is_reported_invalid()
    {
        var di = new DetectedIssue { Status = ObservationStatus.Final };
        di.SeverityElement = new Code<DetectedIssue.DetectedIssueSeverity>();
        di.SeverityElement.JsonValue = "catastrophic";
        Assert.That(FhirValidation.Problems(di), Is.Not.Empty);
    }
}

/// <summary>The check every test service runs on its outputs must catch a non-conforming one in each wire shape.</summary>
public class OutputConformanceSelfTests
{
    private static RiskAssessment Broken()
    {
        var ra = CoreUnderTest.EvaluateFile("Observation-btu-medium.json").Results[0].RiskAssessment!;
        var copy = (RiskAssessment)ra.DeepCopy();
        copy.Method = null;   // the profile requires the rule
        copy.Note.Clear();    // and the notes
        return copy;
    }

    [Test]
    public void A_conforming_output_passes_in_every_shape()
    {
        var ra = CoreUnderTest.EvaluateFile("Observation-btu-medium.json").Results[0].RiskAssessment!;
        var check = new OutputConformance();
        Assert.That(check.Check(ra.ToJson(), "application/fhir+json", CoreUnderTest.Evaluator, "json"), Is.Empty);
        Assert.That(check.Check(ra.ToXml(), "application/fhir+xml", CoreUnderTest.Evaluator, "xml"), Is.Empty);
        Assert.That(check.Checked, Is.EqualTo(1), "the same output is checked once");
    }

    [TestCase("fhir+json")]
    [TestCase("fhir+xml")]
    [TestCase("cds-hooks")]
    public void A_RiskAssessment_without_method_and_notes_is_caught(string shape)
    {
        var ra = Broken();
        var p = new Parameters { Parameter = [new Parameters.ParameterComponent { Name = "riskAssessment", Resource = ra }] };
        var (body, mediaType) = shape switch
        {
            "fhir+json" => (p.ToJson(), "application/fhir+json"),
            "fhir+xml" => (p.ToXml(), "application/fhir+xml"),
            _ => ($$"""{"cards":[{"summary":"s","suggestions":[{"label":"l","actions":[{"type":"create","description":"d","resource":{{ra.ToJson()}}}]}]}]}""", "application/json"),
        };
        var check = new OutputConformance();
        var problems = check.Check(body, mediaType, CoreUnderTest.Evaluator, shape);
        Assert.That(problems, Has.Count.EqualTo(1));
        Assert.That(problems[0], Does.Contain("Missing required member: 'method'").And.Contain("Missing required member: 'note'"));
        Assert.That(check.Failures, Has.Count.EqualTo(1));
    }
}
