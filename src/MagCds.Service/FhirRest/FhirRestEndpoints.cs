using Hl7.Fhir.Model;
using MagCds.Core.Evaluation;
using MagCds.Service.Hosting;
using Microsoft.Extensions.Options;

namespace MagCds.Service.FhirRest;

/// <summary>The FHIR REST door: <c>POST /fhir/Observation/$mag-evaluate</c> (metadata and the package: Conformance/).</summary>
public static class FhirRestEndpoints
{
    public static IEndpointRouteBuilder MapFhirRest(this IEndpointRouteBuilder app)
    {
        var fhir = app.MapGroup("/fhir").RequireRateLimiting(RateLimits.Policy);
        fhir.MapPost("/Observation/$" + MagEvaluateOperation.Name, EvaluateAsync).RequireAuthorization(Security.Access.EvaluatePolicy);
        return app;
    }

    /// <summary>
    /// What no endpoint answers: a route that exists for other methods gets 405 with an Allow header (the fallback
    /// would otherwise catch it as an unknown route), anything else 404; both with an OperationOutcome.
    /// </summary>
    public static IResult NotFound(HttpRequest req, EndpointDataSource endpoints)
    {
        var allowed = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var e in endpoints.Endpoints.OfType<RouteEndpoint>())
        {
            if (e.Metadata.GetMetadata<HttpMethodMetadata>() is not { } methods) continue; // the fallback itself
            var matcher = new Microsoft.AspNetCore.Routing.Template.TemplateMatcher(new Microsoft.AspNetCore.Routing.Template.RouteTemplate(e.RoutePattern), []);
            if (matcher.TryMatch(req.Path, [])) allowed.UnionWith(methods.HttpMethods);
        }
        // The template matcher does not check route constraints: a route that takes this method matched the path's
        // shape but not a constraint ("/dead-letters/abc/replay" against {id:long}), so there is no such resource.
        if (allowed.Contains(req.Method)) allowed.Clear();
        if (allowed.Count == 0)
            throw new FhirRequestException(StatusCodes.Status404NotFound, OutcomeCodes.NotFound, "No such route. See /fhir/metadata.");
        req.HttpContext.Response.Headers.Allow = string.Join(", ", allowed);
        var outcome = Outcomes.Error(req.HttpContext, OutcomeCodes.MethodNotAllowed, $"{req.Method} is not allowed on this route; it takes {string.Join(", ", allowed)}.");
        return new FhirResult(outcome, FhirErrorHandler.ErrorFormat(req), StatusCodes.Status405MethodNotAllowed);
    }

    private static async Task<FhirResult> EvaluateAsync(
        HttpRequest req, Evaluator evaluator, IOptions<FhirRestOptions> options, ILoggerFactory loggers, Audit.AuditTrail audit, CancellationToken ct)
    {
        var requestFormat = FhirWire.RequestFormat(req);
        var responseFormat = FhirWire.ResponseFormat(req, requestFormat);
        var body = await FhirWire.ReadBodyAsync(req, options.Value.MaxRequestBodyBytes, ct);
        var mapped = MagEvaluateOperation.ToRequest(FhirWire.Parse(body, requestFormat));
        var summary = new EvaluationSummary("fhir-rest", evaluator.Knowledge.Version);
        var answer = MagEvaluateOperation.Start(evaluator.Start(mapped.Request), mapped.EntryIssues, summary, evaluator.Canonical);
        if (answer.Outcome is { } error) error.Id = Hosting.Correlation.AsFhirId(req.HttpContext.TraceIdentifier); // every error answer carries the correlation id
        var logger = loggers.CreateLogger("MagCds.FhirRest");
        // A large Bundle's answer is evaluated while it is written, so the log line comes once it is complete.
        return answer.Outcome is { } refused
            ? new FhirResult(refused, responseFormat, answer.Status, () => summary.Write(logger, audit, req.HttpContext))
            : new FhirResult(answer.Parts, responseFormat, () => summary.Write(logger, audit, req.HttpContext));
    }
}
