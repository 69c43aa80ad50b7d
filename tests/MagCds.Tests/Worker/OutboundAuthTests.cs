using System.Net;
using MagCds.Service.Worker;
using Microsoft.Extensions.Options;

namespace MagCds.Tests.Worker;

/// <summary>The worker's credentials reach the watched server only, whatever URL that server's answers name (a next link, say).</summary>
public class OutboundAuthTests
{
    /// <summary>Records what would go on the wire.</summary>
    private sealed class Recorder : HttpMessageHandler
    {
        public List<(Uri Uri, string? Authorization)> Sent { get; } = [];

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Sent.Add((request.RequestUri!, request.Headers.Authorization?.ToString()));
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK));
        }
    }

    private sealed class NoHttp : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => throw new InvalidOperationException("no token endpoint in a Bearer configuration");
    }

    [TestCase("https://fhir.hospital.example/r4/Observation?page=2", "Bearer right-token")]
    [TestCase("https://fhir.hospital.example/r4/Subscription/s1/$events", "Bearer right-token")]
    [TestCase("https://elsewhere.example/r4/Observation?page=2", null)]
    [TestCase("http://fhir.hospital.example/r4/Observation?page=2", null)]
    [TestCase("https://fhir.hospital.example/other/Observation", null)]
    public async Task The_token_is_sent_to_the_watched_server_only(string url, string? expected)
    {
        var options = Options.Create(new WorkerOptions { FhirServerUrl = "https://fhir.hospital.example/r4", Auth = OutboundAuth.Bearer, BearerToken = "right-token" });
        using var smart = new SmartBackendTokens(new NoHttp(), options, TimeProvider.System);
        var recorder = new Recorder();
        using var client = new HttpClient(new OutboundAuthHandler(options, smart) { InnerHandler = recorder });
        using var _ = await client.GetAsync(url);
        Assert.That(recorder.Sent.Single().Authorization, Is.EqualTo(expected));
    }
}
