using System.Text.RegularExpressions;
using Serilog.Context;

namespace MagCds.Service.Hosting;

/// <summary>
/// Honours an inbound X-Request-Id (an engine's message id), or X-Correlation-Id (the name some engines use), or makes
/// one, returns it on every response (in X-Correlation-Id too when the caller sent that one), and puts it on every log
/// line of the request as CorrelationId.
/// </summary>
public static partial class Correlation
{
    public const string Header = "X-Request-Id";
    public const string AlternativeHeader = "X-Correlation-Id";

    [GeneratedRegex("^[A-Za-z0-9._:-]{1,128}$")]
    private static partial Regex Safe();

    /// <summary>
    /// The correlation id as a FHIR resource id (<c>[A-Za-z0-9\-.]{1,64}</c>), for an error OperationOutcome: an
    /// engine's message id such as "ORU_R01:123" keeps its letters and digits, the rest become '-'. The header
    /// carries the id unchanged.
    /// </summary>
    public static string AsFhirId(string correlationId)
    {
        Span<char> id = stackalloc char[Math.Min(correlationId.Length, 64)];
        for (int i = 0; i < id.Length; i++) id[i] = char.IsAsciiLetterOrDigit(correlationId[i]) || correlationId[i] is '-' or '.' ? correlationId[i] : '-';
        return id.Length == 0 ? "-" : new string(id);
    }

    public static IApplicationBuilder UseCorrelation(this IApplicationBuilder app) => app.Use(async (http, next) =>
    {
        // Anything not plainly an id (too long, odd characters) is replaced, so it cannot inject into logs or headers.
        bool alternative = http.Request.Headers.ContainsKey(AlternativeHeader);
        string? alternativeInbound = alternative ? http.Request.Headers[AlternativeHeader].ToString() : null;
        string inbound = http.Request.Headers.ContainsKey(Header) || !alternative ? http.Request.Headers[Header].ToString() : alternativeInbound!;
        string id = Safe().IsMatch(inbound) ? inbound : Guid.NewGuid().ToString("N");
        // Each header comes back with the caller's own value (when it is plainly an id).
        string alternativeEcho = alternativeInbound is not null && Safe().IsMatch(alternativeInbound) ? alternativeInbound : id;
        http.TraceIdentifier = id;
        http.Response.OnStarting(() =>
        {
            http.Response.Headers[Header] = id;
            if (alternative) http.Response.Headers[AlternativeHeader] = alternativeEcho;
            return Task.CompletedTask;
        });
        using (LogContext.PushProperty("CorrelationId", id))
        {
            await next(http);
        }
    });
}
