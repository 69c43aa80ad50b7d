using System.Buffers;

namespace MagCds.Core.Evaluation;

/// <summary>
/// Text a laboratory wrote (units, free-text values, flag and range texts) as it is quoted in MagCds's explanations.
/// Those explanations are markdown where EHRs render them (card detail, RiskAssessment notes), so quoted text must
/// stay text: a value "see [report](https://…)" must not become a link, nor "**" bold or "|" a table cell. The few
/// characters that would do so are backslash-escaped and line breaks become spaces; ordinary lab text (numbers,
/// "BTU", "U/mL", "Negative") is returned unchanged, as the same instance.
/// </summary>
public static class LabText
{
    private static readonly SearchValues<char> Active = SearchValues.Create("\\`*_[]|\r\n\t");

    public static string Inert(string text)
    {
        if (text.AsSpan().IndexOfAny(Active) < 0) return text;
        var sb = new System.Text.StringBuilder(text.Length + 8);
        foreach (char c in text)
        {
            if (c is '\r' or '\n' or '\t') sb.Append(' ');
            else if (Active.Contains(c)) sb.Append('\\').Append(c);
            else sb.Append(c);
        }
        return sb.ToString();
    }
}
