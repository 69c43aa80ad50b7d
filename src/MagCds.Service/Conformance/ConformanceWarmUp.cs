using Hl7.Fhir.Model;
using MagCds.Core;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Conformance;

/// <summary>
/// Builds the conformance package (parsing the embedded profiles, generating the terminology, PlanDefinition and
/// CapabilityStatement: about a second of CPU) and then loads the validator (it reads the specification and compiles the
/// profiles: seconds more), so the first metadata read and the first $validate are fast. Both start once the service is
/// ready, after the evaluation warm-up: they neither delay readiness nor share the CPU with it. They are resolved here,
/// not injected, because a hosted service's dependencies are built before the host starts listening.
/// </summary>
public sealed partial class ConformanceWarmUp(IServiceProvider services, CanonicalUrls urls, IOptions<FhirRest.FhirRestOptions> options,
    Hosting.WarmUp warmUp, ILogger<ConformanceWarmUp> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.WarmUpValidator) return; // then both are built on first use
        try
        {
            await warmUp.Completed.WaitAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // The host stopped before the service was ready (e.g. its port was taken): nothing to warm up, and no
            // "BackgroundService failed" line to mislead whoever reads why it stopped.
            return;
        }
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        // Neither step can be interrupted; a stop does not wait for them (the host would otherwise hold SIGTERM for seconds).
        await Task.Run(services.GetRequiredService<ConformancePackage>, stoppingToken).WaitAsync(stoppingToken);
        Built(logger, (long)System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);

        started = System.Diagnostics.Stopwatch.GetTimestamp();
        var sample = new Observation
        {
            Status = ObservationStatus.Final,
            Code = new CodeableConcept(CanonicalUrls.Loinc, CanonicalUrls.AntiMagLoinc),
            Subject = new ResourceReference("Patient/warm-up"),
            Value = new Quantity(1, "BTU"),
        };
        var validator = services.GetRequiredService<ProfileValidator>();
        await validator.ValidateAsync(sample, urls.Profile(CanonicalUrls.Profiles.Observation), stoppingToken).WaitAsync(stoppingToken);
        WarmedUp(logger, (long)System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Conformance package built after {ElapsedMs} ms")]
    private static partial void Built(ILogger logger, long elapsedMs);

    [LoggerMessage(Level = LogLevel.Information, Message = "Profile validator ready after {ElapsedMs} ms")]
    private static partial void WarmedUp(ILogger logger, long elapsedMs);
}
