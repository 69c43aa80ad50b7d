using System.ComponentModel.DataAnnotations;

namespace MagCds.Service.FhirRest;

/// <summary>Options of the FHIR REST door (section MagCds:FhirRest).</summary>
public sealed class FhirRestOptions
{
    /// <summary>Largest accepted body in bytes; larger bodies get 413. The default fits a 10,000-Observation Bundle.</summary>
    [Range(1024, 1L << 31)]
    public long MaxRequestBodyBytes { get; set; } = 32 * 1024 * 1024;

    /// <summary>Build the conformance package and load the profile validator in the background once ready, so the first metadata read and $validate are fast.</summary>
    public bool WarmUpValidator { get; set; } = true;
}
