using System.Collections.Concurrent;
using Hl7.Fhir.Model;
using MagCds.Core;
using MagCds.Core.Evaluation;
using MagCds.Service.Conformance;

namespace MagCds.Tests.Support;

/// <summary>
/// The service's own profile validator (Firely, offline: base R4 plus the MagCds package), one per distinct package
/// for the whole run. Every RiskAssessment and DetectedIssue is checked against its MagCds profile, wherever it sits.
/// </summary>
public static class FhirValidation
{
    private static readonly ConcurrentDictionary<string, ProfileValidator> Validators = new();

    /// <summary>The validator for the package a service with this evaluator serves (canonical base, knowledge, codes).</summary>
    public static ProfileValidator For(Evaluator evaluator) =>
        Validators.GetOrAdd($"{evaluator.Canonical.Base}|{evaluator.Knowledge.Version}|{string.Join(",", evaluator.RecognisedCodes.Order())}",
            _ => new ProfileValidator(ConformancePackage.FromEmbedded(evaluator)));

    public static ProfileValidator Default => For(CoreUnderTest.Evaluator);

    /// <summary>
    /// Errors and warnings for <paramref name="resource"/> against the base specification, and for every MagCds output
    /// in it (itself, or inside a Parameters or Bundle) against its MagCds profile; minus one known validator defect.
    /// </summary>
    public static IReadOnlyList<OperationOutcome.IssueComponent> Problems(Resource resource, ProfileValidator? validator = null, CanonicalUrls? urls = null)
    {
        validator ??= Default;
        urls ??= CanonicalUrls.Default;
        var issues = validator.Validate(resource).Issue.ToList();
        foreach (var output in Outputs(resource))
        {
            string profile = urls.Profile(output is RiskAssessment ? CanonicalUrls.Profiles.RiskAssessment : CanonicalUrls.Profiles.DetectedIssue);
            issues.AddRange(validator.Validate(output, profile).Issue.Select(i => { i.Diagnostics = $"[{output.TypeName}/{output.Id} against {profile}] {i.Diagnostics}"; return i; }));
        }
        return issues
            .Where(i => i.Severity is OperationOutcome.IssueSeverity.Error or OperationOutcome.IssueSeverity.Fatal or OperationOutcome.IssueSeverity.Warning)
            .Where(i => !IsRas2Quirk(i, resource))
            .ToList();
    }

    /// <summary>The MagCds outputs in a resource: itself, or the RiskAssessments and DetectedIssues of a Parameters or Bundle.</summary>
    public static IEnumerable<Resource> Outputs(Resource r) => r switch
    {
        RiskAssessment or DetectedIssue => [r],
        Parameters p => p.Parameter.Select(x => x.Resource).Where(x => x is RiskAssessment or DetectedIssue).Cast<Resource>(),
        Bundle b => b.Entry.Select(e => e.Resource).Where(x => x is RiskAssessment or DetectedIssue).Cast<Resource>(),
        _ => [],
    };

    /// <summary>
    /// Firely.Fhir.Validation 3.6.0 fails invariant ras-2 ("probability is decimal implies (probability as decimal) &lt;= 100")
    /// on every prediction WITHOUT a probability, because it counts the empty result as a failure. A prediction with a
    /// qualitative risk and no number is valid R4, and MagCds must not invent a number; so exactly that issue is ignored,
    /// and only when no prediction has a probability.
    /// </summary>
    private static bool IsRas2Quirk(OperationOutcome.IssueComponent i, Resource r) =>
        (i.Details?.Text?.Contains("ras-2", StringComparison.Ordinal) == true || i.Diagnostics?.Contains("ras-2", StringComparison.Ordinal) == true)
        && Outputs(r).OfType<RiskAssessment>().All(ra => ra.Prediction.All(p => p.Probability is null));

    public static string Describe(IEnumerable<OperationOutcome.IssueComponent> problems) =>
        string.Join("\n", problems.Select(p => $"{p.Severity} {p.Details?.Text} {p.Diagnostics} @ {string.Join(",", p.Expression)}"));

    public static void AssertValid(Resource resource)
    {
        var problems = Problems(resource);
        Assert.That(problems, Is.Empty, () => $"{resource.TypeName}/{resource.Id} is not valid:\n" + Describe(problems));
    }
}
