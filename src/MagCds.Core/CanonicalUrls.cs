namespace MagCds.Core;

/// <summary>
/// The canonical URLs MagCds mints, all under one base a deployer may override (MagCds:CanonicalBase): code systems,
/// identifier systems and the profiles of fhir-profiles/. Outputs, OperationOutcomes and the served conformance
/// package all take their URLs from one instance, so they always agree with each other.
/// </summary>
public sealed class CanonicalUrls
{
    /// <summary>The base the published package in fhir-profiles/ is written with.</summary>
    public const string DefaultBase = "https://magcds.org/fhir";
    public const string Loinc = "http://loinc.org";
    public const string AntiMagLoinc = "39087-2";

    public static CanonicalUrls Default { get; } = new(DefaultBase);

    public CanonicalUrls(string baseUrl)
    {
        if (!IsValidBase(baseUrl))
            throw new ArgumentException($"The canonical base '{baseUrl}' must be an absolute http(s) URL without a trailing slash, query or fragment.", nameof(baseUrl));
        Base = baseUrl;
        // Built once: outputs carry these on every evaluation.
        InterpretationSystem = Of("CodeSystem", "magcds-interpretation");
        RuleSystem = Of("CodeSystem", "magcds-rules");
        CannotInterpretSystem = Of("CodeSystem", "magcds-cannot-interpret");
        OutcomeSystem = Of("CodeSystem", "magcds-outcome");
        OverrideReasonSystem = Of("CodeSystem", "magcds-override-reason");
        ObservationSeriesSystem = Base + "/sid/observation-assessment";
    }

    /// <summary>An absolute http(s) URL without a trailing slash, query or fragment (also the settings check).</summary>
    public static bool IsValidBase(string? baseUrl) =>
        Uri.TryCreate(baseUrl, UriKind.Absolute, out var u) && u.Scheme is "http" or "https"
        && !baseUrl.EndsWith('/') && u.Query.Length == 0 && u.Fragment.Length == 0;

    public string Base { get; }
    public string InterpretationSystem { get; }
    public string RuleSystem { get; }
    public string CannotInterpretSystem { get; }
    public string OutcomeSystem { get; }
    public string OverrideReasonSystem { get; }
    /// <summary>Shared by every output about one Observation, whatever its version: what a retraction targets.</summary>
    public string ObservationSeriesSystem { get; }

    public string Profile(string id) => $"{Base}/StructureDefinition/{id}";
    public string Of(string resourceType, string id) => $"{Base}/{resourceType}/{id}";

    /// <summary>Ids of the MagCds profiles (fhir-profiles/); outputs claim theirs in meta.profile.</summary>
    public static class Profiles
    {
        public const string Observation = "magcds-observation";
        public const string RiskAssessment = "magcds-risk-assessment";
        public const string DetectedIssue = "magcds-detected-issue";
    }
}
