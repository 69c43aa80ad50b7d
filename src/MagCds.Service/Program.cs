using MagCds.Core.Knowledge;
using MagCds.Service.CdsHooks;
using MagCds.Service.Conformance;
using MagCds.Service.Console;
using MagCds.Service.FhirRest;
using MagCds.Service.Knowledge;
using MagCds.Service.Audit;
using MagCds.Service.Hosting;
using MagCds.Service.Security;
using MagCds.Service.Worker;
using Microsoft.Extensions.Options;
using Serilog;

try
{
    var builder = WebApplication.CreateBuilder(args);
    builder.Services
        .AddMagCdsLogging()
        .AddMagCdsCore(builder.Configuration)
        .AddMagCdsStore(builder.Configuration)
        .AddFhirRestDoor(builder.Configuration)
        .AddCdsHooksDoor(builder.Configuration)
        .AddFhirServerWorker(builder.Configuration)
        .AddMagCdsConsole()
        .AddMagCdsAccess(builder.Configuration)
        .AddMagCdsProxies(builder.Configuration)
        .AddMagCdsRateLimits(builder.Configuration)
        .AddMagCdsRequestTimeouts(builder.Configuration)
        .AddMagCdsHealth()
        .AddMagCdsTelemetry(builder.Configuration);

    var app = builder.Build().LoadMagCdsKnowledge().LogAccessMode();
    // The client as a trusted proxy names it, before anything (rate limit, logs, audit) looks at the address.
    app.UseMagCdsProxies();
    app.UseCorrelation();
    app.UseSecurityHeaders();
    // Request logging sits outside the error handler, so it logs the status the caller really gets (a refused
    // request is a 4xx line, not a 500 with an exception).
    app.UseSerilogRequestLogging(RequestLogLine.Configure);
    app.UseExceptionHandler(FhirErrorHandler.Options);
    app.UseCors();
    // Before authentication: failed credentials count against the client's rate too (no unlimited guessing).
    app.UseRateLimiter();
    app.UseAuthentication();
    app.UseAuthorization();
    app.UseMagCdsRequestTimeouts();
    app.MapMagCdsHealth();
    app.MapMagCdsTelemetry();
    app.MapFhirRest();
    app.MapConformance();
    app.MapCdsHooks();
    app.MapWorker();
    app.MapKnowledge();
    app.MapAudit();
    app.MapConsole();
    app.MapFallback(FhirRestEndpoints.NotFound);
    app.Run();
}
catch (Exception e) when (e is KnowledgeInvalidException or OptionsValidationException)
{
    // Broken knowledge or configuration stops the service with a message that says what to fix, not a stack trace.
    // A range check names the member ('Concurrency'), not the setting: the options' section says where it is.
    string where = e is OptionsValidationException { OptionsType: var type } && e.Message.Contains("DataAnnotation", StringComparison.Ordinal)
                   && type.GetField("Section")?.GetValue(null) is string section ? $" (settings under {section})" : "";
    Console.Error.WriteLine($"MagCds cannot start: {e.Message}{where}");
    Environment.ExitCode = 78; // EX_CONFIG
}
catch (InvalidOperationException e) when (e.Source == "Microsoft.Extensions.Configuration.Binder")
{
    // A setting of the wrong kind ("abc" for a number): the binder's message names the setting and the type it needs.
    Console.Error.WriteLine($"MagCds cannot start: {e.Message}");
    Environment.ExitCode = 78;
}
catch (MagCds.Service.Storage.StoreUnavailableException e)
{
    Console.Error.WriteLine($"MagCds cannot start: {e.Message}");
    Environment.ExitCode = 69; // EX_UNAVAILABLE: an orchestrator restarts it; the message says what to check
}
catch (IOException e) when (e.InnerException is Microsoft.AspNetCore.Connections.AddressInUseException)
{
    // Another process (often a previous MagCds still stopping) holds the port: Kestrel's message names the address.
    Console.Error.WriteLine($"MagCds cannot start: {e.Message} Stop the process that listens there, or set another address (--urls, or the environment variable Urls: appsettings.json's Urls outranks ASPNETCORE_URLS).");
    Environment.ExitCode = 69;
}

/// <summary>Entry point, visible to WebApplicationFactory in the tests.</summary>
public partial class Program;
