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
/// OperationOutcome instead of a connection held open. Kestrel separately drops connections whose body trickles in
/// slower than its minimum data rate (Kestrel:Limits).
/// </summary>
public static class RequestTimeouts
{
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
