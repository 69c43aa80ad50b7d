using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Core;
using MagCds.Core.Evaluation;
using MagCds.Core.Knowledge;
using MagCds.Core.Outputs;

namespace MagCds.Service.CdsHooks;

/// <summary>
/// Renders the core's result as a CDS Hooks card. It decides nothing clinical: the words come from the core's
/// Explanation, and the suggestion carries the very RiskAssessment and DetectedIssue the FHIR REST door returns.
/// </summary>
public sealed class CardBuilder(Evaluator evaluator)
{
    private const int MaxSummary = 139;
    /// <summary>Why a clinician may dismiss a MagCds card; CDS Hooks requires a display for each. Published as a CodeSystem.</summary>
    public static IReadOnlyList<Concept> OverrideReasonConcepts { get; } =
    [
        new("already-known", "Result already known and being acted on", "The clinician already knows the result and is acting on it."),
        new("not-relevant", "Not relevant to this patient's care now", "The result does not bear on this patient's care at this time."),
        new("assay-does-not-apply", "The interval or assay shown does not apply", "The reference interval or assay profile MagCds used does not apply to this result."),
        new("disagree", "Disagree with the interpretation", "The clinician disagrees with MagCds's interpretation."),
    ];

    private readonly IReadOnlyList<CdsCoding> _overrideReasons =
        OverrideReasonConcepts.Select(c => new CdsCoding(c.Code, evaluator.Canonical.OverrideReasonSystem, c.Display)).ToList();

    /// <summary>A card that shows no interpretation and no interval offers no reason that disputes them.</summary>
    private IReadOnlyList<CdsCoding> NoResultOverrideReasons => [.. _overrideReasons.Where(r => r.Code is not ("assay-does-not-apply" or "disagree"))];

    private KnowledgeBase Knowledge => evaluator.Knowledge;

    /// <summary>A card about one evaluated result. <paramref name="forOrder"/>: the ordering context (always info, adds what the test is for).</summary>
    public Card ResultCard(CdsCall call, InputResult result, string knowledgeUrl, bool forOrder)
    {
        var i = result.Interpretation!;
        var x = result.Explanation!;
        string indicator = !forOrder && i.Category == Category.Elevated ? "warning" : "info";
        string seed = $"{call.HookInstance}|{call.ServiceId}|{result.RiskAssessment!.Id}";

        var detail = new StringBuilder();
        // The basis quotes what the lab wrote (value, unit, range text): inert in this markdown (MagCds's own words in
        // it carry no markdown).
        detail.Append("**").Append(x.Heading).Append("**\n\n").Append(LabText.Inert(x.Basis)).Append("\n\n");
        foreach (var g in x.Guidance) detail.Append(g).Append("\n\n");
        var references = x.References.ToList();
        if (forOrder)
        {
            var (purpose, cited) = evaluator.Cite(Knowledge.Guidance.Ordering);
            if (!x.Guidance.Any(g => g.Contains(purpose, StringComparison.Ordinal))) detail.Append(purpose).Append("\n\n");
            references.AddRange(cited.Where(c => !references.Contains(c)));
        }
        if (x.Options is not null) detail.Append(x.Options).Append("\n\n");
        if (x.Trend is not null) detail.Append(x.Trend).Append("\n\n");
        AppendReferences(detail, references);
        detail.Append("\n\n_").Append(x.KnowledgeLine).Append('_');

        var actions = new List<CdsAction> { Create(result.RiskAssessment, "Record the MagCds RiskAssessment of this result") };
        if (result.DetectedIssue is not null) actions.Add(Create(result.DetectedIssue, "Record the MagCds DetectedIssue of this result"));

        return new Card
        {
            Uuid = Uuid(seed + "|card"),
            Summary = Summary(i, forOrder),
            Detail = Escape(detail.ToString(), Knowledge.Citations),
            Indicator = indicator,
            Source = Source(knowledgeUrl),
            Suggestions = [new Suggestion("Record this assessment", Uuid(seed + "|suggestion"), false, actions)],
            SelectionBehavior = "at-most-one",
            OverrideReasons = _overrideReasons,
            Links = Links(),
        };
    }

    /// <summary>The ordering card when the patient has no anti-MAG result on file.</summary>
    /// <param name="latestUnread">A latest result exists but was not evaluated (e.g. it carries no value): say that,
    /// not that there is no result.</param>
    public Card NoResultCard(CdsCall call, string knowledgeUrl, bool latestUnread = false)
    {
        var (purpose, cited) = evaluator.Cite(Knowledge.Guidance.Ordering);
        string what = latestUnread
            ? "The latest anti-MAG IgM result on file for this patient could not be evaluated (for example, it carries no value), so no earlier result is shown."
            : "No earlier anti-MAG IgM result was found for this patient.";
        var detail = new StringBuilder(what).Append("\n\n").Append(purpose).Append("\n\n");
        AppendReferences(detail, cited);
        return new Card
        {
            Uuid = Uuid($"{call.HookInstance}|{call.ServiceId}|no-result|card"),
            Summary = latestUnread ? "Latest anti-MAG IgM result on file could not be evaluated" : "No earlier anti-MAG IgM result on file for this patient",
            Detail = Escape(detail.ToString(), Knowledge.Citations),
            Indicator = "info",
            Source = Source(knowledgeUrl),
            OverrideReasons = NoResultOverrideReasons,
            Links = Links(),
        };
    }

    /// <summary>
    /// Value, unit and interpretation in under 140 characters, e.g. "Anti-MAG IgM 25000 BTU: raised (MagCds profile:
    /// below 1000 BTU, one laboratory's not-detected cut-off), medium titre". What the result means is never cut: the
    /// basis gives way first (its label, its limit, then where it came from), and the value is shortened last.
    /// </summary>
    private static string Summary(Interpretation i, bool forOrder)
    {
        bool showsLimit = i.Category is Category.Elevated or Category.NotElevated;
        // What the result was judged against, in words that cannot be misread at a glance; a qualitative result is
        // its own basis ("Positive: raised"), so nothing is added.
        // Where the interval came from is said even here (a profile's interval is MagCds's choice, not the lab's), and
        // it is the last thing to give way when the summary is too long: the label first, then the limit itself.
        string[] limits = !showsLimit ? [""] : i.Basis switch
        {
            { Origin: IntervalOrigin.QualitativeResult } => [""],
            { Origin: IntervalOrigin.ObservationInterpretation } b => [$" ({b.Display})", ""],
            { Origin: IntervalOrigin.AssayProfile } b => [$" (MagCds profile: {b.Display}, {b.Label})", $" (MagCds profile: {b.Display})", " (MagCds profile)", ""],
            { } b => [$" (lab's range {b.Display})", " (lab's range)", ""],
            null => [""],
        };
        string meaning = i.Category switch
        {
            Category.Elevated => "raised",
            Category.NotElevated => "not raised",
            _ => "cannot be interpreted safely",
        };
        // A move across the limit since the previous result is said after the basis, so the limit sits next to the
        // reading it is the basis of ("not raised (MagCds profile: …); the previous result was raised").
        string after = (i.Stratum is { } s ? ", " + s.Name.Split(" (")[0] : "")
                       + (i.Trend is { CategoryChanged: true } ? i.Category == Category.Elevated ? "; previous result not raised"
                           : i.Category == Category.NotElevated ? "; the previous result was raised" : "" : "");
        string start = (i.Preliminary ? "Preliminary: " : "") + (forOrder ? "Latest anti-MAG IgM " : "Anti-MAG IgM ");
        string value = i.Value.Display;
        foreach (string limit in limits)
        {
            string text = $"{start}{value}: {meaning}{limit}{after}";
            if (text.Length <= MaxSummary) return text;
        }
        int room = MaxSummary - (start.Length + ": ".Length + meaning.Length + after.Length) - 1;
        return $"{start}{ValueReader.Cut(value, Math.Max(0, room))}…: {meaning}{after}";
    }

    private CardSource Source(string knowledgeUrl) => new($"MagCds, knowledge {Knowledge.Version}", knowledgeUrl);

    /// <summary>Links to the references the source document cites; null (omitted) when the knowledge names none.</summary>
    private IReadOnlyList<CardLink>? Links() =>
        Knowledge.SourceReferences.Count == 0 ? null
            : Knowledge.SourceReferences.Select(Knowledge.Citation).Select(c => new CardLink(c.Label, c.Url, "absolute")).ToList();

    private static void AppendReferences(StringBuilder sb, IEnumerable<Citation> citations)
    {
        sb.Append("**References**\n");
        foreach (var c in citations) sb.Append($"\n- [{c.Label}] {c.Text} <{c.Url}>");
    }

    private static CdsAction Create(Resource resource, string description) => new("create", description, resource);

    /// <summary>
    /// Card text is markdown an EHR renders; lab-supplied strings (units, free-text values) must not become HTML.
    /// Reference URLs are written as autolinks &lt;url&gt; and kept; every other angle bracket is escaped.
    /// </summary>
    /// <param name="citations">The only links kept as links: MagCds's own references. A "&lt;https://…&gt;" in lab
    /// data (a unit, a range text) is escaped like any other angle bracket, so the lab's text cannot add a link.</param>
    private static string Escape(string markdown, IReadOnlyList<Citation> citations)
    {
        var sb = new StringBuilder(markdown.Length + 16);
        int k = 0;
        while (true)
        {
            // Copied in runs up to the next angle bracket: the detail is several kilobytes with a few brackets.
            int next = markdown.AsSpan(k).IndexOfAny('<', '>');
            if (next < 0) return sb.Append(markdown, k, markdown.Length - k).ToString();
            sb.Append(markdown, k, next);
            k += next;
            if (markdown[k] == '<' && AutolinkLength(markdown, k) is int n and > 0 && citations.Any(r => markdown.AsSpan(k + 1, n - 2).SequenceEqual(r.Url)))
            {
                sb.Append(markdown, k, n);
                k += n;
            }
            else
            {
                sb.Append(markdown[k] == '<' ? "&lt;" : "&gt;");
                k++;
            }
        }
    }

    /// <summary>
    /// The length of a whole autolink "&lt;https://…&gt;" starting at <paramref name="start"/> (no space or angle bracket
    /// inside it), else 0: "&lt;https://x &lt;img …&gt;" or an unclosed "&lt;https://x" is text and gets escaped.
    /// </summary>
    private static int AutolinkLength(string text, int start)
    {
        if (!text.AsSpan(start).StartsWith("<https://", StringComparison.Ordinal)) return 0;
        for (int k = start + "<https://".Length; k < text.Length; k++)
        {
            char c = text[k];
            if (c == '>') return k - start + 1;
            if (c == '<' || char.IsWhiteSpace(c) || char.IsControl(c)) return 0;
        }
        return 0;
    }

    /// <summary>Deterministic UUID (same call, same card), so a retried hook call yields identical cards.</summary>
    private static string Uuid(string seed)
    {
        var h = SHA256.HashData(Encoding.UTF8.GetBytes(seed));
        h[6] = (byte)((h[6] & 0x0F) | 0x80);
        h[8] = (byte)((h[8] & 0x3F) | 0x80);
        return new Guid(h.AsSpan(0, 16), bigEndian: true).ToString();
    }
}
