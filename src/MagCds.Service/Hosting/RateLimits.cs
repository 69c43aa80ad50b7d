using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Threading.RateLimiting;
using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Hosting;

/// <summary>Request rate limits per client (section MagCds:RateLimit).</summary>
public sealed class RateLimitOptions
{
    public const string Section = "MagCds:RateLimit";

    /// <summary>
    /// Requests a client may make per second, on average; 0 turns limiting off. One EHR sends every call from one
    /// address and the CDS Hooks door is built to serve it 2,000 calls a second, so the default lies well above that.
    /// </summary>
    [Range(0, 1_000_000)]
    public int PermitsPerSecond { get; set; } = 5000;

    /// <summary>How many requests a client may make at once above the average (token bucket size).</summary>
    [Range(1, 1_000_000)]
    public int Burst { get; set; } = 10000;
}

/// <summary>
/// A token bucket per client address (ASP.NET rate limiter) on the REST and CDS Hooks doors and the admin endpoints.
/// A client over its limit gets 429 with Retry-After and an OperationOutcome, and nothing of its request is processed.
/// Health probes and the FHIR server's notifications are not limited (the latter come in bursts from one address).
/// </summary>
public static class RateLimits
{
    public const string Policy = "per-client";

    public static IServiceCollection AddMagCdsRateLimits(this IServiceCollection services, IConfiguration config)
    {
        services.AddOptions<RateLimitOptions>().Bind(config.GetSection(RateLimitOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddRateLimiter(_ => { });
        services.AddOptions<RateLimiterOptions>().Configure<IOptions<RateLimitOptions>>((limiter, options) =>
        {
            var o = options.Value;
            limiter.AddPolicy(Policy, http => o.PermitsPerSecond == 0
                ? RateLimitPartition.GetNoLimiter("off")
                : RateLimitPartition.GetTokenBucketLimiter(ClientKey(http.Connection.RemoteIpAddress), _ => new TokenBucketRateLimiterOptions
                {
                    TokenLimit = o.Burst,
                    TokensPerPeriod = o.PermitsPerSecond,
                    ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                    QueueLimit = 0,
                    AutoReplenishment = true,
                }));
            limiter.OnRejected = async (ctx, ct) =>
            {
                var http = ctx.HttpContext;
                http.Response.StatusCode = StatusCodes.Status429TooManyRequests;
                int seconds = ctx.Lease.TryGetMetadata(MetadataName.RetryAfter, out var after) ? Math.Max(1, (int)Math.Ceiling(after.TotalSeconds)) : 1;
                http.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
                var outcome = Outcomes.Error(http, OutcomeCodes.TooManyRequests, $"Too many requests from this client; retry after {seconds} s.");
                await new FhirResult(outcome, FhirErrorHandler.ErrorFormat(http.Request), StatusCodes.Status429TooManyRequests).ExecuteAsync(http);
            };
        });
        return services;
    }

    /// <summary>
    /// The bucket a client address counts against: an IPv4 address itself (also when it arrives IPv4-mapped on a
    /// dual-stack socket), an IPv6 address by its /64 prefix. One IPv6 host is normally given a whole /64 and can
    /// send from any address in it, so a bucket per full address would give it 2^64 buckets.
    /// </summary>
    private static string ClientKey(IPAddress? address)
    {
        if (address is null) return "unknown";
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        if (address.AddressFamily != AddressFamily.InterNetworkV6) return address.ToString();
        Span<byte> bytes = stackalloc byte[16];
        address.TryWriteBytes(bytes, out _);
        bytes[8..].Clear();
        return new IPAddress(bytes).ToString() + "/64";
    }
}
