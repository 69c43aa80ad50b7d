using System.Net;
using System.Security.Cryptography;
using MagCds.Service.Worker;
using MagCds.Tests.Support;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MagCds.Tests.Worker;

/// <summary>
/// The token request MagCds sends by default has the shape SMART App Launch 2.x Backend Services prescribes (the
/// integration test against OpenIddict uses the rfc7523bis variant that OpenIddict 7 requires), and the token is
/// reused until its renewal time. The token endpoint here only records what it receives.
/// </summary>
public sealed class SmartAssertionTests
{
    private sealed class Recorder : HttpMessageHandler
    {
        public List<Dictionary<string, string>> Forms { get; } = [];

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            var form = (await request.Content!.ReadAsStringAsync(ct)).Split('&')
                .Select(p => p.Split('=', 2)).ToDictionary(p => Uri.UnescapeDataString(p[0]), p => Uri.UnescapeDataString(p[1].Replace('+', ' ')));
            Forms.Add(form);
            return new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent($$"""{"access_token":"token-{{Forms.Count}}","token_type":"bearer","expires_in":300}""") };
        }
    }

    private sealed class Factory(HttpMessageHandler handler) : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => new(handler, disposeHandler: false);
    }

    [Test]
    public async Task The_default_assertion_follows_SMART_Backend_Services_and_the_token_is_cached()
    {
        using var rsa = RSA.Create(2048);
        string pem = Path.Combine(Path.GetTempPath(), $"magcds-smart-{Guid.NewGuid():N}.pem");
        await File.WriteAllTextAsync(pem, rsa.ExportPkcs8PrivateKeyPem());
        try
        {
            var options = new WorkerOptions { Smart = { TokenUrl = "https://auth.example/token", ClientId = "magcds", PrivateKeyFile = pem, KeyId = "k-1" } };
            var clock = new FixedClock(new DateTimeOffset(2026, 11, 26, 8, 0, 0, TimeSpan.Zero));
            var recorder = new Recorder();
            using var tokens = new SmartBackendTokens(new Factory(recorder), Options.Create(options), clock);

            Assert.That(await tokens.GetAsync(CancellationToken.None), Is.EqualTo("token-1"));
            clock.Now += TimeSpan.FromSeconds(200);
            Assert.That(await tokens.GetAsync(CancellationToken.None), Is.EqualTo("token-1"), "reused before its renewal time (expiry - 30 s)");
            clock.Now += TimeSpan.FromSeconds(71);
            Assert.That(await tokens.GetAsync(CancellationToken.None), Is.EqualTo("token-2"), "renewed 30 s before it expires");
            tokens.Invalidate();
            Assert.That(await tokens.GetAsync(CancellationToken.None), Is.EqualTo("token-3"), "a token the server refused is not used again");

            var form = recorder.Forms[0];
            Assert.That(form["grant_type"], Is.EqualTo("client_credentials"));
            Assert.That(form["client_assertion_type"], Is.EqualTo("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
            Assert.That(form["scope"], Is.EqualTo(new SmartBackendOptions().Scope));
            var result = await new JsonWebTokenHandler().ValidateTokenAsync(form["client_assertion"], new TokenValidationParameters
            {
                IssuerSigningKey = new RsaSecurityKey(rsa.ExportParameters(false)),
                ValidIssuer = "magcds", ValidAudience = "https://auth.example/token", ValidAlgorithms = ["RS384"], ValidTypes = ["JWT"],
                LifetimeValidator = (_, _, _, _) => true, // signed at the test clock's time
            });
            Assert.That(result.IsValid, Is.True, result.Exception?.Message);
            var jwt = (JsonWebToken)result.SecurityToken;
            Assert.That((jwt.Kid, jwt.Subject), Is.EqualTo(("k-1", "magcds")));
            Assert.That(jwt.ValidTo - jwt.IssuedAt, Is.LessThanOrEqualTo(TimeSpan.FromMinutes(5)));
            Assert.That(recorder.Forms.Select(f => new JsonWebToken(f["client_assertion"]).Id).Distinct().Count(), Is.EqualTo(3), "a new jti every time");
        }
        finally { File.Delete(pem); }
    }
}
