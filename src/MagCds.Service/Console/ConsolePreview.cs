using System.Text.Json;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Markdig;
using MagCds.Core.Evaluation;
using MagCds.Service.CdsHooks;
using MagCds.Service.FhirRest;
using MagCds.Service.Hosting;

namespace MagCds.Service.Console;

/// <summary>What the console shows for a pasted message: the cards as an EHR gets them (and their markdown rendered
/// as HTML), the RiskAssessments and DetectedIssues in JSON and XML, the OperationOutcome, and the trend data.</summary>
public sealed record PreviewAnswer(
    string Kind, int Status, JsonElement Cds, IReadOnlyList<string> CardDetailHtml,
    IReadOnlyList<ResourceText> Resources, ResourceText? Outcome, IReadOnlyList<TrendView> Trends);

public sealed record ResourceText(string ResourceType, string? Id, string Json, string Xml);

/// <summary>The values of one assay over time with the interval (and titre groups) they were judged against.</summary>
public sealed record TrendView(string Title, string? Unit, IReadOnlyList<PointView> Points, BandView? Interval, string? IntervalOrigin, IReadOnlyList<BandView> Strata);

public sealed record PointView(string Date, decimal? Value, string Display, bool Current, string Category);

public sealed record BandView(string Name, decimal? Low, decimal? High);

/// <summary>
/// The console's "try it": runs a pasted Observation, Bundle or Parameters through the FHIR REST door's mapping and a
/// CDS Hooks request through the CDS Hooks door's answer, so what the console shows is what those doors return. The
/// cards for a FHIR message are the ones the patient-view service would show for each result.
/// </summary>
public sealed class ConsolePreview(Evaluator evaluator, CardBuilder cards, PatientResults results, CdsServiceCatalog catalog)
{
    /// <summary>
    /// The door of every try in the audit and the evaluation metric, a pasted CDS Hooks request included: tries are an
    /// admin's, not an EHR's, and are kept apart from the real traffic of the doors.
    /// </summary>
    public const string ConsoleDoor = "console";

    private static readonly MarkdownPipeline Markdown = new MarkdownPipelineBuilder().UsePipeTables().UseAutoLinks().DisableHtml().Build();

    public async Task<(PreviewAnswer Answer, EvaluationSummary? Summary)> RunAsync(ReadOnlyMemory<byte> body, string knowledgeUrl, bool allowInsecureFhirServer, CancellationToken ct)
    {
        if (IsCdsHooksRequest(body, out string? hook))
        {
            var service = catalog.Services.FirstOrDefault(s => s.Hook == hook)
                          ?? throw new FhirRequestException(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidCdsRequest, "MagCds offers no service for that hook.");
            // Prefetch only: the console never calls a FHIR server a pasted request names (no requests on an admin's behalf
            // to arbitrary hosts); without prefetch the answer says the data is unavailable, as the door would without access.
            var call = CdsRequestReader.Read(body, service, allowInsecureFhirServer) with { FhirServer = null, AccessToken = null };
            var (list, response) = await CdsHooksEndpoints.AnswerAsync(call, results, evaluator, cards, knowledgeUrl, ct);
            var outputs = list.SelectMany(c => c.Suggestions ?? []).SelectMany(s => s.Actions).Select(a => a.Resource).OfType<Resource>();
            return (new PreviewAnswer("cds-hooks", StatusCodes.Status200OK, Cds(list), list.Select(Html).ToList(), outputs.Select(Text).ToList(), null,
                Trends(response)), response is null ? null : EvaluationSummary.Of(ConsoleDoor, response));
        }

        var format = FirstByte(body) == '<' ? FhirFormat.Xml : FhirFormat.Json;
        var mapped = MagEvaluateOperation.ToRequest(FhirWire.Parse(body, format));
        var evaluated = evaluator.Evaluate(mapped.Request);
        var summary = new EvaluationSummary(ConsoleDoor, evaluator.Knowledge.Version);
        var answer = MagEvaluateOperation.Start(EvaluationRun.Of(evaluated), mapped.EntryIssues, summary, evaluator.Canonical);
        var resource = answer.ToResource();
        var parts = (resource as Parameters)?.Parameter ?? [];
        var outcome = resource as OperationOutcome ?? parts.Select(p => p.Resource).OfType<OperationOutcome>().FirstOrDefault();

        var previewCards = evaluated.Results
            .Where(r => r is { Outcome: InputOutcome.Evaluated, Interpretation.NeedsAttention: true })
            .Select(r => cards.ResultCard(PatientView(r), r, knowledgeUrl, forOrder: false)).ToList();
        return (new PreviewAnswer("fhir", answer.Status, Cds(previewCards), previewCards.Select(Html).ToList(),
            parts.Select(p => p.Resource).Where(r => r is RiskAssessment or DetectedIssue).Select(r => Text(r!)).ToList(),
            outcome is null ? null : Text(outcome), Trends(evaluated)), summary);
    }

    /// <summary>A patient-view call for one result (deterministic, so the same message gives the same card ids).</summary>
    private static CdsCall PatientView(InputResult r) => new("magcds-patient-view", "patient-view", "console-preview", null, null,
        r.Input.Observation.Subject?.Reference ?? "", [], null, new Dictionary<string, PrefetchSlot>());

    /// <summary>A CDS Hooks request is a JSON object with a "hook" member and no "resourceType".</summary>
    private static bool IsCdsHooksRequest(ReadOnlyMemory<byte> body, out string? hook)
    {
        hook = null;
        if (FirstByte(body) != '{') return false;
        try
        {
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.TryGetProperty("resourceType", out _) || !doc.RootElement.TryGetProperty("hook", out var h)) return false;
            hook = h.ValueKind == JsonValueKind.String ? CdsHooks.CdsRequestReader.Text(h) : null;
            return true;
        }
        catch (JsonException) { return false; } // the FHIR parser will say what is wrong
    }

    private static byte FirstByte(ReadOnlyMemory<byte> body)
    {
        foreach (byte b in body.Span) if (b is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n' or 0xEF or 0xBB or 0xBF)) return b;
        return 0;
    }

    private static JsonElement Cds(IReadOnlyList<Card> list) => JsonSerializer.SerializeToElement(new CdsResponse(list), CdsJson.Options);

    private static string Html(Card c) => Markdig.Markdown.ToHtml(c.Detail ?? "", Markdown);

    private static ResourceText Text(Resource r) => new(r.TypeName, r.Id, r.ToJson(pretty: true), r.ToXml(pretty: true));

    private static List<TrendView> Trends(EvaluationResponse? response) =>
        response?.Results.Where(r => r.Interpretation is { Value.Number: not null }).Select(r =>
        {
            var i = r.Interpretation!;
            var points = i.Trend?.Points.Select(p => new PointView(p.Date, p.Number, p.Display, p.IsCurrent, Vocab(p.Category))).ToList()
                         ?? [new PointView(TrendPointDate(r), i.Value.Number, i.Value.Display, true, Vocab(i.Category))];
            var profile = i.Basis?.Profile;
            return new TrendView(
                r.Input.Observation.Code?.Text ?? "Anti-MAG IgM",
                profile?.ReferenceInterval.Unit ?? i.Value.UnitText ?? i.Value.UnitCode,
                points,
                // Named for what it is: a profile's interval is seldom a reference interval in the laboratory's sense.
                i.Basis is { High: not null } b ? new BandView($"{b.Display} ({b.Label ?? "the laboratory's range"})", b.Low ?? 0, b.High) : null,
                i.Basis?.OriginText,
                profile?.Strata.Select(s => new BandView(s.Name, s.Low, s.High)).ToList() ?? []);
        }).ToList() ?? [];

    private static string Vocab(Category c) => MagCds.Core.Outputs.Vocabulary.Of(c).Code;

    /// <summary>A lone result has no trend points from the core; its date is the one its outputs carry.</summary>
    private static string TrendPointDate(InputResult r) =>
        r.RiskAssessment?.Occurrence is FhirDateTime d && d.Value is { Length: >= 10 } v ? v[..10] : "date unknown";
}
