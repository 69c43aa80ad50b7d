using MagCds.Core.Evaluation;
using MagCds.Core.Knowledge;
using MagCds.Service.FhirRest;
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
            .ValidateOnStart();
        services.AddSingleton(sp => KnowledgeLoader.Load(sp.GetRequiredService<IOptions<MagCdsOptions>>().Value.KnowledgeFile));
        services.AddSingleton(sp => new Evaluator(sp.GetRequiredService<KnowledgeBase>(),
            new EvaluationOptions { AdditionalCodes = sp.GetRequiredService<IOptions<MagCdsOptions>>().Value.AdditionalCodes }));
        return services;
    }

    /// <summary>Loads and checks the knowledge now, before the service listens (throws <see cref="KnowledgeInvalidException"/>).</summary>
    public static WebApplication LoadMagCdsKnowledge(this WebApplication app)
    {
        app.Services.GetRequiredService<Evaluator>();
        return app;
    }

    /// <summary>The FHIR REST door: its options, its conformance resources, and OperationOutcome error answers.</summary>
    public static IServiceCollection AddFhirRestDoor(this IServiceCollection services, IConfiguration config)
    {
        services.AddOptions<FhirRestOptions>().Bind(config.GetSection($"{MagCdsOptions.Section}:FhirRest")).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton(sp => new Conformance(sp.GetRequiredService<KnowledgeBase>().Version));
        services.AddExceptionHandler<FhirErrorHandler>();
        return services;
    }

    /// <summary>Serilog, compact JSON on the console; levels and extra sinks from configuration; sinks registered in DI join in.</summary>
    public static IServiceCollection AddMagCdsLogging(this IServiceCollection services, IConfiguration config) =>
        services.AddSerilog((sp, lc) => lc
            .ReadFrom.Configuration(config)
            .ReadFrom.Services(sp)
            .Enrich.FromLogContext()
            .WriteTo.Console(new RenderedCompactJsonFormatter()));
}
