using MagCds.Core.Evaluation;
using MagCds.Core.Knowledge;
using MagCds.Service.CdsHooks;
using MagCds.Service.FhirRest;
using MagCds.Service.Storage;
using MagCds.Service.Worker;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Http.Resilience;
using MagCds.Service.Hosting;
using Microsoft.Extensions.Options;
using Serilog;
using Serilog.Formatting.Compact;

// Registration extensions live in the framework's namespace so Program.cs reads as a list of capabilities.
namespace Microsoft.Extensions.DependencyInjection;

public static class MagCdsHostingExtensions
{
    /// <summary>
    /// The evaluation core: the knowledge (checked when loaded) and the evaluator, both singletons (pure and
    /// thread-safe). <see cref="LoadMagCdsKnowledge"/> loads them at start-up so a broken file stops the service.
    /// </summary>
    public static IServiceCollection AddMagCdsCore(this IServiceCollection services, IConfiguration config)
    {
        services.AddOptions<MagCdsOptions>().Bind(config.GetSection(MagCdsOptions.Section))
            .Validate(o => o.AdditionalCodes.All(c => c.Split('|') is [{ Length: > 0 }, { Length: > 0 }]),
                "MagCds:AdditionalCodes entries must be 'system|code', e.g. 'urn:oid:1.2.3|MAGM'.")
            .Validate(o => MagCds.Core.CanonicalUrls.IsValidBase(o.CanonicalBase),
                "MagCds:CanonicalBase must be an absolute http(s) URL without a trailing slash, query or fragment.")
            .ValidateOnStart();
        services.AddSingleton(sp => new MagCds.Core.CanonicalUrls(sp.GetRequiredService<IOptions<MagCdsOptions>>().Value.CanonicalBase));
        services.AddSingleton(sp => KnowledgeLoader.Load(sp.GetRequiredService<IOptions<MagCdsOptions>>().Value.KnowledgeFile));
        services.AddSingleton(sp => new Evaluator(sp.GetRequiredService<KnowledgeBase>(),
            new EvaluationOptions
            {
                AdditionalCodes = sp.GetRequiredService<IOptions<MagCdsOptions>>().Value.AdditionalCodes,
                Canonical = sp.GetRequiredService<MagCds.Core.CanonicalUrls>(),
            }));
        return services;
    }

    /// <summary>Loads and checks the knowledge now, before the service listens (throws <see cref="KnowledgeInvalidException"/>).</summary>
    public static WebApplication LoadMagCdsKnowledge(this WebApplication app)
    {
        app.Services.GetRequiredService<Evaluator>();
        return app;
    }

    /// <summary>The FHIR REST door: its options, the conformance package and its validator, and OperationOutcome error answers.</summary>
    public static IServiceCollection AddFhirRestDoor(this IServiceCollection services, IConfiguration config)
    {
        services.AddOptions<FhirRestOptions>().Bind(config.GetSection($"{MagCdsOptions.Section}:FhirRest")).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton(sp => MagCds.Service.Conformance.ConformancePackage.FromEmbedded(sp.GetRequiredService<Evaluator>()));
        services.AddSingleton<MagCds.Service.Conformance.ProfileValidator>();
        services.AddHostedService<MagCds.Service.Conformance.ConformanceWarmUp>();
        services.AddExceptionHandler<FhirErrorHandler>();
        // A query or route value of the wrong kind (max=abc) is thrown to the error handler, which answers it with an
        // OperationOutcome; by default minimal APIs answer an empty 400.
        services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        return services;
    }

    /// <summary>The web console (/console): its preview runs the doors' own code, so it needs them registered.</summary>
    public static IServiceCollection AddMagCdsConsole(this IServiceCollection services)
    {
        services.AddSingleton<MagCds.Service.Console.ConsolePreview>();
        return services;
    }

    /// <summary>The durable store (SQLite by default, PostgreSQL for replicas): CDS Hooks feedback and the worker's queue.</summary>
    public static IServiceCollection AddMagCdsStore(this IServiceCollection services, IConfiguration config)
    {
        services.AddOptions<StoreOptions>().Bind(config.GetSection(StoreOptions.Section)).ValidateDataAnnotations()
            .Validate(o => o.Provider != StoreProvider.Postgres || !string.IsNullOrWhiteSpace(o.PostgresConnectionString),
                "MagCds:Store:PostgresConnectionString is required when MagCds:Store:Provider is Postgres.")
            .ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<Database>();
        services.AddSingleton<SqliteCheckpointer>();
        services.AddHostedService(sp => sp.GetRequiredService<SqliteCheckpointer>());
        services.AddSingleton<FeedbackStore>();
        services.AddSingleton<WorkQueue>();
        services.AddSingleton<ReplayGuard>();
        services.AddOptions<MagCds.Service.Audit.AuditOptions>().Bind(config.GetSection(MagCds.Service.Audit.AuditOptions.Section)).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<MagCds.Service.Audit.AuditTrail>();
        services.AddHostedService(sp => sp.GetRequiredService<MagCds.Service.Audit.AuditTrail>());
        services.AddSingleton<Retention>();
        services.AddHostedService(sp => sp.GetRequiredService<Retention>());
        return services;
    }

    /// <summary>The CDS Hooks door: services, JWT check, FHIR fallback queries (resilient), cards, feedback, CORS.</summary>
    public static IServiceCollection AddCdsHooksDoor(this IServiceCollection services, IConfiguration config)
    {
        string[] asymmetric = ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
        services.AddOptions<CdsHooksOptions>().Bind(config.GetSection(CdsHooksOptions.Section))
            .PostConfigure(o => { if (o.Algorithms.Count == 0) o.Algorithms.AddRange(CdsHooksOptions.DefaultAlgorithms); })
            .ValidateDataAnnotations()
            // Keys fetched in clear text could be swapped on the way: https, or http only on this machine (tests).
            .Validate(o => o.TrustedIssuers.All(i => new[] { i.JwksUrl }.Concat(i.AllowedJku).Where(u => !string.IsNullOrEmpty(u)).All(u => SafeKeyUrl(u!))),
                "MagCds:CdsHooks:TrustedIssuers JwksUrl and AllowedJku must be https URLs (http only for a loopback host).")
            // Development mode answers anyone with cards and makes MagCds query any fhirServer a caller names.
            .Validate(o => !o.AllowUnsignedCalls || !(MagCds.Service.Security.Access.ListensBeyondLoopback(config) || MagCds.Service.Security.Access.BehindProxy(config)),
                "MagCds:CdsHooks:AllowUnsignedCalls (development mode: calls without a JWT) is allowed only while MagCds listens on loopback (127.0.0.1) with no trusted proxy (MagCds:Proxies) in front of it.")
            .Validate(o => o.Algorithms.Count > 0 && o.Algorithms.All(asymmetric.Contains),
                "MagCds:CdsHooks:Algorithms may only name asymmetric algorithms (CDS Hooks forbids none and HMAC), e.g. ES384, RS384.")
            .Validate(o => o.TrustedIssuers.All(i => !string.IsNullOrEmpty(i.Issuer) && (i.JwksUrl is not null || i.JwksFile is not null || i.AllowedJku.Count > 0)),
                "Each MagCds:CdsHooks:TrustedIssuers entry needs Issuer and a key source: JwksUrl, JwksFile or AllowedJku.")
            .Validate(o => o.TrustedIssuers.All(i => i.FhirServers.All(s => Uri.TryCreate(s, UriKind.Absolute, out var u) && u.Scheme is "https" or "http")),
                "A MagCds:CdsHooks:TrustedIssuers FhirServers entry must be an absolute http(s) base URL.")
            .Validate(o => o.TrustedIssuers.All(i => i.JwksFile is null || File.Exists(i.JwksFile)),
                "A MagCds:CdsHooks:TrustedIssuers JwksFile does not exist.")
            // A JWT's aud must name this service's URL as the EHR registered it. Taken from the request instead, it
            // would follow the caller's Host header, so a token minted for another CDS service could be replayed here.
            .Validate(o => o.TrustedIssuers.Count == 0
                           || (Uri.TryCreate(o.PublicBaseUrl, UriKind.Absolute, out var u) && u.Scheme is "https" or "http"),
                "MagCds:CdsHooks:PublicBaseUrl (the absolute URL EHRs call, e.g. https://magcds.hospital.org) is required when TrustedIssuers is set: JWT aud is checked against it.")
            .ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<CdsServiceCatalog>();
        services.AddSingleton<CardBuilder>();
        services.AddSingleton<PatientResults>();
        services.AddSingleton<CdsHooksMetrics>();
        services.AddSingleton<FhirServerRefusals>();
        services.AddSingleton(new FhirServerPipelines());
        services.AddSingleton<JwksProvider>();
        services.AddSingleton<CdsJwtValidator>();

        // No HttpClient request logging at all: its lines carry URLs with patient ids (no PHI in logs).
        services.ConfigureHttpClientDefaults(b => b.RemoveAllLoggers());
        var fhirTimeout = config.GetSection(CdsHooksOptions.Section).Get<CdsHooksOptions>()?.FhirQueryTimeoutSeconds ?? new CdsHooksOptions().FhirQueryTimeoutSeconds;
        // Redirects are not followed: the fhirServer a call names (and the access token sent with it) is where MagCds
        // reads, not wherever that server points.
        services.AddHttpClient(PatientResults.HttpClientName).ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AllowAutoRedirect = false })
            .AddStandardResilienceHandler(o =>
            {
                // Retries (408/429/5xx, with backoff and jitter) and the circuit breaker stay inside the time a hook call can wait.
                var total = TimeSpan.FromSeconds(fhirTimeout);
                o.TotalRequestTimeout.Timeout = total;
                o.AttemptTimeout.Timeout = total / 2;
                o.Retry.Delay = TimeSpan.FromMilliseconds(100);
            })
            // One circuit breaker per FHIR server, up to a bound (FhirServerPipelines).
            .SelectPipelineBy(sp => sp.GetRequiredService<FhirServerPipelines>().KeyOf);
        // Redirects are not followed: the jku allow-list names the URL keys come from, not wherever it points. A known
        // key never waits for this client (JwksProvider refreshes beside the call); an unknown kid waits at most 10 s.
        services.AddHttpClient(JwksProvider.HttpClientName).ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AllowAutoRedirect = false })
            .AddStandardResilienceHandler(o =>
            {
                o.TotalRequestTimeout.Timeout = TimeSpan.FromSeconds(10);
                o.AttemptTimeout.Timeout = TimeSpan.FromSeconds(4);
                o.Retry.Delay = TimeSpan.FromMilliseconds(200);
            })
            // One pipeline per key server: unlike FHIR servers these come only from configuration (JwksUrl, AllowedJku),
            // so they are few and need no bound.
            .SelectPipelineByAuthority();

        services.AddCors();
        services.AddOptions<Microsoft.AspNetCore.Cors.Infrastructure.CorsOptions>().Configure<IOptions<CdsHooksOptions>>((cors, cds) =>
            cors.AddPolicy(CdsHooksEndpoints.CorsPolicy, p => p
                .WithOrigins([.. cds.Value.AllowedOrigins])
                .WithHeaders("Authorization", "Content-Type")
                .WithMethods("GET", "POST")
                // A browser client (the sandbox) may keep the answer to its preflight for 10 minutes instead of asking
                // again before every hook call.
                .SetPreflightMaxAge(TimeSpan.FromMinutes(10))));
        return services;
    }

    /// <summary>A token sent there cannot be read or replaced on the way: an https URL, or one on this machine.</summary>
    private static bool SecureOrLoopback(string? url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var u) && (u.Scheme == Uri.UriSchemeHttps || (u.Scheme == Uri.UriSchemeHttp && u.IsLoopback));

    /// <summary>
    /// The FHIR server door: a background worker that watches one FHIR server (subscriptions and polling), assesses
    /// each anti-MAG Observation and writes the results back; its notification and admin endpoints. Off by default.
    /// </summary>
    public static IServiceCollection AddFhirServerWorker(this IServiceCollection services, IConfiguration config)
    {
        services.AddOptions<WorkerOptions>().Bind(config.GetSection(WorkerOptions.Section)).ValidateDataAnnotations()
            .Validate(o => !o.Enabled || Uri.TryCreate(o.FhirServerUrl, UriKind.Absolute, out var u) && u.Scheme is "http" or "https",
                "MagCds:Worker:FhirServerUrl must be an absolute http(s) URL when the worker is enabled.")
            .Validate(o => !o.Enabled || o.Auth == OutboundAuth.None || (SecureOrLoopback(o.FhirServerUrl) && (o.Auth != OutboundAuth.SmartBackend || SecureOrLoopback(o.Smart.TokenUrl))),
                "MagCds:Worker sends credentials (Auth Bearer or SmartBackend) only over https: FhirServerUrl and Smart:TokenUrl must be https URLs unless they are on this machine (loopback).")
            .Validate(o => o.Auth != OutboundAuth.Bearer || !string.IsNullOrEmpty(o.BearerToken),
                "MagCds:Worker:BearerToken is required when MagCds:Worker:Auth is Bearer.")
            .Validate(o => o.Auth != OutboundAuth.SmartBackend || (Uri.TryCreate(o.Smart.TokenUrl, UriKind.Absolute, out _) && !string.IsNullOrEmpty(o.Smart.ClientId)
                                                                  && File.Exists(o.Smart.PrivateKeyFile) && o.Smart.Algorithm is "RS384" or "ES384"),
                "MagCds:Worker:Auth SmartBackend needs Smart:TokenUrl (absolute), Smart:ClientId, an existing Smart:PrivateKeyFile and Smart:Algorithm RS384 or ES384.")
            // A key that cannot be read would fail every token request, and with it every item, as a dead letter.
            .Validate(o => o.Auth != OutboundAuth.SmartBackend || !File.Exists(o.Smart.PrivateKeyFile) || o.Smart.Algorithm is not ("RS384" or "ES384") || SmartBackendTokens.CanLoad(o.Smart),
                "MagCds:Worker:Smart:PrivateKeyFile cannot be read as a PEM private key for Smart:Algorithm (RSA for RS384, EC P-384 for ES384).")
            .Validate(o => !o.Subscription.Create || (!string.IsNullOrEmpty(o.Subscription.Secret) && Uri.TryCreate(o.Subscription.EndpointUrl, UriKind.Absolute, out _)),
                "MagCds:Worker:Subscription:Create needs Subscription:Secret and an absolute Subscription:EndpointUrl.")
            .Validate(o => o.Subscription.TopicUrl is null || Uri.TryCreate(o.Subscription.TopicUrl, UriKind.Absolute, out _),
                "MagCds:Worker:Subscription:TopicUrl must be the absolute canonical URL of a SubscriptionTopic.")
            .Validate(o => o.Subscription.Secret is null || o.Subscription.Secret.Length >= 16,
                "MagCds:Worker:Subscription:Secret must be at least 16 characters (anyone who guesses it can make MagCds poll the FHIR server at will).")
            .Validate(o => o.Subscription.PayloadContent is "id-only" or "full-resource" or "empty" && o.Subscription.HeartbeatSeconds is >= 0 and <= 86400,
                "MagCds:Worker:Subscription:PayloadContent must be id-only, full-resource or empty, and HeartbeatSeconds between 0 and 86400.")
            .ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton<IValidateOptions<WorkerOptions>, PollFromValidation>();
        services.AddSingleton<WorkerFhirClient>();
        services.AddSingleton<WorkerSignal>();
        services.AddSingleton<WorkerMetrics>();
        services.AddSingleton<AssessmentWriter>();
        services.AddSingleton<Poller>();
        services.AddSingleton<SubscriptionSetup>();
        services.AddSingleton<EventRecovery>();
        services.AddSingleton<SmartBackendTokens>();
        // The client assertion goes to the configured token URL only, never to where a redirect points.
        services.AddHttpClient(SmartBackendTokens.HttpClientName).ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AllowAutoRedirect = false })
            .AddStandardResilienceHandler();
        services.AddTransient<OutboundAuthHandler>();
        services.AddSingleton<ServerClock>();
        services.AddTransient<ServerClockHandler>();
        services.AddTransient<ServerPauseGate>();
        var timeout = TimeSpan.FromSeconds(config.GetSection(WorkerOptions.Section).Get<WorkerOptions>()?.RequestTimeoutSeconds ?? new WorkerOptions().RequestTimeoutSeconds);
        // Outermost, the pause the server asked for: nothing is sent, not even a token fetched, while it lasts.
        // Redirects are not followed: the worker reads and writes only under FhirServerUrl, and what another address
        // answers is not the watched server's data (a redirect is a dead letter naming its status).
        var workerClient = services.AddHttpClient(WorkerFhirClient.HttpClientName)
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler { AllowAutoRedirect = false })
            .AddHttpMessageHandler<ServerPauseGate>()
            .AddHttpMessageHandler<OutboundAuthHandler>();
        workerClient.AddStandardResilienceHandler(o =>
            {
                // Retries with backoff and jitter on 408/429/5xx and timeouts, and a circuit breaker, inside one total
                // time per call; what still fails goes back to the queue with a longer backoff (WorkerService).
                o.TotalRequestTimeout.Timeout = timeout;
                o.AttemptTimeout.Timeout = timeout / 3;
                // A write (the transaction POST, a PUT) is sent once: one that timed out or got a 502 may still be
                // running on the server, and a second copy racing it can make conditional creates create twice. The
                // queue retries it after its backoff, from a fresh read; a write has the whole time to run.
                // (Marked "for evaluation" by the library, so its warning is silenced here; the version is pinned centrally.)
#pragma warning disable EXTEXP0001
                Microsoft.Extensions.Http.Resilience.HttpRetryStrategyOptionsExtensions.DisableForUnsafeHttpMethods(o.Retry);
                o.AttemptTimeout.TimeoutGenerator = args => ValueTask.FromResult(
                    Polly.HttpResilienceContextExtensions.GetRequestMessage(args.Context)?.Method is { } m && (m == HttpMethod.Get || m == HttpMethod.Head) ? timeout / 3 : timeout);
#pragma warning restore EXTEXP0001
                o.CircuitBreaker.SamplingDuration = timeout * 2 > TimeSpan.FromSeconds(30) ? timeout * 2 : TimeSpan.FromSeconds(30);
            });
        // Inside the retries, so that it sees every attempt's answer (a Retry-After is read even when the call then
        // ends in its time-out).
        workerClient.AddHttpMessageHandler<ServerClockHandler>();
        if (config.GetValue<bool>($"{WorkerOptions.Section}:Enabled")) services.AddHostedService<WorkerService>();
        return services;
    }

    private static bool SafeKeyUrl(string url) =>
        Uri.TryCreate(url, UriKind.Absolute, out var u) && (u.Scheme == Uri.UriSchemeHttps || (u.Scheme == Uri.UriSchemeHttp && u.IsLoopback));

    /// <summary>Health probes: live (the process answers) and ready (knowledge, store, warm-up).</summary>
    public static IServiceCollection AddMagCdsHealth(this IServiceCollection services)
    {
        services.AddSingleton<WarmUp>();
        services.AddHostedService(sp => sp.GetRequiredService<WarmUp>());
        services.AddHealthChecks()
            .AddCheck<KnowledgeHealthCheck>("knowledge", tags: [Health.ReadyTag])
            .AddCheck<StoreHealthCheck>("store", tags: [Health.ReadyTag])
            .Add(new Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckRegistration("warm-up", sp => sp.GetRequiredService<WarmUp>(), null, [Health.ReadyTag]));
        return services;
    }

    /// <summary>
    /// Serilog: compact JSON on the console; levels and extra sinks (file, Seq, OpenTelemetry) from the Serilog
    /// configuration section; sinks registered in DI join in. FHIR resources, tokens and principals given to a log call
    /// are replaced by their type name (<see cref="NoPhiDestructuring"/>) before any sink sees them, so a careless log
    /// line cannot carry PHI.
    /// </summary>
    public static IServiceCollection AddMagCdsLogging(this IServiceCollection services) =>
        // The configuration is the host's final one (read when the logger is built), with every override applied.
        // Safe levels first, for a start without appsettings.json: ASP.NET Core's own request lines carry paths and query strings.
        services.AddSerilog((sp, lc) => lc
            .MinimumLevel.Information()
            .MinimumLevel.Override("Microsoft.AspNetCore", Serilog.Events.LogEventLevel.Warning)
            .MinimumLevel.Override("System.Net.Http.HttpClient", Serilog.Events.LogEventLevel.Warning)
            .MinimumLevel.Override("Polly", Serilog.Events.LogEventLevel.Warning)
            // The certificate handler names a refused certificate's subject (a person's name, or text a stranger chose).
            .MinimumLevel.Override("Microsoft.AspNetCore.Authentication.Certificate", Serilog.Events.LogEventLevel.Error)
            // The time limit's middleware logs each 504 with a stack trace; RequestTimeouts logs it in one line.
            .MinimumLevel.Override("Microsoft.AspNetCore.Http.Timeouts", Serilog.Events.LogEventLevel.Error)
            .ReadFrom.Configuration(sp.GetRequiredService<IConfiguration>())
            .ReadFrom.Services(sp)
            .Destructure.With<NoPhiDestructuring>()
            .Enrich.FromLogContext()
            .Enrich.With<NoPhiEnricher>()
            .WriteTo.Console(new RenderedCompactJsonFormatter()));
}
