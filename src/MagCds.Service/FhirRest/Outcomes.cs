using Hl7.Fhir.Model;
using MagCds.Core.Evaluation;

namespace MagCds.Service.FhirRest;

/// <summary>Builds OperationOutcome issues carrying both the FHIR IssueType and the MagCds code (details.coding).</summary>
public static class Outcomes
{
    public static OperationOutcome.IssueComponent Issue(OutcomeCode code, OperationOutcome.IssueSeverity severity, string message, string? location = null)
    {
        var issue = new OperationOutcome.IssueComponent
        {
            Severity = severity,
            Code = code.Type,
            Details = new CodeableConcept(OutcomeCodes.System, code.Code, code.Display, message),
        };
        if (location is not null) issue.Expression = [location];
        return issue;
    }

    public static OperationOutcome.IssueComponent Issue(CoreIssue i) => Issue(i.Code, i.Severity, i.Message, i.Location);

    /// <summary>An error outcome; its id is the correlation id so a support call can find the log lines.</summary>
    public static OperationOutcome Error(OutcomeCode code, string message, string? correlationId) => new()
    {
        Id = correlationId,
        Issue = [Issue(code, OperationOutcome.IssueSeverity.Error, message)],
    };
}
