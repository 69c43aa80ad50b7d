using System.Collections.Concurrent;

namespace MagCds.Service.CdsHooks;

/// <summary>
/// Which resilience pipeline (retries, circuit breaker) a query of an EHR's FHIR server runs in: one per server, so one
/// EHR's failing server does not cut the others off. The servers come from the calls (an issuer without
/// <c>FhirServers</c> may name any), and the resilience library keeps every pipeline it was ever asked for, so their
/// number is capped: past the first <see cref="Capacity"/> servers, the others share one pipeline.
/// </summary>
public sealed class FhirServerPipelines(int capacity = FhirServerPipelines.DefaultCapacity)
{
    /// <summary>Far more FHIR servers than one MagCds serves; a few kilobytes each.</summary>
    public const int DefaultCapacity = 200;

    /// <summary>The pipeline of every server beyond the capacity.</summary>
    public const string Shared = "(other FHIR servers)";

    private readonly ConcurrentDictionary<string, bool> _servers = new(StringComparer.Ordinal);
    // Kept beside the dictionary: its Count takes every lock, and past the capacity each request would read it.
    private int _count;

    public int Capacity { get; } = capacity;

    /// <summary>The servers with a pipeline of their own.</summary>
    public IEnumerable<string> Servers => _servers.Keys;

    /// <summary>The pipeline key of a request: its server (scheme, host and port), or <see cref="Shared"/>.</summary>
    public string KeyOf(HttpRequestMessage request)
    {
        if (request.RequestUri is not { IsAbsoluteUri: true } uri) return Shared;
        string server = uri.GetLeftPart(UriPartial.Authority);
        if (_servers.ContainsKey(server)) return server;
        // Calls racing here may each add their server past the count: a bound (capacity plus concurrent calls), not an exact number.
        if (Volatile.Read(ref _count) >= Capacity) return Shared;
        if (_servers.TryAdd(server, true)) Interlocked.Increment(ref _count);
        return server;
    }
}
