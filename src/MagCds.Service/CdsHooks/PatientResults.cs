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

    public async Task<IReadOnlyList<EvaluationInput>> GetAsync(CdsCall call, CancellationToken ct)
    {
        var observations = call.Slot(CdsServiceCatalog.ResultsKey) switch
        {
            PrefetchSlot.Empty => [],
            PrefetchSlot.Found { Resource: Bundle b } => b.Entry.Select(e => (e.Resource as Observation, e.FullUrl)).Where(x => x.Item1 is not null).Select(x => (x.Item1!, x.FullUrl)).ToList(),
            PrefetchSlot.Found { Resource: Observation o } => [(o, (string?)null)],
            PrefetchSlot.Found other => throw new FhirRequestException(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidCdsRequest,
                $"prefetch.{CdsServiceCatalog.ResultsKey} must be a Bundle of Observations, not a {other.Resource.TypeName}."),
            _ => await QueryAsync(call, ct),
        };

        var mine = new List<EvaluationInput>();
        int others = 0;
        for (int i = 0; i < observations.Count; i++)
        {
            var (obs, fullUrl) = observations[i];
            if (!IsPatient(obs.Subject, call.PatientId)) { others++; continue; }
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

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(TimeSpan.FromSeconds(options.Value.FhirQueryTimeoutSeconds));
        var client = http.CreateClient(HttpClientName);
        if (call.AccessToken is not null)
            client.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", call.AccessToken);
        using var fhir = new FhirClient(call.FhirServer, client, new FhirClientSettings { PreferredFormat = ResourceFormat.Json, VerifyFhirVersion = false });

        var found = new List<(Observation, string?)>();
        try
        {
            string query = string.Format(System.Globalization.CultureInfo.InvariantCulture, catalog.ResultsQueryTemplate, Uri.EscapeDataString(call.PatientId));
            var page = await fhir.GetAsync(query, cts.Token) as Bundle;
            for (int pages = 0; page is not null && pages < 5 && found.Count < options.Value.MaxResults; pages++)
            {
                found.AddRange(page.Entry.Where(e => e.Resource is Observation).Select(e => ((Observation)e.Resource!, (string?)e.FullUrl)));
                page = page.NextLink is null ? null : await fhir.ContinueAsync(page, ct: cts.Token);
            }
        }
        // ExecutionRejectedException: the resilience pipeline refused the call (circuit open, timeout), which is the
        // FHIR server being unavailable like any other: 412, not 500.
        catch (Exception e) when (e is FhirOperationException or HttpRequestException or OperationCanceledException or TimeoutException
                                      or Hl7.Fhir.Serialization.DeserializationFailedException or FormatException
                                      or Polly.ExecutionRejectedException)
        {
            // The reason goes to the log as a type name only: messages may hold URLs with patient ids.
            FhirQueryFailed(logger, e.GetType().Name, (e as FhirOperationException)?.Status is { } s ? (int)s : 0);
            if (ct.IsCancellationRequested) throw;
            throw Unavailable("The FHIR server could not be queried for the patient's anti-MAG results in time.");
        }
        return found.Take(options.Value.MaxResults).ToList();
    }

    /// <summary>True when a subject reference names exactly this patient ("Patient/id", an absolute URL ending in it, or with _history).</summary>
    public static bool IsPatient(ResourceReference? subject, string patientId)
    {
        if (subject?.Reference is not { } r) return false;
        int h = r.IndexOf("/_history/", StringComparison.Ordinal);
        if (h >= 0) r = r[..h];
        return r == "Patient/" + patientId || r.EndsWith("/Patient/" + patientId, StringComparison.Ordinal);
    }

    private static FhirRequestException Unavailable(string message) =>
        new(StatusCodes.Status412PreconditionFailed, OutcomeCodes.DataUnavailable, message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Ignored {Count} Observations of another patient in a {ServiceId} call")]
    private static partial void OtherPatientIgnored(ILogger logger, int count, string serviceId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "FHIR query for a hook call failed: {Reason} {HttpStatus}")]
    private static partial void FhirQueryFailed(ILogger logger, string reason, int httpStatus);
}
