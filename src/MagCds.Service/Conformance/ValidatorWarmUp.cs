using Hl7.Fhir.Model;
using MagCds.Core;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Conformance;

/// <summary>
/// Loads the validator after start-up (it reads the specification and compiles the profiles: seconds of CPU), so the
/// first $validate is fast. It runs beside the service, never before it: readiness does not wait for it.
/// </summary>
public sealed partial class ValidatorWarmUp(ProfileValidator validator, CanonicalUrls urls, IOptions<FhirRest.FhirRestOptions> options,
    ILogger<ValidatorWarmUp> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Value.WarmUpValidator) return;
        await Task.Yield();
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var sample = new Observation
        {
            Status = ObservationStatus.Final,
            Code = new CodeableConcept(CanonicalUrls.Loinc, CanonicalUrls.AntiMagLoinc),
            Subject = new ResourceReference("Patient/warm-up"),
            Value = new Quantity(1, "BTU"),
        };
        await Task.Run(() => validator.Validate(sample, urls.Profile(CanonicalUrls.Profiles.Observation)), stoppingToken);
        WarmedUp(logger, (long)System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Profile validator ready after {ElapsedMs} ms")]
    private static partial void WarmedUp(ILogger logger, long elapsedMs);
}
