using MagCds.Service.CdsHooks;
using MagCds.Service.Worker;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace MagCds.Service.Hosting;

/// <summary>OpenTelemetry exporters (section MagCds:Telemetry); both off by default.</summary>
public sealed class TelemetryOptions
{
    public const string Section = "MagCds:Telemetry";

    /// <summary>An OTLP collector (e.g. http://otel-collector:4317): traces and metrics are sent there.</summary>
    public string? OtlpEndpoint { get; set; }

    /// <summary>Serve metrics for Prometheus to scrape at GET /metrics.</summary>
    public bool Prometheus { get; set; }
}

/// <summary>
/// Traces and metrics with OpenTelemetry: requests per door (ASP.NET Core and HttpClient instrumentation, whose URL
/// query strings are redacted by default, so patient ids in searches never leave), and MagCds's own meters:
/// evaluations by door and outcome, cards by indicator, feedback and override reasons, the worker's queue depth, lag
/// and outcomes.
/// </summary>
public static class Telemetry
{
    public static IServiceCollection AddMagCdsTelemetry(this IServiceCollection services, IConfiguration config)
    {
        var o = config.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();
        if (!string.IsNullOrEmpty(o.OtlpEndpoint) && !Uri.TryCreate(o.OtlpEndpoint, UriKind.Absolute, out _))
            throw new Microsoft.Extensions.Options.OptionsValidationException(TelemetryOptions.Section, typeof(TelemetryOptions),
                ["MagCds:Telemetry:OtlpEndpoint must be an absolute URL, e.g. http://otel-collector:4317."]);
        var otel = services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("magcds", serviceVersion: typeof(Telemetry).Assembly.GetName().Version?.ToString()))
            .WithMetrics(m =>
            {
                m.AddMeter(EvaluationSummary.MeterName, CdsHooksMetrics.MeterName, WorkerMetrics.MeterName)
                    .AddAspNetCoreInstrumentation()
                    .AddHttpClientInstrumentation();
                if (o.Prometheus) m.AddPrometheusExporter();
                if (!string.IsNullOrEmpty(o.OtlpEndpoint)) m.AddOtlpExporter(e => e.Endpoint = new Uri(o.OtlpEndpoint));
            });
        // Spans carry the route and a redacted URL, never a path that can hold a patient id (as the logs: NoPhiLogging).
        if (!string.IsNullOrEmpty(o.OtlpEndpoint))
            otel.WithTracing(t => t
                .AddAspNetCoreInstrumentation(a => a.EnrichWithHttpResponse = (activity, response) => activity.SetTag("url.path", RequestLogLine.RouteOf(response.HttpContext)))
                .AddHttpClientInstrumentation(h => h.EnrichWithHttpRequestMessage = (activity, request) => activity.SetTag("url.full", RedactedUrl(request.RequestUri)))
                .AddOtlpExporter(e => e.Endpoint = new Uri(o.OtlpEndpoint)));
        return services;
    }

    /// <summary>
    /// An outgoing FHIR URL with every resource id replaced by {id} and no query: https://ehr/fhir/Patient/{id}.
    /// A segment is an id when it follows a resource type (a segment that starts with a capital letter).
    /// </summary>
    public static string RedactedUrl(Uri? url)
    {
        if (url is null || !url.IsAbsoluteUri) return "";
        var segments = url.AbsolutePath.Split('/');
        for (int i = 1; i < segments.Length; i++)
            if (segments[i - 1] is { Length: > 0 } previous && char.IsUpper(previous[0]) && segments[i].Length > 0)
                segments[i] = "{id}";
        return $"{url.Scheme}://{url.Authority}{string.Join('/', segments)}";
    }

    public static IEndpointRouteBuilder MapMagCdsTelemetry(this IEndpointRouteBuilder app)
    {
        if (app.ServiceProvider.GetRequiredService<IConfiguration>().GetSection(TelemetryOptions.Section).Get<TelemetryOptions>()?.Prometheus == true)
            app.MapPrometheusScrapingEndpoint("/metrics").ReadOnly();
        return app;
    }
}
