using System.Security.Claims;
using System.Text.RegularExpressions;
using Serilog.Core;
using Serilog.Events;

namespace MagCds.Service.Hosting;

/// <summary>
/// The redaction policy of the logs: a FHIR resource or element, a token, a claims principal or an HTTP body given to
/// a log call is written as its type name only, however it is formatted ({@x} or {x}). PHI-free logging is the
/// rule everywhere; this makes a slip harmless.
/// </summary>
public sealed class NoPhiDestructuring : IDestructuringPolicy
{
    public bool TryDestructure(object value, ILogEventPropertyValueFactory factory, out LogEventPropertyValue result)
    {
        if (Redacted(value) is { } text)
        {
            result = new ScalarValue(text);
            return true;
        }
        result = null!;
        return false;
    }

    public static string? Redacted(object? value) => value switch
    {
        Hl7.Fhir.Model.Base fhir => $"[{fhir.TypeName} redacted]",
        Microsoft.IdentityModel.Tokens.SecurityToken token => $"[{token.GetType().Name} redacted]",
        ClaimsPrincipal or ClaimsIdentity => "[principal redacted]",
        Stream or ReadOnlyMemory<byte> or byte[] => "[body redacted]",
        _ => null,
    };
}

/// <summary>
/// The same policy for values logged with plain {x} formatting, which reach Serilog as scalars (often already turned
/// into strings by Microsoft.Extensions.Logging): such properties, and any string shaped like a JWT, are replaced
/// before any sink sees them. The request path ASP.NET Core puts on every line of a request (its logging scope) is
/// removed: a path can hold a patient id; the request line names the route instead (<see cref="RequestLogLine"/>).
/// </summary>
public sealed partial class NoPhiEnricher : ILogEventEnricher
{
    [GeneratedRegex(@"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(\.[A-Za-z0-9_-]*)?")]
    private static partial Regex Jwt();

    public void Enrich(LogEvent logEvent, ILogEventPropertyFactory propertyFactory)
    {
        logEvent.RemovePropertyIfPresent("RequestPath");
        foreach (var (name, value) in logEvent.Properties.ToList())
        {
            string? text = value switch
            {
                ScalarValue { Value: string s } when Jwt().IsMatch(s) => Jwt().Replace(s, "[token redacted]"),
                ScalarValue { Value: { } v } => NoPhiDestructuring.Redacted(v),
                _ => null,
            };
            if (text is not null) logEvent.AddOrUpdateProperty(new LogEventProperty(name, new ScalarValue(text)));
        }
    }
}

/// <summary>
/// The request log line names the route, never the path: a path can carry a patient id (a classic rest-hook's
/// /worker/notifications/Patient/{id}, a mistyped /fhir/Patient/{id}) and the query string is not logged at all.
/// </summary>
public static class RequestLogLine
{
    public static void Configure(Serilog.AspNetCore.RequestLoggingOptions o)
    {
        // A 5xx is an error, except a readiness probe's 503 while the service warms up or its store is away: that is
        // the probe doing its job (the failing check is logged on its own), not a failed request.
        // An answer the time limit cut off went out with the status it started with: an error all the same.
        o.GetLevel = (http, _, error) =>
            error is not null || http.Items.ContainsKey(RequestTimeouts.CutOffItem)
            || http.Response.StatusCode >= 500 && !http.Request.Path.StartsWithSegments("/health", StringComparison.Ordinal)
                ? LogEventLevel.Error
                : LogEventLevel.Information;
        o.MessageTemplate = "HTTP {RequestMethod} {RequestRoute} responded {StatusCode} in {Elapsed:0.0000} ms";
        o.GetMessageTemplateProperties = (http, _, elapsed, status) =>
        [
            new LogEventProperty("RequestMethod", new ScalarValue(http.Request.Method)),
            new LogEventProperty("RequestRoute", new ScalarValue(RouteOf(http))),
            new LogEventProperty("StatusCode", new ScalarValue(status)),
            new LogEventProperty("Elapsed", new ScalarValue(elapsed)),
        ];
    }

    /// <summary>The route template that answered (e.g. /fhir/StructureDefinition/{id}), or "(no route)"; never the path.</summary>
    public static string RouteOf(HttpContext http) =>
        // A request refused by an exception loses its endpoint to the error handler, which keeps it in its feature.
        // The fallback (MapFallback, order int.MaxValue) is what answers "no such route".
        (http.GetEndpoint() ?? http.Features.Get<Microsoft.AspNetCore.Diagnostics.IExceptionHandlerFeature>()?.Endpoint) is RouteEndpoint { Order: < int.MaxValue } e
            ? e.RoutePattern.RawText ?? "(no route)" : "(no route)";
}
