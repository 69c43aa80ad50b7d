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
        if (!Uri.TryCreate(baseUrl, UriKind.Absolute, out var u) || u.Scheme is not ("http" or "https") || baseUrl.EndsWith('/') || u.Query.Length > 0 || u.Fragment.Length > 0)
            throw new ArgumentException($"The canonical base '{baseUrl}' must be an absolute http(s) URL without a trailing slash, query or fragment.", nameof(baseUrl));
        Base = baseUrl;
    }

    public string Base { get; }
    public string InterpretationSystem => Base + "/CodeSystem/magcds-interpretation";
    public string RuleSystem => Base + "/CodeSystem/magcds-rules";
    public string CannotInterpretSystem => Base + "/CodeSystem/magcds-cannot-interpret";
    public string OutcomeSystem => Base + "/CodeSystem/magcds-outcome";
    public string OverrideReasonSystem => Base + "/CodeSystem/magcds-override-reason";
    /// <summary>Shared by every output about one Observation, whatever its version: what a retraction targets.</summary>
    public string ObservationSeriesSystem => Base + "/sid/observation-assessment";

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
