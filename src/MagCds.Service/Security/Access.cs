using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Security;

/// <summary>
/// Access control of the REST door and the admin endpoints: API keys and/or bearer JWTs (scopes per endpoint), one
/// policy per kind of endpoint, and refusals as OperationOutcomes. Also the start-up rule: no authentication
/// configured means loopback only.
/// </summary>
public static class Access
{
    public const string EvaluatePolicy = "evaluate";
    public const string AdminPolicy = "admin";
    private const string Selector = "magcds";

    public static IServiceCollection AddMagCdsAccess(this IServiceCollection services, IConfiguration config)
    {
        string? unbound = Hosting.ConfigurationLists.FirstUnbound<ApiKeyClient>(config, SecurityOptions.Section + ":ApiKeys")
                          ?? Hosting.ConfigurationLists.FirstUnbound<CertificateClient>(config, SecurityOptions.Section + ":ClientCertificates:Clients");
        services.AddOptions<SecurityOptions>().Bind(config.GetSection(SecurityOptions.Section))
            .Validate(_ => unbound is null, unbound ?? "")
            .Validate(o => o.ApiKeys.All(k => k.Key.Length >= 16 && !string.IsNullOrWhiteSpace(k.Name)),
                "Each MagCds:Security:ApiKeys entry needs a Name and a Key of at least 16 characters.")
            .Validate(o => !o.Jwt.IsConfigured || !string.IsNullOrEmpty(o.Jwt.Audience),
                "MagCds:Security:Jwt:Audience is required when MagCds:Security:Jwt:Authority is set.")
            .Validate(o => o.Jwt.ClockSkewSeconds is >= 0 and <= 300, "MagCds:Security:Jwt:ClockSkewSeconds must be between 0 and 300.")
            // Said at start-up: the JWT handler itself would only refuse an http:// authority on the first call.
            .Validate(o => !o.Jwt.IsConfigured || !o.Jwt.RequireHttpsMetadata || o.Jwt.Authority!.StartsWith("https://", StringComparison.OrdinalIgnoreCase),
                "MagCds:Security:Jwt:Authority must be an https URL (or set MagCds:Security:Jwt:RequireHttpsMetadata to false for an authority on this machine).")
            .Validate(o => !ListensBeyondLoopback(config) || o.AnyConfigured,
                "MagCds listens on a non-loopback address but no authentication is configured (MagCds:Security:ApiKeys, " +
                "MagCds:Security:Jwt:Authority or MagCds:Security:ClientCertificates): set one, or listen on 127.0.0.1 only.")
            .Validate(o => !BehindProxy(config) || o.AnyConfigured,
                "MagCds:Proxies names a trusted proxy, so callers beyond this machine reach MagCds through it, but no authentication " +
                "is configured (MagCds:Security:ApiKeys, MagCds:Security:Jwt:Authority or MagCds:Security:ClientCertificates): set one, or remove MagCds:Proxies.")
            .Validate(o => ClientCertificateAuthentication.IsValid(o.ClientCertificates),
                "MagCds:Security:ClientCertificates needs a readable CaFile (PEM, one or more CA certificates) and, for each client, " +
                "a Name and a distinct Subject distinguished name such as 'CN=lab-engine, O=Hospital'.")
            .ValidateOnStart();
        var security = config.GetSection(SecurityOptions.Section).Get<SecurityOptions>() ?? new SecurityOptions();
        var jwt = security.Jwt;

        var auth = services.AddAuthentication(Selector)
            .AddPolicyScheme(Selector, "API key, bearer JWT or client certificate", o => o.ForwardDefaultSelector = http => SchemeFor(http, security))
            .AddScheme<Microsoft.AspNetCore.Authentication.AuthenticationSchemeOptions, ApiKeyAuthentication>(ApiKeyAuthentication.SchemeName, null);
        ClientCertificateAuthentication.Add(auth, services, security.ClientCertificates);
        if (jwt.IsConfigured)
            auth.AddJwtBearer(o =>
            {
                o.Authority = jwt.Authority;
                o.Audience = jwt.Audience;
                o.RequireHttpsMetadata = jwt.RequireHttpsMetadata;
                o.MapInboundClaims = false; // keep "scope" and "sub" as the token has them
                o.TokenValidationParameters.ValidateLifetime = true;
                o.TokenValidationParameters.ClockSkew = TimeSpan.FromSeconds(jwt.ClockSkewSeconds);
            });

        services.AddAuthorization();
        services.AddOptions<AuthorizationOptions>().Configure<IOptions<SecurityOptions>>((a, s) =>
        {
            var o = s.Value;
            a.AddPolicy(EvaluatePolicy, p => p.RequireAssertion(ctx => !o.AnyConfigured || Allowed(ctx.User, o, admin: false, ctx.Resource as HttpContext)));
            a.AddPolicy(AdminPolicy, p => p.RequireAssertion(ctx => o.AnyConfigured && Allowed(ctx.User, o, admin: true, ctx.Resource as HttpContext)));
        });
        services.AddSingleton<IAuthorizationMiddlewareResultHandler, RefusalAsOperationOutcome>();
        return services;
    }

    /// <summary>
    /// Which scheme judges a request: an X-API-Key header its key, an Authorization header its bearer token, else a
    /// client certificate presented in the TLS handshake. A request with none of them is anonymous (then refused
    /// wherever access is configured).
    /// </summary>
    private static string SchemeFor(HttpContext http, SecurityOptions o)
    {
        // CDS Hooks checks the EHR's own JWT (CdsJwtValidator): that token is not one of the REST identity provider's,
        // so it is not judged against it (which would also make every hook call wait for that provider's metadata).
        if (http.Request.Path.StartsWithSegments("/cds-services")) return ApiKeyAuthentication.SchemeName;
        if (http.Request.Headers.ContainsKey(ApiKeyAuthentication.Header)) return ApiKeyAuthentication.SchemeName;
        if (o.Jwt.IsConfigured && http.Request.Headers.ContainsKey("Authorization")) return JwtBearerDefaults.AuthenticationScheme;
        if (o.ClientCertificates.IsConfigured && http.Connection.ClientCertificate is not null) return ClientCertificateAuthentication.SchemeName;
        return o.Jwt.IsConfigured ? JwtBearerDefaults.AuthenticationScheme : ApiKeyAuthentication.SchemeName;
    }

    /// <summary>Says at start-up how callers are checked; with no authentication configured, loudly.</summary>
    public static WebApplication LogAccessMode(this WebApplication app)
    {
        var o = app.Services.GetRequiredService<IOptions<SecurityOptions>>().Value;
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("MagCds.Security");
        // The configuration check above cannot know every way a host may be told where to listen: once listening,
        // the addresses actually bound are checked too, and a service without authentication beyond loopback stops.
        // CDS Hooks development mode (no JWT) is held to the same rule.
        bool unsigned = app.Configuration.GetValue<bool>("MagCds:CdsHooks:AllowUnsignedCalls");
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            if (o.AnyConfigured && !unsigned) return;
            var bound = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features
                .Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()?.Addresses ?? [];
            var config = new ConfigurationBuilder().AddInMemoryCollection([new("urls", string.Join(';', bound))]).Build();
            if (bound.Count == 0 || !ListensBeyondLoopback(config)) return;
            log.LogCritical("{What} but listening beyond loopback ({Addresses}): stopping.",
                o.AnyConfigured ? "CDS Hooks development mode (MagCds:CdsHooks:AllowUnsignedCalls)" : "No authentication configured (MagCds:Security)", string.Join(", ", bound));
            Environment.ExitCode = 78;
            app.Lifetime.StopApplication();
        });
        if (!o.AnyConfigured)
            log.LogWarning("No authentication configured (MagCds:Security): the FHIR REST door serves anyone, so MagCds listens on loopback only; admin endpoints are closed.");
        else
            log.LogInformation("Callers authenticated by {ApiKeyCount} API keys, {CertificateClientCount} client certificates and {JwtMode}",
                o.ApiKeys.Count, o.ClientCertificates.Clients.Count, o.Jwt.IsConfigured ? "bearer JWTs" : "no JWTs");
        return app;
    }

    /// <summary>An API key or client certificate (an admin one for admin), or a JWT with the endpoint's scope.</summary>
    private static bool Allowed(System.Security.Claims.ClaimsPrincipal user, SecurityOptions o, bool admin, HttpContext? http)
    {
        if (user.Identity?.IsAuthenticated != true) return false;
        if (user.Identity.AuthenticationType is ClientCertificateAuthentication.SchemeName && http is not null && CrossSiteBrowserWrite(http.Request))
            return false;
        if (user.Identity.AuthenticationType is ApiKeyAuthentication.SchemeName or ClientCertificateAuthentication.SchemeName)
            return !admin || user.HasClaim(ApiKeyAuthentication.RoleClaim, "admin");
        string needed = admin ? o.Jwt.AdminScope : o.Jwt.EvaluateScope;
        return user.FindAll("scope").Concat(user.FindAll("scp")).SelectMany(c => c.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Contains(needed);
    }

    /// <summary>
    /// A browser sends a client certificate by itself, so a page of another site could make an operator's browser post
    /// with it (cross-site request forgery: a dead-letter replay, an evaluation in the operator's name). Browsers say
    /// where a request comes from: Sec-Fetch-Site, else Origin. Such a write is not taken as the certificate holder's.
    /// API keys and bearer tokens are headers a page of another site cannot add, and integration engines send neither
    /// browser header.
    /// </summary>
    private static bool CrossSiteBrowserWrite(HttpRequest req)
    {
        if (HttpMethods.IsGet(req.Method) || HttpMethods.IsHead(req.Method) || HttpMethods.IsOptions(req.Method)) return false;
        string? site = req.Headers["Sec-Fetch-Site"];
        if (site is not null) return site is not ("same-origin" or "none");
        string? origin = req.Headers.Origin;
        return origin is not null && !string.Equals(origin, $"{req.Scheme}://{req.Host}", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// Whether a trusted proxy is configured (MagCds:Proxies): then callers from beyond this machine come in through it,
    /// even to a loopback address, and the loopback-only rules (no authentication, CDS Hooks development mode) do not hold.
    /// </summary>
    public static bool BehindProxy(IConfiguration config) =>
        config.GetSection(Hosting.ProxyOptions.Section).Get<Hosting.ProxyOptions>()?.AnyConfigured == true;

    /// <summary>Whether any configured URL listens beyond loopback (0.0.0.0, *, +, a host name or a non-loopback IP).</summary>
    public static bool ListensBeyondLoopback(IConfiguration config)
    {
        string urls = config["urls"] ?? config["Urls"] ?? config["ASPNETCORE_URLS"] ?? "";
        var kestrel = config.GetSection("Kestrel:Endpoints").GetChildren().Select(e => e["Url"]).OfType<string>().ToList();
        // Without URLs the host binds every interface on the ports of HTTP_PORTS/HTTPS_PORTS (as the official
        // ASP.NET container image sets them).
        if (string.IsNullOrWhiteSpace(urls) && kestrel.Count == 0
            && new[] { "http_ports", "https_ports", "HTTP_PORTS", "HTTPS_PORTS", "ASPNETCORE_HTTP_PORTS", "ASPNETCORE_HTTPS_PORTS", "DOTNET_HTTP_PORTS", "DOTNET_HTTPS_PORTS" }
                .Any(k => !string.IsNullOrWhiteSpace(config[k])))
            return true;
        foreach (var url in urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Concat(kestrel))
        {
            string host = url.Replace("://*", "://any", StringComparison.Ordinal).Replace("://+", "://any", StringComparison.Ordinal);
            if (!Uri.TryCreate(host, UriKind.Absolute, out var u)) return true;
            if (u.Host == "localhost") continue;
            if (!System.Net.IPAddress.TryParse(u.Host.Trim('[', ']'), out var ip) || !System.Net.IPAddress.IsLoopback(ip)) return true;
        }
        return false;
    }

    /// <summary>401 and 403 as OperationOutcomes with MagCds codes, like every other refusal.</summary>
    private sealed class RefusalAsOperationOutcome : IAuthorizationMiddlewareResultHandler
    {
        private readonly AuthorizationMiddlewareResultHandler _default = new();

        public async Task HandleAsync(RequestDelegate next, HttpContext http, AuthorizationPolicy policy, PolicyAuthorizationResult result)
        {
            if (result.Succeeded) { await _default.HandleAsync(next, http, policy, result); return; }
            var (status, code, text) = Refusal(http);
            await new FhirResult(Outcomes.Error(http, code, text), Hosting.FhirErrorHandler.ErrorFormat(http.Request), status).ExecuteAsync(http);
        }

        private static (int Status, OutcomeCode Code, string Text) Refusal(HttpContext http)
        {
            if (http.User.Identity?.IsAuthenticated == true)
                return (StatusCodes.Status403Forbidden, OutcomeCodes.Forbidden, "The caller is not allowed to use this endpoint (scope, key or certificate).");
            // A 401 must name a challenge (RFC 9110 §11.6.1): a bearer token when JWTs are configured, the X-API-Key
            // header when keys are. A client certificate is asked for by TLS, with no challenge HTTP can name, so when
            // certificates are all that is configured the refusal is a 403, as ASP.NET's certificate handler answers.
            var o = http.RequestServices.GetRequiredService<IOptions<SecurityOptions>>().Value;
            string[] challenges = [.. o.Jwt.IsConfigured ? ["Bearer"] : Array.Empty<string>(), .. o.ApiKeys.Count > 0 ? ["ApiKey header=\"X-API-Key\""] : Array.Empty<string>()];
            if (challenges.Length == 0)
                return o.ClientCertificates.IsConfigured
                    ? (StatusCodes.Status403Forbidden, OutcomeCodes.CertificateRequired, "A client certificate that MagCds accepts is required (presented in the TLS handshake).")
                    // Nothing configured (loopback only): no credentials exist that could open an admin endpoint.
                    : (StatusCodes.Status403Forbidden, OutcomeCodes.Forbidden, "No credentials are configured for this endpoint (MagCds:Security), so nobody may use it.");
            http.Response.Headers.WWWAuthenticate = challenges;
            return (StatusCodes.Status401Unauthorized, OutcomeCodes.Unauthorized, "Authentication is required: an X-API-Key header, a bearer token or a client certificate, as configured.");
        }
    }
}
