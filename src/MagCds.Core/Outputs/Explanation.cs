using MagCds.Core.Knowledge;

namespace MagCds.Core.Outputs;

/// <summary>
/// What MagCds says about one result, in parts: heading, basis (value, interval and origin, rule, knowledge version),
/// guidance paragraphs with citation labels, literature options, trend and references. Every output and every door
/// renders these same parts.
/// </summary>
public sealed record Explanation(
    string Heading,
    string Basis,
    IReadOnlyList<string> Guidance,
    string? Options,
    string? Trend,
    IReadOnlyList<Citation> References,
    string KnowledgeLine,
    string ReferencesText)
{
    /// <summary>The heading followed by the first guidance paragraph (the RiskAssessment's first note).</summary>
    public required string FirstNote { get; init; }
}
