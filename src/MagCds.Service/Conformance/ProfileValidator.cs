using Firely.Fhir.Validation;
using Hl7.Fhir.Model;
using Hl7.Fhir.Specification.Source;
using Hl7.Fhir.Specification.Terminology;

namespace MagCds.Service.Conformance;

/// <summary>
/// The Firely validator over the MagCds package and the base R4 specification (offline, specification.zip next to
/// the assembly). Built on first use and warmed up in the background (<see cref="ConformanceWarmUp"/>), so the
/// evaluation doors never wait for it: $validate is a tool for integration engineers, not a clinical path.
/// </summary>
public sealed class ProfileValidator
{
    private readonly Lazy<Validator> _validator;
    // The validator's thread safety is not documented; $validate is low-volume, so calls are serialised.
    private readonly Lock _gate = new();

    public ProfileValidator(ConformancePackage package)
    {
        _validator = new Lazy<Validator>(() =>
        {
            var spec = ZipSource.CreateValidationSource(Path.Combine(AppContext.BaseDirectory, "specification.zip"));
            var resolver = new CachedResolver(new MultiResolver(new InMemoryResourceResolver(package.Resources), spec));
            return new Validator(resolver, LocalTerminologyService.CreateDefaultForCore(resolver));
        });
    }

    public bool IsWarm { get; private set; }

    /// <summary>Validates against the base specification and <paramref name="profile"/> (and any profile the resource claims).</summary>
    public OperationOutcome Validate(Resource resource, string? profile = null)
    {
        lock (_gate)
        {
            var outcome = profile is null ? _validator.Value.Validate(resource) : _validator.Value.Validate(resource, profile);
            IsWarm = true;
            return outcome;
        }
    }
}
