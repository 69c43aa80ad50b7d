using System.ComponentModel.DataAnnotations;
using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;
using Microsoft.AspNetCore.Http.Timeouts;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Hosting;

/// <summary>How long one request may take (section MagCds:RequestTimeout).</summary>
public sealed class TimeoutOptions
{
    public const string Section = "MagCds:RequestTimeout";

    /// <summary>Seconds from the start of a request to its answer, reading the body included; 0 turns the limit off.</summary>
    [Range(0, 3600)]
    public int Seconds { get; set; } = 30;
}

/// <summary>
/// A time limit on every request (ASP.NET request timeouts): when it passes, the request's cancellation fires, the work
/// stops (a body still arriving, a CDS Hooks fallback query, an evaluation), and the caller gets 504 with an
/// OperationOutcome instead of a connection held open. An answer already being streamed (a large Bundle's) cannot
/// become a 504 any more: its connection is closed, so the caller sees a cut-off answer rather than a complete-looking
/// one. Kestrel separately drops connections whose body trickles in slower than its minimum data rate (Kestrel:Limits).
/// </summary>
public static partial class RequestTimeouts
{
    /// <summary>Set on a request whose answer the limit cut off, so its request log line is an error (<see cref="RequestLogLine"/>).</summary>
    public const string CutOffItem = "magcds.cut-off";

    /// <summary>The limit, and inside it the one place that says what the limit stopped (one line, no stack trace).</summary>
    public static WebApplication UseMagCdsRequestTimeouts(this WebApplication app)
    {
        app.UseRequestTimeouts();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("MagCds.RequestTimeouts");
        int seconds = app.Services.GetRequiredService<IOptions<TimeoutOptions>>().Value.Seconds;
        app.Use(async (http, next) =>
        {
            try
            {
                await next(http);
            }
            // Inside the limit the request's cancellation fires for a caller gone or the limit; this token for the limit only.
            catch (OperationCanceledException) when (http.Features.Get<IHttpRequestTimeoutFeature>()?.RequestTimeoutToken.IsCancellationRequested == true)
            {
                if (!http.Response.HasStarted)
                {
                    Stopped(logger, seconds);
                    throw; // the limit's own middleware answers 504 with the OperationOutcome
                }
                CutOff(logger, seconds);
                http.Items[CutOffItem] = true;
                http.Abort();
            }
        });
        return app;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Request stopped at the time limit ({Seconds} s, MagCds:RequestTimeout:Seconds) before its answer started: answered 504 timeout")]
    private static partial void Stopped(ILogger logger, int seconds);

    [LoggerMessage(Level = LogLevel.Error, Message = "Request stopped at the time limit ({Seconds} s, MagCds:RequestTimeout:Seconds) while its answer was being sent: the connection was closed, so the caller got a cut-off answer it can tell from a complete one (send fewer inputs per request, or raise the limit)")]
    private static partial void CutOff(ILogger logger, int seconds);

    public static IServiceCollection AddMagCdsRequestTimeouts(this IServiceCollection services, IConfiguration config)
    {
        services.AddOptions<TimeoutOptions>().Bind(config.GetSection(TimeoutOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddRequestTimeouts();
        services.AddOptions<RequestTimeoutOptions>().Configure<IOptions<TimeoutOptions>>((t, o) =>
        {
            if (o.Value.Seconds == 0) return;
            t.DefaultPolicy = new RequestTimeoutPolicy
            {
                Timeout = TimeSpan.FromSeconds(o.Value.Seconds),
                TimeoutStatusCode = StatusCodes.Status504GatewayTimeout,
                // The request's cancellation token has fired by now, so the small answer is written without it.
                WriteTimeoutResponse = http => new FhirResult(
                    Outcomes.Error(http, OutcomeCodes.Timeout, $"The request took longer than {o.Value.Seconds} s and was stopped."),
                    FhirErrorHandler.ErrorFormat(http.Request), StatusCodes.Status504GatewayTimeout).WriteAsync(http, CancellationToken.None),
            };
        });
        return services;
    }
}
