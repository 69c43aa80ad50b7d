using System.Buffers;

namespace MagCds.Core.Outputs;

/// <summary>
/// Text a laboratory wrote (units, free-text values, flag and range texts), made inert where MagCds puts it into
/// markdown: the cells of the trend table and the basis paragraph of a card. EHRs render those as markdown, so a
/// value "see [report](https://…)" must stay text, not become a labelled link, nor "**" bold, "~~" struck out or "|"
/// a table cell. The core keeps the text as the lab wrote it; the plain-text fields (a card's summary, a
/// RiskAssessment's rationale, OperationOutcome diagnostics) show it unchanged. Ordinary text ("25000 BTU", "U/mL",
/// "Negative") is returned as it is, as the same instance.
/// </summary>
public static class LabText
{
    private static readonly SearchValues<char> Active = SearchValues.Create("\\`*_~[]|\r\n\t");

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
