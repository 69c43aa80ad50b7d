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
public sealed partial class ProfileValidator
{
    private readonly Lazy<(Validator Validator, CachedResolver Definitions)> _validator;
    // The validator's thread safety is not documented; $validate is low-volume, so calls are serialised. Waiting is
    // asynchronous and ends with the caller's request: a queue of calls holds no threads.
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly ILogger _logger;
    private int _definitionsRead; // during the current call: > 0 when it read a definition no call had read before
    // Every definition URL ever read. The cache of parsed definitions is emptied after each call, so a call reads again
    // what earlier ones read (cheap, nothing new compiled); only a URL never read before means new compiled schemas
    // whose memory is worth returning. Bounded by the definitions the package and the specification hold.
    private readonly HashSet<string> _everRead = new(StringComparer.Ordinal);

    public ProfileValidator(ConformancePackage package, ILogger<ProfileValidator>? logger = null)
    {
        _logger = logger ?? (ILogger)Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
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
            definitions.Load += (_, e) => { if (_everRead.Add(e.Url)) Interlocked.Increment(ref _definitionsRead); };
            return (new Validator(definitions, LocalTerminologyService.CreateDefaultForCore(new CachedResolver(source))), definitions);
        });
    }

    public bool IsWarm { get; private set; }

    /// <summary>
    /// Validates against the base specification and <paramref name="profile"/> (and any profile the resource claims:
    /// the $validate endpoint leaves only MagCds's own claimed, so the set of definitions ever compiled stays bounded).
    /// </summary>
    public async Task<OperationOutcome> ValidateAsync(Resource resource, string? profile, CancellationToken ct)
    {
        await _gate.WaitAsync(ct);
        try
        {
            // CPU-bound for seconds on a first compile: off the request's thread.
            return await Task.Run(() => Run(resource, profile), CancellationToken.None);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The same, waiting on this thread (the tests' check of every output).</summary>
    public OperationOutcome Validate(Resource resource, string? profile = null)
    {
        _gate.Wait();
        try { return Run(resource, profile); }
        finally { _gate.Release(); }
    }

    private OperationOutcome Run(Resource resource, string? profile)
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
            if (Interlocked.Exchange(ref _definitionsRead, 0) > 0) ReturnMemory();
        }
    }

    /// <summary>
    /// Compiling parses R4 base definitions (tens of MB) that are garbage right after the call. Without a memory
    /// limit the server GC would keep that memory committed for good; one compacting collection returns it to the
    /// operating system. This happens once per profile (the warm-up's MagCds Observation profile, then any other profile
    /// the first time a $validate names it), so its pause is rare; it is logged.
    /// </summary>
    private void ReturnMemory()
    {
        long started = System.Diagnostics.Stopwatch.GetTimestamp();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        MemoryReturned(_logger, (long)System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Profile validator compiled new definitions; their memory was returned by a {PauseMs} ms garbage collection")]
    private static partial void MemoryReturned(ILogger logger, long pauseMs);
}
