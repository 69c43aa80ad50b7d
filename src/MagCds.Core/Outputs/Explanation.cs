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
    string KnowledgeLine)
{
    public string ReferencesText => "References: " + string.Join(" ", References.Select(c => $"[{c.Label}] {c.Text} {c.Url}"));
}
