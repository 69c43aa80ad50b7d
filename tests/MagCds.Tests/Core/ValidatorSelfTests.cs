using Hl7.Fhir.Model;
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
