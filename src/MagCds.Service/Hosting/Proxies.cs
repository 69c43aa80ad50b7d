using System.Net;
using Microsoft.AspNetCore.HttpOverrides;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Hosting;

/// <summary>
/// The reverse proxies (ingress, load balancer) MagCds sits behind (section MagCds:Proxies). Only their
/// X-Forwarded-For and X-Forwarded-Proto are believed; with none configured, the headers are ignored and the
/// connection's address is the client.
/// </summary>
public sealed class ProxyOptions
{
    public const string Section = "MagCds:Proxies";

    /// <summary>Addresses of trusted proxies, e.g. "10.0.0.5".</summary>
    public List<string> KnownProxies { get; set; } = [];

    /// <summary>Networks of trusted proxies in CIDR form, e.g. "10.244.0.0/16" (a Kubernetes pod network).</summary>
    public List<string> KnownNetworks { get; set; } = [];

    /// <summary>
    /// How many proxy hops to walk back through X-Forwarded-For (default 1: the address the nearest proxy saw). Raise
    /// it only for a chain of proxies that each append, e.g. 2 for a CDN in front of the ingress: every entry beyond
    /// the hops is whatever the client wrote.
    /// </summary>
    public int ForwardLimit { get; set; } = 1;

    public bool AnyConfigured => KnownProxies.Count > 0 || KnownNetworks.Count > 0;
}

/// <summary>
/// Forwarded headers from trusted proxies only, so that the per-client rate limit, the request log and the audit see
/// the real client and not the ingress (every request would otherwise share the ingress's single bucket).
/// </summary>
public static class Proxies
{
    public static IServiceCollection AddMagCdsProxies(this IServiceCollection services, IConfiguration config)
    {
        services.AddOptions<ProxyOptions>().Bind(config.GetSection(ProxyOptions.Section))
            .Validate(o => o.KnownProxies.All(p => IPAddress.TryParse(p, out _)),
                "MagCds:Proxies:KnownProxies entries must be IP addresses, e.g. 10.0.0.5.")
            .Validate(o => o.KnownNetworks.All(n => System.Net.IPNetwork.TryParse(n, out _)),
                "MagCds:Proxies:KnownNetworks entries must be CIDR networks, e.g. 10.244.0.0/16.")
            .Validate(o => o.ForwardLimit is >= 1 and <= 10, "MagCds:Proxies:ForwardLimit must be between 1 and 10 (proxy hops).")
            .ValidateOnStart();
        services.AddOptions<ForwardedHeadersOptions>().Configure<IOptions<ProxyOptions>>((f, p) =>
        {
            if (!p.Value.AnyConfigured)
            {
                // Nothing to believe, even if the host inserts the middleware itself (ASPNETCORE_FORWARDEDHEADERS_ENABLED),
                // which with empty lists would believe anyone.
                f.ForwardedHeaders = ForwardedHeaders.None;
                return;
            }
            f.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto;
            // Only the configured proxies, not the framework's default (loopback): a header from anyone else is ignored.
            f.KnownProxies.Clear();
            f.KnownIPNetworks.Clear();
            foreach (var a in p.Value.KnownProxies) f.KnownProxies.Add(IPAddress.Parse(a));
            foreach (var n in p.Value.KnownNetworks) f.KnownIPNetworks.Add(System.Net.IPNetwork.Parse(n));
            f.ForwardLimit = p.Value.ForwardLimit;
        });
        return services;
    }

    /// <summary>
    /// Replaces the connection's address (and scheme) by the forwarded ones when a trusted proxy sent them. In the
    /// pipeline once: with no proxy listed its options process no header at all (see above), the one place that decides.
    /// With ASPNETCORE_FORWARDEDHEADERS_ENABLED the host has already put the same middleware, with the same options, at
    /// the start of the pipeline; a second pass would walk one more hop back and believe what a client inside a
    /// trusted network wrote itself.
    /// </summary>
    public static IApplicationBuilder UseMagCdsProxies(this WebApplication app) =>
        string.Equals(app.Configuration["FORWARDEDHEADERS_ENABLED"], "true", StringComparison.OrdinalIgnoreCase) ? app : app.UseForwardedHeaders();
}
