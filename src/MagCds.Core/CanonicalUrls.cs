namespace MagCds.Core;

/// <summary>Canonical URLs of the code systems and identifier systems MagCds mints.</summary>
public static class CanonicalUrls
{
    public const string Base = "https://magcds.org/fhir";
    public const string InterpretationSystem = Base + "/CodeSystem/magcds-interpretation";
    public const string RuleSystem = Base + "/CodeSystem/magcds-rules";
    public const string CannotInterpretSystem = Base + "/CodeSystem/magcds-cannot-interpret";
    /// <summary>Shared by every output about one Observation, whatever its version: what a retraction targets.</summary>
    public const string ObservationSeriesSystem = Base + "/sid/observation-assessment";
    public const string Loinc = "http://loinc.org";
    public const string AntiMagLoinc = "39087-2";
}
