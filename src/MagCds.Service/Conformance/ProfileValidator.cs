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
    private readonly Lazy<(Validator Validator, CachedResolver Definitions)> _validator;
    // The validator's thread safety is not documented; $validate is low-volume, so calls are serialised.
    private readonly Lock _gate = new();

    public ProfileValidator(ConformancePackage package)
    {
        _validator = new Lazy<(Validator, CachedResolver)>(() =>
        {
            var spec = ZipSource.CreateValidationSource(Path.Combine(AppContext.BaseDirectory, "specification.zip"));
            var source = new MultiResolver(new InMemoryResourceResolver(package.Resources), spec);
            // The validator compiles each StructureDefinition it needs into a schema it keeps, so the parsed
            // definitions are only needed while a call compiles: that cache is emptied after every call. Kept for the
            // life of the service they held about 75 MB (the R4 base definitions with their snapshots), more than the
            // rest of the service together. The terminology service keeps its own cache of the ValueSets and
            // CodeSystems it expands, which are small and used on every call.
            var definitions = new CachedResolver(source);
            return (new Validator(definitions, LocalTerminologyService.CreateDefaultForCore(new CachedResolver(source))), definitions);
        });
    }

    public bool IsWarm { get; private set; }

    /// <summary>Validates against the base specification and <paramref name="profile"/> (and any profile the resource claims).</summary>
    public OperationOutcome Validate(Resource resource, string? profile = null)
    {
        lock (_gate)
        {
            var (validator, definitions) = _validator.Value;
            try
            {
                var outcome = profile is null ? validator.Validate(resource) : validator.Validate(resource, profile);
                IsWarm = true;
                return outcome;
            }
            finally
            {
                definitions.Clear();
            }
        }
    }
}
