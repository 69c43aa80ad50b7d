using Hl7.Fhir.Model;
using Hl7.Fhir.Rest;
using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;
using Microsoft.Extensions.Options;

namespace MagCds.Service.CdsHooks;

/// <summary>
/// Gets the patient's anti-MAG results for a hook call, with the spec's prefetch semantics: a key set to null means
/// "nothing found"; a key not sent, or answered with an OperationOutcome, means "go and look" on fhirServer with the
/// call's access token (Firely FhirClient over a resilient HttpClient); no way to get them means 412.
/// Results of any other patient are dropped and counted (patient safety).
/// </summary>
public sealed partial class PatientResults(
    IHttpClientFactory http, CdsServiceCatalog catalog, IOptions<CdsHooksOptions> options, CdsHooksMetrics metrics, ILogger<PatientResults> logger)
{
    public const string HttpClientName = "cds-hooks-fhir";

    /// <summary>How many results dated before the latest its trend may show (MaxResults less the latest itself).</summary>
    public int EarlierKept => options.Value.MaxResults - 1;

    public async Task<IReadOnlyList<EvaluationInput>> GetAsync(CdsCall call, CancellationToken ct)
    {
        var observations = call.Slot(CdsServiceCatalog.ResultsKey) switch
        {
            PrefetchSlot.Empty => [],
            // One page of several that the client does not say it sorted newest first: the latest result may be on a
            // page it did not send, so the results are read from fhirServer (412 without one) instead.
            PrefetchSlot.Found { Resource: Bundle { NextLink: not null } b } when !Hosting.SearchSets.SaysSorted(b)
                => await QueryAsync(call, ct),
            // A search that failed (an error OperationOutcome among the entries) found nothing that can be trusted,
            // not "no results": looked up again like an OperationOutcome in the key (412 without a fhirServer).
            PrefetchSlot.Found { Resource: Bundle b } when ReportsFailure(b) => await QueryAsync(call, ct),
            // An entry without its resource may be a result that was cut off, maybe the newest: as with an unreadable
            // entry, the call is refused rather than answered from the others.
            PrefetchSlot.Found { Resource: Bundle b } when b.Entry.FindIndex(e => e.Resource is null) is >= 0 and var empty =>
                throw new FhirRequestException(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidCdsRequest,
                    $"prefetch.{CdsServiceCatalog.ResultsKey}: entry {empty} has no resource; MagCds does not choose a latest result while one of the patient's results may be missing."),
            PrefetchSlot.Found { Resource: Bundle b } => b.Entry.Select(e => (e.Resource as Observation, e.FullUrl)).Where(x => x.Item1 is not null).Select(x => (x.Item1!, x.FullUrl)).ToList(),
            PrefetchSlot.Found { Resource: Observation o } => [(o, (string?)null)],
            PrefetchSlot.Found other => throw new FhirRequestException(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidCdsRequest,
                $"prefetch.{CdsServiceCatalog.ResultsKey} must be a Bundle of Observations, not {FhirRest.Outcomes.AType(other.Resource.TypeName)}."),
            _ => await QueryAsync(call, ct),
        };

        var mine = new List<EvaluationInput>();
        int others = 0;
        for (int i = 0; i < observations.Count; i++)
        {
            var (obs, fullUrl) = observations[i];
            if (!IsPatient(obs.Subject, call.PatientId, call.FhirServer)) { others++; continue; }
            string? reference = !string.IsNullOrEmpty(obs.Id) ? "Observation/" + obs.Id : fullUrl;
            mine.Add(new EvaluationInput(obs, reference, $"{CdsServiceCatalog.ResultsKey}[{i}]"));
        }
        if (others > 0)
        {
            metrics.OtherPatientObservationsIgnored(call.ServiceId, others);
            OtherPatientIgnored(logger, others, call.ServiceId);
        }
        return mine;
    }

    private async Task<List<(Observation, string?)>> QueryAsync(CdsCall call, CancellationToken ct)
    {
        if (call.FhirServer is null)
            throw Unavailable("The patient's anti-MAG results were not prefetched and the request names no fhirServer to query.");
        if (!call.MayQueryFhirServer)
            throw Unavailable("The patient's anti-MAG results were not prefetched, and the fhirServer the request names is not one MagCds may read for this EHR (MagCds:CdsHooks:TrustedIssuers FhirServers).");

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(TimeSpan.FromSeconds(options.Value.FhirQueryTimeoutSeconds));
        var client = http.CreateClient(HttpClientName);
        // A page larger than a CDS Hooks request may be (a server that ignores _count) is refused before it is parsed.
        client.MaxResponseContentBufferSize = MaxPageBytes;
        if (call.AccessToken is not null)
            client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", call.AccessToken);
        using var fhir = new FhirClient(call.FhirServer, client, new FhirClientSettings { PreferredFormat = ResourceFormat.Json, VerifyFhirVersion = false, SerializationEngine = ServerAnswers });

        var found = new List<(Observation, string?)>();
        int max = options.Value.MaxResults;
        try
        {
            string query = string.Format(System.Globalization.CultureInfo.InvariantCulture, catalog.ResultsQueryTemplate, Uri.EscapeDataString(call.PatientId));
            var page = SearchSet(await fhir.GetAsync(query, cts.Token));
            // Newest first only if the server says it sorted (its self link lists the parameters it applied); if it
            // did not, the newest result may be on any page, so all are read (within the page limit).
            bool sorted = Hosting.SearchSets.SaysSorted(page);
            bool more = false;
            for (int pages = 1; page is not null; pages++)
            {
                found.AddRange(page.Entry.Where(e => e.Resource is Observation).Select(e => ((Observation)e.Resource!, (string?)e.FullUrl)));
                more = page.NextLink is not null;
                // The access token goes only to the server the EHR named: a next link elsewhere is not followed.
                if (page.NextLink is not { } next || (sorted && found.Count >= max) || pages == 5 || !Security.OutboundLinks.IsUnderServer(next, call.FhirServer)) break;
                page = SearchSet(await fhir.ContinueAsync(page, ct: cts.Token));
                more = false;
            }
            if (more && !sorted)
                throw Unavailable("The FHIR server did not confirm sorting the results by date and has more of them than MagCds reads, so the latest cannot be told.");
        }
        // ExecutionRejectedException: the resilience pipeline refused the call (circuit open, timeout), which is the
        // FHIR server being unavailable like any other: 412, not 500.
        // JsonException: an answer nested deeper than the parser reads. InvalidOperationException: Firely reading a
        // string that escapes half of a UTF-16 surrogate pair (free text cut in the middle of an emoji).
        catch (Exception e) when (e is FhirOperationException or HttpRequestException or OperationCanceledException or TimeoutException
                                      or Hl7.Fhir.Serialization.DeserializationFailedException or FormatException or System.Text.Json.JsonException
                                      or InvalidOperationException or Polly.ExecutionRejectedException)
        {
            // The reason goes to the log as a type name only: messages may hold URLs with patient ids.
            FhirQueryFailed(logger, e.GetType().Name, (e as FhirOperationException)?.Status is { } s ? (int)s : 0);
            if (ct.IsCancellationRequested) throw;
            throw Unavailable("The FHIR server could not be queried for the patient's anti-MAG results in time.");
        }
        // Newest first whatever order the pages came in, as the core orders a patient's results.
        return found.OrderByDescending(f => Evaluator.ResultTime(f.Item1) ?? DateTimeOffset.MinValue).Take(max).ToList();

        // A search is answered with a Bundle; anything else (an OperationOutcome, a Patient) is no answer about the
        // patient's results, never "no results".
        static Bundle SearchSet(Resource? answer) => answer is Bundle b
            ? ReportsFailure(b) ? throw Unavailable("The FHIR server reported an error in its answer to the search for the patient's anti-MAG results.") : b
            : throw Unavailable($"The FHIR server answered the search for the patient's anti-MAG results with {(answer is null ? "nothing" : FhirRest.Outcomes.AType(answer.TypeName))}, not a Bundle.");
    }

    /// <summary>A search Bundle that carries an OperationOutcome with an error: its results are not the patient's results.</summary>
    private static bool ReportsFailure(Bundle b) => b.Entry.Any(e => e.Resource is OperationOutcome oo
        && oo.Issue.Any(i => i.Severity is OperationOutcome.IssueSeverity.Error or OperationOutcome.IssueSeverity.Fatal));

    /// <summary>The largest search page read from a FHIR server: the size of the largest CDS Hooks request.</summary>
    private const int MaxPageBytes = 4 * 1024 * 1024;

    /// <summary>
    /// How a FHIR server's answers are parsed: every value checked as in a request (a status no FHIR release defines is
    /// refused, not carried into the evaluation), while elements a server adds of its own (such as Medplum's
    /// <c>meta.author</c>) are let through, as they are not read.
    /// </summary>
    private static readonly Hl7.Fhir.Serialization.IFhirSerializationEngine ServerAnswers =
        Hl7.Fhir.Serialization.FhirSerializationEngineFactory.Custom(ModelInfo.ModelInspector,
            new Hl7.Fhir.Serialization.FhirJsonConverterOptions { AcceptUnknownMembers = true },
            new Hl7.Fhir.Serialization.DeserializerSettings { AcceptUnknownMembers = true });

    /// <summary>
    /// True when a subject reference names exactly this patient: "Patient/id" (on the EHR's server), or the absolute URL
    /// of that patient on the call's <paramref name="fhirServer"/>, either with a version (_history). The same id on
    /// another server is another record, perhaps another person.
    /// </summary>
    public static bool IsPatient(ResourceReference? subject, string patientId, Uri? fhirServer)
    {
        if (subject?.Reference is not { } r) return false;
        int h = r.IndexOf("/_history/", StringComparison.Ordinal);
        if (h >= 0) r = r[..h];
        string own = "Patient/" + patientId;
        if (r == own) return true;
        return fhirServer is not null && r.EndsWith("/" + own, StringComparison.Ordinal) && Uri.TryCreate(r, UriKind.Absolute, out var url)
               && Security.OutboundLinks.IsUnderServer(url, fhirServer)
               && url.AbsolutePath.TrimEnd('/') == fhirServer.AbsolutePath.TrimEnd('/') + "/" + own;
    }

    private static FhirRequestException Unavailable(string message) =>
        new(StatusCodes.Status412PreconditionFailed, OutcomeCodes.DataUnavailable, message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Ignored {Count} Observations of another patient in a {ServiceId} call")]
    private static partial void OtherPatientIgnored(ILogger logger, int count, string serviceId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "FHIR query for a hook call failed: {Reason} {HttpStatus}")]
    private static partial void FhirQueryFailed(ILogger logger, string reason, int httpStatus);
}
