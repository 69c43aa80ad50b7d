using System.Text.RegularExpressions;
using Serilog.Context;

namespace MagCds.Service.Hosting;

/// <summary>
/// Honours an inbound X-Request-Id (an engine's message id), or makes one, returns it on every response, and puts
/// it on every log line of the request as CorrelationId.
/// </summary>
public static partial class Correlation
{
    public const string Header = "X-Request-Id";

    [GeneratedRegex("^[A-Za-z0-9._:-]{1,128}$")]
    private static partial Regex Safe();

    public static IApplicationBuilder UseCorrelation(this IApplicationBuilder app) => app.Use(async (http, next) =>
    {
        // Anything not plainly an id (too long, odd characters) is replaced, so it cannot inject into logs or headers.
        string inbound = http.Request.Headers[Header].ToString();
        string id = Safe().IsMatch(inbound) ? inbound : Guid.NewGuid().ToString("N");
        http.TraceIdentifier = id;
        http.Response.OnStarting(() =>
        {
            http.Response.Headers[Header] = id;
            return Task.CompletedTask;
        });
        using (LogContext.PushProperty("CorrelationId", id))
        {
            await next(http);
        }
    });
}
