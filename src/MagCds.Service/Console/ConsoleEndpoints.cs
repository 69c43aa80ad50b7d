using Hl7.Fhir.Serialization;
using MagCds.Core.Evaluation;
using MagCds.Service.CdsHooks;
using MagCds.Service.FhirRest;
using MagCds.Service.Hosting;
using MagCds.Service.Storage;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Console;

/// <summary>
/// The web console: <c>/console/</c> serves its page (HTML, CSS, JS from this assembly; no data in them), and every
/// piece of data it shows comes from endpoints under the admin policy: <c>/admin/console/*</c> here, plus
/// <c>/admin/audit</c> and <c>/admin/worker</c>. The knowledge view reads the public PlanDefinition.
/// </summary>
public static class ConsoleEndpoints
{
    private const string AssetPrefix = "console/";
    private const string SamplePrefix = "console-samples/";

    public static IEndpointRouteBuilder MapConsole(this IEndpointRouteBuilder app)
    {
        // "/console" (no slash) is redirected so the page's relative links resolve under /console/.
        app.MapRead("/console/{*file}", (string? file, HttpRequest req) =>
            string.IsNullOrEmpty(file) && !req.Path.Value!.EndsWith('/') ? Results.Redirect("/console/") : Asset(string.IsNullOrEmpty(file) ? "index.html" : file));

        var api = app.MapGroup("/admin/console").RequireAuthorization(Security.Access.AdminPolicy).RequireRateLimiting(RateLimits.Policy);
        api.MapRead("/samples", () => Results.Json(Samples.Value));
        api.MapPost("/try", TryAsync);
        api.MapRead("/feedback", async (FeedbackStore store, TimeProvider time, CancellationToken ct, int days = 90) =>
            Results.Json(await store.DailyAsync(time.GetUtcNow().AddDays(-Math.Clamp(days, 1, 3650)), ct)));
        return app;
    }

    private static async Task<IResult> TryAsync(HttpRequest req, ConsolePreview preview, IOptions<FhirRestOptions> rest,
        IOptions<CdsHooksOptions> cds, ILoggerFactory loggers, Audit.AuditTrail audit, CancellationToken ct)
    {
        try
        {
            // Inside: a body refused as too large or not UTF-8 is shown like any other refusal, not as an error page.
            var body = await FhirWire.ReadBodyAsync(req, rest.Value.MaxRequestBodyBytes, ct);
            var (answer, summary) = await preview.RunAsync(body, CdsHooksEndpoints.BaseUrl(req, cds.Value) + "/knowledge", cds.Value.AllowInsecureFhirServer, ct);
            summary?.Write(loggers.CreateLogger("MagCds.Console"), audit, req.HttpContext, Audit.AuditEndpoints.Caller(req.HttpContext));
            return Results.Json(answer);
        }
        catch (FhirRequestException e)
        {
            // The console shows a refusal as the OperationOutcome the door would have answered, with its status.
            var outcome = Outcomes.Error(req.HttpContext, e.Code, e.Message);
            return Results.Json(new PreviewAnswer("refused", e.Status, System.Text.Json.JsonSerializer.SerializeToElement(new CdsResponse([]), CdsJson.Options), [], [],
                new ResourceText("OperationOutcome", outcome.Id, outcome.ToJson(pretty: true), outcome.ToXml(pretty: true)), []));
        }
    }

    private sealed record Sample(string Name, string Body);

    /// <summary>Read from the assembly once; they never change while the service runs.</summary>
    private static readonly Lazy<IReadOnlyList<Sample>> Samples = new(LoadSamples);

    private static IReadOnlyList<Sample> LoadSamples()
    {
        var assembly = typeof(ConsoleEndpoints).Assembly;
        return assembly.GetManifestResourceNames().Where(n => n.StartsWith(SamplePrefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal)
            .Select(n =>
            {
                using var reader = new StreamReader(assembly.GetManifestResourceStream(n)!);
                return new Sample(n[SamplePrefix.Length..^".json".Length], reader.ReadToEnd());
            }).ToList();
    }

    private static IResult Asset(string file)
    {
        var stream = typeof(ConsoleEndpoints).Assembly.GetManifestResourceStream(AssetPrefix + file);
        if (stream is null) throw new FhirRequestException(StatusCodes.Status404NotFound, OutcomeCodes.NotFound, "No such console file.");
        string type = Path.GetExtension(file) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".css" => "text/css; charset=utf-8",
            ".js" => "text/javascript; charset=utf-8",
            ".svg" => "image/svg+xml",
            _ => "application/octet-stream",
        };
        return Results.Stream(stream, type);
    }
}
