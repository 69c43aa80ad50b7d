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
    /// The evaluation core: knowledge loaded and checked now (a broken knowledge file stops start-up with its
    /// message), and the evaluator as a singleton (it is pure and thread-safe).
    /// </summary>
    public static IServiceCollection AddMagCdsCore(this IServiceCollection services, IConfiguration config)
    {
        var options = config.GetSection(MagCdsOptions.Section).Get<MagCdsOptions>() ?? new MagCdsOptions();
        var knowledge = KnowledgeLoader.Load(options.KnowledgeFile);
        services.AddSingleton(knowledge);
        services.AddSingleton(new Evaluator(knowledge, new EvaluationOptions { AdditionalCodes = options.AdditionalCodes }));
        return services;
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
