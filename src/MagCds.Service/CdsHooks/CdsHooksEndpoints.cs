using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;
using MagCds.Service.Hosting;
using MagCds.Service.Storage;
using Microsoft.Extensions.Options;

namespace MagCds.Service.CdsHooks;

/// <summary>
/// The CDS Hooks 2.0 door: discovery, the three services and their feedback. It translates hook calls into core
/// requests and core results into cards; all interpretation is the core's.
/// </summary>
public static partial class CdsHooksEndpoints
{
    public const string CorsPolicy = "cds-hooks";

    public static IEndpointRouteBuilder MapCdsHooks(this IEndpointRouteBuilder app)
    {
        var options = app.ServiceProvider.GetRequiredService<IOptions<CdsHooksOptions>>().Value;
        var logger = app.ServiceProvider.GetRequiredService<ILoggerFactory>().CreateLogger("MagCds.CdsHooks");
        if (options.AllowUnsignedCalls) UnsignedCallsAllowed(logger);
        else if (options.TrustedIssuers.Count == 0) NoIssuer(logger);
        // Said once at start-up (a security review): such an issuer's calls choose where MagCds sends their token.
        foreach (var open in options.TrustedIssuers.Where(i => i.FhirServers.Count == 0)) AnyFhirServer(logger, open.Issuer);
        if (options.AllowInsecureFhirServer) InsecureFhirServersAllowed(logger);
        var worker = app.ServiceProvider.GetRequiredService<IOptions<Worker.WorkerOptions>>().Value;
        if (worker.Enabled && worker.HistoryCount != options.MaxResults - 1) TrendsDiffer(logger, options.MaxResults, worker.HistoryCount);

        var group = app.MapGroup("/cds-services").RequireCors(CorsPolicy).RequireRateLimiting(RateLimits.Policy);
        // Discovery reveals nothing about patients, so EHR registration tools may read it without a token.
        group.MapRead("", (CdsServiceCatalog catalog) => Results.Json(new DiscoveryResponse(catalog.Services), CdsJson.Options));
        group.MapPost("/{id}", CallAsync);
        group.MapPost("/{id}/feedback", FeedbackAsync);
        return app;
    }

    /// <summary>A bare 401 (no body: nothing about why the token failed), with the challenge HTTP requires on a 401.</summary>
    private static IResult Unauthorized(HttpRequest req)
    {
        req.HttpContext.Response.Headers.WWWAuthenticate = "Bearer";
        return Results.StatusCode(StatusCodes.Status401Unauthorized);
    }

    private static async Task<IResult> CallAsync(
        string id, HttpRequest req, CdsServiceCatalog catalog, CdsJwtValidator jwt, IOptions<CdsHooksOptions> options,
        PatientResults results, Evaluator evaluator, CardBuilder cards, CdsHooksMetrics metrics, FhirServerRefusals refusals, ILoggerFactory loggers, Audit.AuditTrail audit, CancellationToken ct)
    {
        var o = options.Value;
        var issuer = o.AllowUnsignedCalls ? null : await jwt.ValidateAsync(req, [EndpointUrl(req, o)], ct);
        if (!o.AllowUnsignedCalls && issuer is null) return Unauthorized(req);
        var service = catalog.Find(id) ?? throw UnknownService(id);
        var call = CdsRequestReader.Read(await ReadJsonBodyAsync(req, o), service, o.AllowInsecureFhirServer);
        string knowledgeUrl = BaseUrl(req, o) + "/knowledge";
        var logger = loggers.CreateLogger("MagCds.CdsHooks");
        if (call.FhirServer is { } named && issuer is not null && !issuer.MayQuery(named))
        {
            // MagCds reads only the FHIR servers this EHR is known to use: a fhirServer naming anything else (an
            // internal address, another organisation's server) is not queried, and neither is its token sent there.
            refusals.Refused(service.Id, issuer.Issuer);
            call = call with { MayQueryFhirServer = false, AccessToken = null };
        }

        var (list, response) = await AnswerAsync(call, results, evaluator, cards, knowledgeUrl, ct);
        if (response is not null) EvaluationSummary.Of(call.ServiceId, response).Write(logger, audit, req.HttpContext, Caller(issuer));
        foreach (var c in list) metrics.Card(call.ServiceId, c.Indicator);
        return Results.Json(new CdsResponse(list), CdsJson.Options);
    }

    /// <summary>
    /// The cards for a hook call, and the evaluation behind them (null when nothing was evaluated): the same for the
    /// CDS Hooks door and the console's preview, so the console shows exactly what an EHR gets.
    /// </summary>
    public static async Task<(List<Card> Cards, EvaluationResponse? Response)> AnswerAsync(
        CdsCall call, PatientResults results, Evaluator evaluator, CardBuilder cards, string knowledgeUrl, CancellationToken ct)
    {
        var list = new List<Card>();
        // MagCds informs healthcare professionals (FDA non-device CDS criterion 3): a patient portal's call gets no
        // card, and nothing is read or evaluated for it.
        if (call.ForPatient) return (list, null);
        if (call.Hook == "patient-view")
        {
            var response = evaluator.Evaluate(evaluator.LatestWithHistory(await results.GetAsync(call, ct), results.EarlierKept));
            // A card for each latest result the core says needs attention (several of the same time: one each);
            // otherwise {"cards": []}.
            foreach (var r in response.Results)
                if (r is { Outcome: InputOutcome.Evaluated, Interpretation.NeedsAttention: true })
                    list.Add(cards.ResultCard(call, r, knowledgeUrl, forOrder: false));
            return (list, response);
        }
        if (AntiMagOrders(call, evaluator).Any())
        {
            var found = await results.GetAsync(call, ct);
            var response = evaluator.Evaluate(evaluator.LatestWithHistory(found, results.EarlierKept));
            // No result that can be assessed, but results on file: the card says they could not be evaluated, not that
            // there are none, which could lead to a duplicate order or a missed raised result.
            bool unread = response.Results.Count > 0 || found.Any(f => evaluator.IsOnFile(f.Observation));
            foreach (var r in response.Results)
                if (r.Outcome == InputOutcome.Evaluated) list.Add(cards.ResultCard(call, r, knowledgeUrl, forOrder: true));
            if (list.Count == 0) list.Add(cards.NoResultCard(call, knowledgeUrl, latestUnread: unread));
            return (list, response);
        }
        return (list, null);
    }

    /// <summary>
    /// Draft ServiceRequests for anti-MAG IgM for the patient in context (an order for someone else is not this
    /// patient's order); for order-select only those the clinician selected (by id: an order without one cannot be
    /// named in selections, and "ServiceRequest/" names none).
    /// </summary>
    private static IEnumerable<Hl7.Fhir.Model.ServiceRequest> AntiMagOrders(CdsCall call, Evaluator evaluator) =>
        (call.DraftOrders?.Entry ?? []).Select(e => e.Resource).OfType<Hl7.Fhir.Model.ServiceRequest>()
            .Where(sr => evaluator.IsAntiMagCode(sr.Code) && PatientResults.IsPatient(sr.Subject, call.PatientId, call.FhirServer))
            .Where(sr => call.Hook != "order-select" || (!string.IsNullOrEmpty(sr.Id) && call.Selections.Contains("ServiceRequest/" + sr.Id)));

    private static async Task<IResult> FeedbackAsync(
        string id, HttpRequest req, CdsServiceCatalog catalog, CdsJwtValidator jwt, IOptions<CdsHooksOptions> options,
        FeedbackStore store, CdsHooksMetrics metrics, MagCds.Core.CanonicalUrls urls, CancellationToken ct)
    {
        var o = options.Value;
        // aud is the URL invoked (…/feedback); some clients send the service URL, which is accepted too.
        string url = EndpointUrl(req, o);
        if (!o.AllowUnsignedCalls && await jwt.ValidateAsync(req, [url, url[..^"/feedback".Length]], ct) is null)
            return Unauthorized(req);
        var service = catalog.Find(id) ?? throw UnknownService(id);
        var items = FeedbackReader.Read(await ReadJsonBodyAsync(req, o), service.Id);
        // Counted once per item stored (a resent item is not counted again), labelled only with MagCds's own reasons.
        foreach (var f in await store.AddAsync(items, ct))
            metrics.Feedback(service.Id, f.Outcome, f.OverrideCode is null ? "none"
                : f.OverrideSystem == urls.OverrideReasonSystem && CardBuilder.OverrideReasonConcepts.Any(c => c.Code == f.OverrideCode) ? f.OverrideCode : "other");
        return Results.Ok();
    }

    private static async Task<ReadOnlyMemory<byte>> ReadJsonBodyAsync(HttpRequest req, CdsHooksOptions o)
    {
        if (FhirWire.FromMediaType(req.ContentType) != FhirFormat.Json)
            throw new FhirRequestException(StatusCodes.Status415UnsupportedMediaType, OutcomeCodes.UnsupportedMediaType, "CDS Hooks requests are application/json.");
        return await FhirWire.ReadBodyAsync(req, o.MaxRequestBodyBytes, req.HttpContext.RequestAborted);
    }

    /// <summary>
    /// The EHR, for the audit: the trusted issuer whose JWT the call carried. In development mode no token is checked,
    /// so none is named, even when the call carries one: an unchecked issuer claim is whatever the caller wrote.
    /// </summary>
    private static string Caller(TrustedIssuer? issuer) => issuer is null ? "unsigned-development-call" : "ehr:" + issuer.Issuer;

    public static string BaseUrl(HttpRequest req, CdsHooksOptions o) =>
        string.IsNullOrEmpty(o.PublicBaseUrl) ? $"{req.Scheme}://{req.Host}{req.PathBase}" : o.PublicBaseUrl.TrimEnd('/');

    /// <summary>The exact URL of the endpoint invoked, as the JWT aud must name it.</summary>
    private static string EndpointUrl(HttpRequest req, CdsHooksOptions o) => BaseUrl(req, o) + req.Path;

    private static FhirRequestException UnknownService(string id) =>
        new(StatusCodes.Status404NotFound, OutcomeCodes.NotFound, "No CDS Service with that id. See GET /cds-services.");

    [LoggerMessage(Level = LogLevel.Warning, Message = "DEVELOPMENT MODE: CDS Hooks calls are accepted WITHOUT a valid JWT (MagCds:CdsHooks:AllowUnsignedCalls). Never use this with real patient data.")]
    private static partial void UnsignedCallsAllowed(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "CDS Hooks issuer {Issuer} has no FhirServers: a call it signs may make MagCds query any https server the call names, with the call's access token. List the EHR's FHIR base URLs in MagCds:CdsHooks:TrustedIssuers:<n>:FhirServers")]
    private static partial void AnyFhirServer(ILogger logger, string issuer);

    [LoggerMessage(Level = LogLevel.Warning, Message = "MagCds:CdsHooks:AllowInsecureFhirServer is on: a CDS Hooks call may name a plain-http fhirServer, and MagCds then sends the call's access token to it unencrypted. For test servers only.")]
    private static partial void InsecureFhirServersAllowed(ILogger logger);

    [LoggerMessage(Level = LogLevel.Information, Message = "No CDS Hooks issuer is trusted yet: every hook call gets 401 until MagCds:CdsHooks:TrustedIssuers is configured.")]
    private static partial void NoIssuer(ILogger logger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "MagCds:CdsHooks:MaxResults ({MaxResults}) is not MagCds:Worker:HistoryCount ({HistoryCount}) + 1: for a patient with more earlier results than either door reads, cards and the worker's outputs show other trends, with other ids, so a recorded card suggestion adds outputs beside the worker's.")]
    private static partial void TrendsDiffer(ILogger logger, int maxResults, int historyCount);
}
