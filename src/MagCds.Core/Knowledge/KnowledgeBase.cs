using System.Collections.Frozen;

namespace MagCds.Core.Knowledge;

/// <summary>
/// The clinical knowledge MagCds runs on: citations, guidance statements, assay profiles and a version.
/// It is data (see knowledge.json), loaded and checked once by <see cref="KnowledgeLoader"/>.
/// </summary>
public sealed record KnowledgeBase
{
    public required string Version { get; init; }
    public required string Title { get; init; }
    public required string IntendedUse { get; init; }

    /// <summary>Data-quality guard, not a clinical threshold: a value this large is read as a unit or transcription error.</summary>
    public required decimal ImplausibleAbove { get; init; }

    public required IReadOnlyList<Citation> Citations { get; init; }
    public required IReadOnlyList<Statement> Statements { get; init; }
    public required Guidance Guidance { get; init; }
    public required IReadOnlyList<AssayProfile> AssayProfiles { get; init; }
    /// <summary>The references the source document itself cites (shown as links next to the guidance).</summary>
    public required IReadOnlyList<string> SourceReferences { get; init; }

    /// <summary>The citation of the source document: what outputs judged by a laboratory's own range or flag cite.</summary>
    public const string SourceDocumentCitation = "source-document";

    private FrozenDictionary<string, Citation>? _citations;
    private FrozenDictionary<string, Statement>? _statements;

    public Citation Citation(string id) =>
        (_citations ??= Citations.ToFrozenDictionary(c => c.Id, StringComparer.Ordinal))[id];

    public Statement Statement(string id) =>
        (_statements ??= Statements.ToFrozenDictionary(s => s.Id, StringComparer.Ordinal))[id];

    public IEnumerable<Statement> StatementsFor(IEnumerable<string> ids) => ids.Select(Statement);
}

public sealed record Citation(string Id, string Label, string Text, string Url);

public sealed record Statement(string Id, string Text, IReadOnlyList<string> Citations);

/// <summary>Which statements are shown for each interpretation category and context.</summary>
public sealed record Guidance(
    IReadOnlyList<string> Elevated,
    IReadOnlyList<string> Options,
    IReadOnlyList<string> NotElevated,
    IReadOnlyList<string> CannotInterpret,
    IReadOnlyList<string> Trend,
    IReadOnlyList<string> Background,
    IReadOnlyList<string> Ordering)
{
    /// <summary>Every list with its name in knowledge.json, for the checks that go through them all.</summary>
    public IEnumerable<(string Name, IReadOnlyList<string> Ids)> Named() =>
    [
        ("elevated", Elevated), ("options", Options), ("notElevated", NotElevated), ("cannotInterpret", CannotInterpret),
        ("trend", Trend), ("background", Background), ("ordering", Ordering),
    ];
}

/// <summary>
/// A laboratory scale MagCds can interpret when the Observation carries no usable reference range of its own.
/// Matched on unit (and, when given, code, method and performer); never applied to another assay's values.
/// </summary>
public sealed record AssayProfile
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required ProfileMatch Match { get; init; }
    public required string UnitReading { get; init; }
    public required ProfileInterval ReferenceInterval { get; init; }
    /// <summary>The rule in plain words, shown in every output that uses this profile.</summary>
    public required string Rule { get; init; }
    public IReadOnlyList<string> Caveats { get; init; } = [];
    public IReadOnlyList<Stratum> Strata { get; init; } = [];
}

public sealed record ProfileMatch
{
    public IReadOnlyList<UnitPattern> Units { get; init; } = [];
    /// <summary>Observation codes as "system|code"; empty means any recognised anti-MAG code.</summary>
    public IReadOnlyList<string> Codes { get; init; } = [];
    /// <summary>Words that must appear in Observation.method (text or a coding display/code); empty means any.</summary>
    public IReadOnlyList<string> Methods { get; init; } = [];
    /// <summary>Words that must appear in a performer's display or identifier; empty means any.</summary>
    public IReadOnlyList<string> Performers { get; init; } = [];
}

/// <summary>A unit as a lab may send it: every field given must match (unit text case-insensitively).</summary>
public sealed record UnitPattern(string? Unit = null, string? System = null, string? Code = null);

/// <summary>Upper limit of the interval; values above it (or at it when not inclusive) are raised.</summary>
/// <param name="Label">What the interval is, in a few words shown beside it wherever it is used (e.g. "one laboratory's
/// not-detected cut-off"): a profile's interval is seldom a reference interval in the laboratory sense.</param>
public sealed record ProfileInterval(decimal High, bool HighInclusive, string Unit, string Citation, string Label, decimal? Low = null)
{
    /// <summary>The interval as every output shows it: "0.1-10 Units", "up to 10 Units" or "below 1000 BTU".</summary>
    public string Text() =>
        (Low is { } low ? $"{Evaluation.ValueReader.Format(low)}-" : HighInclusive ? "up to " : "below ") + $"{Evaluation.ValueReader.Format(High)} {Unit}";
}

/// <summary>A titre group: Low inclusive, High exclusive (open-ended when null).</summary>
public sealed record Stratum(string Id, string Name, decimal Low, IReadOnlyList<string> Statements, decimal? High = null);
