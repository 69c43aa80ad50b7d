using Hl7.Fhir.Model;
using MagCds.Core.Knowledge;

namespace MagCds.Core.Evaluation;

/// <summary>An Observation handed to the core, with how outputs should refer to it and where it sat in the request.</summary>
/// <param name="Observation">The parsed Observation.</param>
/// <param name="Reference">Literal reference for outputs (e.g. "Observation/123" or a Bundle fullUrl); null when it has none.</param>
/// <param name="Location">FHIRPath-style location in the request, used in issues (e.g. "Bundle.entry[2].resource").</param>
/// <param name="FullUrl">The Bundle entry's fullUrl, when it came in one: an absolute one names the server the entry
/// is from, against which its relative references (its subject) resolve.</param>
public sealed record EvaluationInput(Observation Observation, string? Reference, string Location, string? FullUrl = null);

/// <summary>
/// What every door hands to the core: the results to evaluate and, optionally, earlier results to use as history.
/// Inputs also serve as history for each other (a Bundle may carry several results of one patient).
/// </summary>
public sealed record EvaluationRequest(IReadOnlyList<EvaluationInput> Inputs, IReadOnlyList<EvaluationInput> History)
{
    public static EvaluationRequest Of(params EvaluationInput[] inputs) => new(inputs, []);

    /// <summary>Results the request says were deleted from their server (a history Bundle's DELETE entries).</summary>
    public IReadOnlyList<Deletion> Deletions { get; init; } = [];
}

/// <summary>
/// A deletion of an Observation from its server, as a history Bundle reports it: an entry whose request is
/// <c>DELETE Observation/{id}</c> (without a resource; one that carries the Observation names it too, and the door
/// passes that resource on as its last version). Its versions in the request are withdrawn (like an
/// entered-in-error version), unless one of them is newer than the deletion (the resource was created again).
/// </summary>
/// <param name="Id">The deleted Observation's id.</param>
/// <param name="FullUrl">The entry's fullUrl, when absolute the server it was deleted from.</param>
/// <param name="Location">Where the deletion sat in the request, for issues.</param>
/// <param name="VersionId">The version the deletion made (<c>response.etag</c>), when given.</param>
/// <param name="When">When it was deleted (<c>response.lastModified</c>), when given.</param>
public sealed record Deletion(string Id, string? FullUrl, string Location, string? VersionId = null, DateTimeOffset? When = null);

public enum InputOutcome
{
    /// <summary>Interpreted (raised, not raised, or explicitly "cannot interpret"); outputs built.</summary>
    Evaluated,
    /// <summary>Entered-in-error, or deleted from its server: a retraction of every earlier output for this Observation was built.</summary>
    Retracted,
    /// <summary>Not evaluated; the issues say why (not anti-MAG, no value, status, no subject).</summary>
    NotEvaluated,
}

/// <summary>The three interpretation categories; order matters (a higher value never yields a lower category).</summary>
public enum Category
{
    NotElevated,
    Elevated,
    CannotInterpret,
}

/// <summary>The result for one input: its interpretation (when evaluated), its FHIR outputs and its issues.</summary>
public sealed record InputResult(
    EvaluationInput Input,
    InputOutcome Outcome,
    Interpretation? Interpretation,
    RiskAssessment? RiskAssessment,
    DetectedIssue? DetectedIssue,
    IReadOnlyList<CoreIssue> Issues)
{
    /// <summary>The words of the interpretation (for doors that render their own format, e.g. CDS Hooks cards).</summary>
    public Outputs.Explanation? Explanation { get; init; }
}

public sealed record EvaluationResponse(IReadOnlyList<InputResult> Results, string KnowledgeVersion)
{
    /// <summary>Issues about the request as a whole (e.g. history of another patient that was not used).</summary>
    public IReadOnlyList<CoreIssue> RequestIssues { get; init; } = [];

    public IEnumerable<Resource> Outputs =>
        Results.SelectMany(r => new Resource?[] { r.RiskAssessment, r.DetectedIssue }).OfType<Resource>();
}

/// <summary>An evaluation under way: <see cref="Results"/> evaluates each input as it is enumerated (enumerate once).</summary>
public sealed record EvaluationRun(IEnumerable<InputResult> Results, IReadOnlyList<CoreIssue> RequestIssues, string KnowledgeVersion)
{
    public static EvaluationRun Of(EvaluationResponse r) => new(r.Results, r.RequestIssues, r.KnowledgeVersion);
}

/// <summary>A problem with one input, in MagCds's own codes (see <see cref="OutcomeCodes"/>).</summary>
public sealed record CoreIssue(OutcomeCode Code, OperationOutcome.IssueSeverity Severity, string Message, string Location);

/// <summary>How a value was read from the Observation.</summary>
public sealed record ReadValue
{
    /// <summary>Numeric value (titres: the dilution denominator); null for qualitative results.</summary>
    public decimal? Number { get; init; }
    public Quantity.QuantityComparator? Comparator { get; init; }
    /// <summary>Qualitative reading: true positive/detected, false negative/not detected, null not qualitative.</summary>
    public bool? Positive { get; init; }
    public string? UnitText { get; init; }
    /// <summary>A dilution titre (1:1600 read as 1600): its steps are dilutions, not amounts.</summary>
    public bool IsTitre => UnitText == ValueReader.Titre;
    public string? UnitSystem { get; init; }
    public string? UnitCode { get; init; }
    /// <summary>The value as the lab sent it, for display (e.g. "&lt;1000 BTU", "1:1600", "positive").</summary>
    public required string Display { get; init; }
    /// <summary>How the value was read, when that is not obvious (titre ratios, unit mapping).</summary>
    public string? ReadingNote { get; init; }
    /// <summary>A qualitative value whose codes or words say both positive and negative: not read.</summary>
    public bool Contradictory { get; init; }

    public bool HasUnit => !string.IsNullOrWhiteSpace(UnitText) || !string.IsNullOrWhiteSpace(UnitCode);
}

public enum IntervalOrigin
{
    ObservationReferenceRange,
    ObservationInterpretation,
    AssayProfile,
    QualitativeResult,
}

/// <summary>The interval (or lab flag) a result was judged against, and where it came from.</summary>
public sealed record IntervalBasis(
    IntervalOrigin Origin,
    decimal? Low,
    decimal? High,
    bool HighInclusive,
    string Display,
    string OriginText,
    AssayProfile? Profile)
{
    /// <summary>What a profile's interval is (its knowledge label), shown beside it; null for the laboratory's own range or flag.</summary>
    public string? Label => Profile?.ReferenceInterval.Label;
}

/// <summary>Machine codes for "cannot interpret", carried in DetectedIssue.evidence.code.</summary>
public enum CannotInterpretReason
{
    NoInterval,
    UnitMismatch,
    CensoredAcrossLimit,
    NegativeValue,
    ImplausibleValue,
    UnreadableQualitative,
    UnreadableRatio,
    InterpretationConflict,
    UnusableRange,
    EquivocalFlag,
    UnreadableFlag,
    UnitConflict,
    ValueWithAbsentReason,
}

/// <summary>The interpretation of one result: the category, the basis that led to it, and the rule in plain words.</summary>
public sealed record Interpretation
{
    public required Category Category { get; init; }
    public required ReadValue Value { get; init; }
    public IntervalBasis? Basis { get; init; }
    public Stratum? Stratum { get; init; }
    public CannotInterpretReason? Reason { get; init; }
    /// <summary>The rule applied, in plain words.</summary>
    public required string Rule { get; init; }
    /// <summary>Rule id for RiskAssessment.method (assay profile id, or a built-in rule id).</summary>
    public required string RuleId { get; init; }
    public bool Preliminary { get; init; }
    public IReadOnlyList<string> Notes { get; init; } = [];
    public Trend? Trend { get; init; }

    /// <summary>
    /// Earlier results of the patient in the request that the trend does not compare with this one (another code,
    /// unit, method or reference range): said in a note, so a trend never leaves results out silently, and part of
    /// the output ids like the trend itself (the same result with other history gets other outputs).
    /// </summary>
    public int NotCompared { get; init; }

    /// <summary>What the outputs' ids add for the history shown (<see cref="Trend.Basis"/>, and the results not compared); null for none.</summary>
    public string? HistoryBasis => NotCompared == 0 ? Trend?.Basis : $"{Trend?.Basis};not-compared {NotCompared}";

    /// <summary>
    /// Whether the result asks for a clinician's attention: raised, not interpretable, or moved between raised and not
    /// raised since the previous result of the same assay. A result within its interval with nothing else does not.
    /// </summary>
    public bool NeedsAttention => Category != Category.NotElevated || Trend is { CategoryChanged: true };
}

public sealed record TrendPoint(string Date, string Display, decimal? Number, string? Reference, bool IsCurrent, Category Category);

/// <summary>
/// Earlier results of the same patient and same assay, oldest first, ending with the current one. With more than
/// <see cref="TrendBuilder.MaxListed"/> earlier results, the first and the most recent are listed and
/// <paramref name="Omitted"/> counts those between them. <paramref name="Basis"/> is what the trend shows of the earlier
/// results (identity, date, value, reference, category of each): it only ever enters the output-id hash (never an
/// output, never a log), so a trend that shows other earlier results (one since amended, withdrawn or deleted) gets
/// outputs of its own.
/// </summary>
public sealed record Trend(IReadOnlyList<TrendPoint> Points, decimal? PercentFromPrevious, decimal? PercentFromFirst, string? Note, int Omitted, string Basis)
{
    /// <summary>The category of the previous result of the same assay.</summary>
    public Category PreviousCategory => Points[^2].Category;

    /// <summary>
    /// The result moved between raised and not raised since the previous result of the same assay (by the same
    /// rules): a change worth showing even when the current result itself is not raised.
    /// </summary>
    public bool CategoryChanged => Points[^1].Category != PreviousCategory
                                   && Points[^1].Category != Category.CannotInterpret && PreviousCategory != Category.CannotInterpret;
}
