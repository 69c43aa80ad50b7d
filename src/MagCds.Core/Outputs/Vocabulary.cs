using MagCds.Core.Evaluation;

namespace MagCds.Core.Outputs;

/// <summary>A code MagCds defines: the outputs carry it, and the published CodeSystem lists it with its definition.</summary>
public sealed record Concept(string Code, string Display, string Definition);

/// <summary>
/// The codes of MagCds's own code systems, defined once: the outputs use them and the conformance package
/// (fhir-profiles/, and the service's /fhir endpoints) publishes them, so the two cannot disagree.
/// </summary>
public static class Vocabulary
{
    /// <summary>Interpretation categories (meta.tag of every output, DetectedIssue.code), plus the retraction tag.</summary>
    public static readonly Concept Elevated = new("elevated", "Raised: above the interval judged against, or positive",
        "The result is above the upper limit of the interval it was judged against (the laboratory's reference range or flag, or a MagCds assay profile's interval), or was reported positive or detected.");
    public static readonly Concept NotElevated = new("not-elevated", "Not raised: not above the interval judged against, or negative",
        "The result is at or below the upper limit of the interval it was judged against (the laboratory's reference range or flag, or a MagCds assay profile's interval), or was reported negative or not detected.");
    public static readonly Concept CannotInterpret = new("cannot-interpret", "Cannot be interpreted safely",
        "MagCds cannot judge the result safely (for example an unknown unit and no reference range); the reason is given as evidence.");
    public static readonly Concept Retraction = new("retraction", "Retraction of earlier outputs",
        "The Observation was entered in error; every earlier MagCds output about it is retracted.");
    public static readonly IReadOnlyList<Concept> Interpretations = [Elevated, NotElevated, CannotInterpret, Retraction];

    public static Concept Of(Category c) => c switch
    {
        Category.Elevated => Elevated,
        Category.NotElevated => NotElevated,
        _ => CannotInterpret,
    };

    /// <summary>Why a result cannot be interpreted (DetectedIssue.evidence.code).</summary>
    public static Concept Of(CannotInterpretReason r) => ReasonConcepts[r];

    // Made once: cannot-interpret outputs look their reason up on every evaluation.
    private static readonly IReadOnlyDictionary<CannotInterpretReason, Concept> ReasonConcepts =
        Enum.GetValues<CannotInterpretReason>().ToDictionary(r => r, CreateReason);

    private static Concept CreateReason(CannotInterpretReason r) => r switch
    {
        CannotInterpretReason.NoInterval => new("no-interval", "No reference range and no known assay for this unit",
            "The Observation carries no reference range or interpretation flag, and its unit belongs to no assay profile MagCds knows."),
        CannotInterpretReason.UnitMismatch => new("unit-mismatch", "Value and reference range are in different units",
            "The value and the reference range sent with it are in different units; MagCds does not convert between units."),
        CannotInterpretReason.CensoredAcrossLimit => new("censored-across-limit", "Censored value may lie on either side of the limit",
            "The value is reported with a comparator (such as < or >) and may lie on either side of the limit."),
        CannotInterpretReason.NegativeValue => new("negative-value", "Negative value", "The value is below zero; MagCds does not interpret a negative result."),
        CannotInterpretReason.ImplausibleValue => new("implausible-value", "Implausibly large value",
            "The value is so large that it is read as a unit or transcription error (a data-quality guard, not a clinical threshold)."),
        CannotInterpretReason.UnreadableQualitative => new("unreadable-value", "Value is not a number or a recognised qualitative result",
            "The value is neither a number nor a qualitative result MagCds recognises."),
        CannotInterpretReason.UnreadableRatio => new("unreadable-ratio", "Ratio is not a 1:n titre", "The value is a ratio that is not a 1:n titre."),
        CannotInterpretReason.UnusableRange => new("unusable-range", "The laboratory's reference range cannot be used",
            "The Observation carries a reference range without a numeric upper limit, one for a particular age or population, or one that is not a normal range, and no interpretation flag; or several normal ranges with different limits; or a range no antibody level has (an upper limit at zero or below, a lower limit above the upper), or limits with a comparator, which a FHIR range may not hold. An assay profile's interval is not used in place of the laboratory's own."),
        CannotInterpretReason.InterpretationConflict => new("interpretation-conflict", "Laboratory flags contradict each other or the laboratory's own range",
            "The laboratory's interpretation flags contradict each other, or its flag contradicts its own reference range."),
        CannotInterpretReason.EquivocalFlag => new("equivocal-flag", "The laboratory flagged the result equivocal",
            "The laboratory's interpretation flag says equivocal, indeterminate or weakly reactive; MagCds does not turn that into raised or not raised."),
        CannotInterpretReason.UnreadableFlag => new("unreadable-flag", "The laboratory's interpretation cannot be read",
            "The Observation carries an interpretation MagCds does not read and no reference range; an assay profile's interval is not used in place of the laboratory's own verdict."),
        CannotInterpretReason.UnitConflict => new("unit-conflict", "Unit text and unit code name different assays",
            "The value's unit text and its unit code point at different assays (or the text at none); MagCds does not choose between them."),
        CannotInterpretReason.ValueWithAbsentReason => new("value-with-absent-reason", "A value sent with a reason for its absence",
            "The Observation carries a value and also a data absent reason, which FHIR allows only without a value (obs-6); the value may be a placeholder, so it is not read as a result."),
        _ => throw new ArgumentOutOfRangeException(nameof(r), r, null),
    };

    public static IReadOnlyList<Concept> Reasons { get; } = Enum.GetValues<CannotInterpretReason>().Select(r => ReasonConcepts[r]).ToList();

    /// <summary>Rules that are not assay profiles (RiskAssessment.method); assay profiles are rules too, named by their id.</summary>
    public static class Rules
    {
        public static readonly Concept ObservationReferenceRange = new("observation-reference-range", "The laboratory's own reference range",
            "The value is compared with the upper limit of the reference range sent with the Observation: above it is raised, at or below it is not raised.");
        public static readonly Concept ObservationInterpretation = new("observation-interpretation", "The laboratory's own interpretation flag",
            "With no usable reference range, the laboratory's interpretation flag is used: high, abnormal, positive or detected is raised; normal, negative or not detected is not raised.");
        public static readonly Concept Qualitative = new("qualitative", "Qualitative result",
            "A qualitative result: positive or detected is raised, negative or not detected is not raised.");
        public static readonly Concept CannotInterpret = new("cannot-interpret", "No safe interpretation",
            "No interval or flag applies safely to the value; MagCds does not guess.");
        public static readonly Concept Retraction = new("retraction", "Retraction",
            "The Observation was entered in error; earlier outputs about it are retracted.");
        public static readonly IReadOnlyList<Concept> BuiltIn = [ObservationReferenceRange, ObservationInterpretation, Qualitative, CannotInterpret, Retraction];
    }

    /// <summary>Risk probability codes (HL7 terminology) MagCds uses for prediction.qualitativeRisk.</summary>
    public const string RiskProbabilitySystem = "http://terminology.hl7.org/CodeSystem/risk-probability";
    public static readonly Concept ModerateRisk = new("moderate", "Moderate likelihood", "Used for a raised result.");
    public static readonly Concept LowRisk = new("low", "Low likelihood", "Used for a result that is not raised.");
    public const string ActCodeSystem = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
}
