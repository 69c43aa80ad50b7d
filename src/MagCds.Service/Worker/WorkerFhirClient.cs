using System.Net.Http.Headers;
using Hl7.Fhir.Rest;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Worker;

/// <summary>
/// Firely FhirClients for the watched server, over the named HttpClient <see cref="HttpClientName"/>: standard
/// resilience (retries with backoff and jitter on 408/429/5xx and timeouts, a circuit breaker, a total timeout) and
/// the outbound authentication from configuration.
/// </summary>
public sealed class WorkerFhirClient(IHttpClientFactory http, IOptions<WorkerOptions> options)
{
    public const string HttpClientName = "worker-fhir";

    /// <summary>The server key in the store: its base URL without a trailing slash.</summary>
    public string Server { get; } = (options.Value.FhirServerUrl ?? "").TrimEnd('/');

    public FhirClient Create() => new(Server, http.CreateClient(HttpClientName),
        new FhirClientSettings { PreferredFormat = ResourceFormat.Json, VerifyFhirVersion = false });
}

/// <summary>Adds the configured credentials to every request to the watched server (the token is never logged).</summary>
public sealed class OutboundAuthHandler(IOptions<WorkerOptions> options, SmartBackendTokens smart) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var o = options.Value;
        // Credentials go to the watched server only: a next link (or any URL) the server names elsewhere gets none.
        if (!o.IsWatched(request.RequestUri)) return await base.SendAsync(request, cancellationToken);
        if (o.Auth == OutboundAuth.Bearer)
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", o.BearerToken);
        else if (o.Auth == OutboundAuth.SmartBackend)
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", await smart.GetAsync(cancellationToken));
        var response = await base.SendAsync(request, cancellationToken);
        // A refused token (revoked, or the server's clock runs ahead) is not used again: the retry gets a new one.
        if (o.Auth == OutboundAuth.SmartBackend && response.StatusCode == System.Net.HttpStatusCode.Unauthorized) smart.Invalidate();
        return response;
    }
}
