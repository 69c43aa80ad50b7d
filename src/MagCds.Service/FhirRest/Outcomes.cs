using Hl7.Fhir.Model;
using MagCds.Core;
using MagCds.Core.Evaluation;

namespace MagCds.Service.FhirRest;

/// <summary>
/// Builds OperationOutcome issues carrying both the FHIR IssueType and the MagCds code (details.coding, in the
/// deployment's outcome CodeSystem, so the code system the package publishes is the one the answers use).
/// </summary>
public static class Outcomes
{
    public static OperationOutcome.IssueComponent Issue(CanonicalUrls urls, OutcomeCode code, OperationOutcome.IssueSeverity severity, string message, string? location = null)
    {
        var issue = new OperationOutcome.IssueComponent
        {
            Severity = severity,
            Code = code.Type,
            Details = new CodeableConcept(urls.OutcomeSystem, code.Code, code.Display, message),
        };
        if (location is not null) issue.Expression = [location];
        return issue;
    }

    public static OperationOutcome.IssueComponent Issue(CanonicalUrls urls, CoreIssue i) => Issue(urls, i.Code, i.Severity, i.Message, i.Location);

    /// <summary>An error outcome; its id is the correlation id so a support call can find the log lines.</summary>
    public static OperationOutcome Error(HttpContext http, OutcomeCode code, string message) => new()
    {
        Id = Hosting.Correlation.AsFhirId(http.TraceIdentifier),
        Issue = [Issue(http.RequestServices.GetRequiredService<CanonicalUrls>(), code, OperationOutcome.IssueSeverity.Error, message)],
    };
}
