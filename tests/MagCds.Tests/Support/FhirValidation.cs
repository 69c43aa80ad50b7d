using Firely.Fhir.Validation;
using Hl7.Fhir.Model;
using Hl7.Fhir.Specification.Source;
using Hl7.Fhir.Specification.Terminology;

namespace MagCds.Tests.Support;

/// <summary>The Firely validator against the base R4 specification (offline), built once for the whole run.</summary>
public static class FhirValidation
{
    private static readonly Lazy<Validator> Shared = new(() =>
    {
        var zip = ZipSource.CreateValidationSource(Path.Combine(AppContext.BaseDirectory, "specification.zip"));
        var resolver = new CachedResolver(zip);
        return new Validator(resolver, LocalTerminologyService.CreateDefaultForCore(resolver));
    });

    private static readonly object Gate = new();

    /// <summary>Errors and warnings the validator reports for <paramref name="resource"/>, minus one known validator defect.</summary>
    public static IReadOnlyList<OperationOutcome.IssueComponent> Problems(Resource resource)
    {
        OperationOutcome oo;
        lock (Gate) oo = Shared.Value.Validate(resource); // thread safety of Validator is not documented
        return oo.Issue
            .Where(i => i.Severity is OperationOutcome.IssueSeverity.Error or OperationOutcome.IssueSeverity.Fatal or OperationOutcome.IssueSeverity.Warning)
            .Where(i => !IsRas2Quirk(i, resource))
            .ToList();
    }

    /// <summary>
    /// Firely.Fhir.Validation 3.6.0 fails invariant ras-2 ("probability is decimal implies (probability as decimal) &lt;= 100")
    /// on every prediction WITHOUT a probability, because it counts the empty result as a failure. A prediction with a
    /// qualitative risk and no number is valid R4, and MagCds must not invent a number; so exactly that issue is ignored,
    /// and only when no prediction has a probability.
    /// </summary>
    private static bool IsRas2Quirk(OperationOutcome.IssueComponent i, Resource r) =>
        (i.Details?.Text?.Contains("ras-2", StringComparison.Ordinal) == true || i.Diagnostics?.Contains("ras-2", StringComparison.Ordinal) == true)
        && RiskAssessments(r).All(ra => ra.Prediction.All(p => p.Probability is null));

    private static IEnumerable<RiskAssessment> RiskAssessments(Resource r) => r switch
    {
        RiskAssessment ra => [ra],
        Parameters p => p.Parameter.Select(x => x.Resource).OfType<RiskAssessment>(),
        Bundle b => b.Entry.Select(e => e.Resource).OfType<RiskAssessment>(),
        _ => [],
    };

    public static void AssertValid(Resource resource)
    {
        var problems = Problems(resource);
        Assert.That(problems, Is.Empty,
            () => $"{resource.TypeName}/{resource.Id} is not valid R4:\n" + string.Join("\n", problems.Select(p => $"{p.Severity} {p.Details?.Text} {p.Diagnostics} @ {string.Join(",", p.Expression)}")));
    }
}
