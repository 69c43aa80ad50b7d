using Hl7.Fhir.Model;
using MagCds.Core;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Conformance;

/// <summary>
/// Loads the validator after start-up (it reads the specification and compiles the profiles: seconds of CPU), so the
/// first $validate is fast. It starts once the service is ready (after the evaluation warm-up, so the two do not share
/// the CPU and delay readiness), and readiness does not wait for it.
/// </summary>
public sealed partial class ValidatorWarmUp(ProfileValidator validator, CanonicalUrls urls, IOptions<FhirRest.FhirRestOptions> options,
    Hosting.WarmUp warmUp, ILogger<ValidatorWarmUp> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.WarmUpValidator) return;
        await warmUp.Completed.WaitAsync(stoppingToken);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var sample = new Observation
        {
            Status = ObservationStatus.Final,
            Code = new CodeableConcept(CanonicalUrls.Loinc, CanonicalUrls.AntiMagLoinc),
            Subject = new ResourceReference("Patient/warm-up"),
            Value = new Quantity(1, "BTU"),
        };
        // Loading cannot be interrupted; a stop does not wait for it (the host would otherwise hold SIGTERM for seconds).
        await Task.Run(() => validator.Validate(sample, urls.Profile(CanonicalUrls.Profiles.Observation)), stoppingToken).WaitAsync(stoppingToken);
        WarmedUp(logger, (long)System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Profile validator ready after {ElapsedMs} ms")]
    private static partial void WarmedUp(ILogger logger, long elapsedMs);
}
