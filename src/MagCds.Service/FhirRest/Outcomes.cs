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
            Details = new CodeableConcept(urls.OutcomeSystem, code.Code, code.Display, Printable(message)),
        };
        if (location is not null) issue.Expression = [Printable(location)];
        return issue;
    }

    /// <summary>A resource type name with its article, for messages: "a Patient", "an OperationOutcome".</summary>
    public static string AType(string typeName) => (typeName is [ 'A' or 'E' or 'I' or 'O' or 'U', ..] ? "an " : "a ") + typeName;

    /// <summary>
    /// The text with every character FHIR strings may not hold (controls but tab, CR and LF; U+FFFE, U+FFFF; a lone
    /// surrogate) replaced by U+FFFD: an error answer must be writable in XML too, whatever a message came to hold.
    /// </summary>
    public static string Printable(string text)
    {
        for (int i = 0; i < text.Length; i++)
        {
            if (Allowed(text, i)) continue;
            var chars = text.ToCharArray();
            for (int j = i; j < chars.Length; j++) if (!Allowed(text, j)) chars[j] = '\uFFFD';
            return new string(chars);
        }
        return text;

        static bool Allowed(string s, int i)
        {
            char c = s[i];
            if (c < 0x20) return c is '\t' or '\n' or '\r';
            if (c is '\uFFFE' or '\uFFFF') return false;
            if (char.IsHighSurrogate(c)) return i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]);
            if (char.IsLowSurrogate(c)) return i > 0 && char.IsHighSurrogate(s[i - 1]);
            return true;
        }
    }

    public static OperationOutcome.IssueComponent Issue(CanonicalUrls urls, CoreIssue i) => Issue(urls, i.Code, i.Severity, i.Message, i.Location);

    /// <summary>An error outcome; its id is the correlation id so a support call can find the log lines.</summary>
    public static OperationOutcome Error(HttpContext http, OutcomeCode code, string message) => new()
    {
        Id = Hosting.Correlation.AsFhirId(http.TraceIdentifier),
        Issue = [Issue(http.RequestServices.GetRequiredService<CanonicalUrls>(), code, OperationOutcome.IssueSeverity.Error, message)],
    };
}
