using System.Security.Cryptography;
using Hl7.Fhir.Model;
using MagCds.Service.Storage;
using MagCds.Service.Worker;
using MagCds.Tests.Support;
using Microsoft.IdentityModel.Tokens;
using static MagCds.Tests.Support.WorkerHarness;

namespace MagCds.Tests.Worker;

/// <summary>
/// Outbound SMART Backend Services against a real authorization server (OpenIddict) and a FHIR server that checks
/// every token with it: MagCds gets a token with a private_key_jwt assertion, reuses it while valid, renews it when
/// it runs out, and writes nothing with a key the server does not know.
/// </summary>
[NonParallelizable]
public sealed class SmartBackendTests
{
    private const string ClientId = "magcds-worker";
    private static readonly string Scope = new SmartBackendOptions().Scope;
    private string _dir = null!;
    private AuthorizationServer _auth = null!;
    private FhirTestServer _fhir = null!;
    private RSA _registeredKey = null!;

    [OneTimeSetUp]
    public async Task StartServers()
    {
        _dir = Directory.CreateTempSubdirectory("magcds-smart-").FullName;
        _registeredKey = RSA.Create(2048);
        var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(new RsaSecurityKey(_registeredKey.ExportParameters(false)) { KeyId = "magcds-1" });
        jwk.Alg = "RS384";
        jwk.Use = "sig";
        var jwks = new JsonWebKeySet();
        jwks.Keys.Add(jwk);
        // Tokens live 20 s, so the test sees MagCds renew one.
        _auth = await AuthorizationServer.StartAsync(ClientId, jwks, Scope.Split(' '), TimeSpan.FromSeconds(20));
        _fhir = new FhirTestServer(environment: _auth.FhirServerEnvironment, clientToken: await _auth.TestClientTokenAsync(Scope));
        await _fhir.StartAsync();
    }

    [OneTimeTearDown]
    public async Task StopServers()
    {
        await _fhir.DisposeAsync();
        await _auth.DisposeAsync();
        _registeredKey.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private string WritePem(RSA key)
    {
        string path = Path.Combine(_dir, $"key-{Guid.NewGuid():N}.pem");
        File.WriteAllText(path, key.ExportPkcs8PrivateKeyPem());
        return path;
    }

    private Dictionary<string, string?> Smart(string keyFile) => new()
    {
        ["MagCds:Worker:Auth"] = "SmartBackend",
        ["MagCds:Worker:Smart:TokenUrl"] = _auth.TokenUrl,
        ["MagCds:Worker:Smart:ClientId"] = ClientId,
        ["MagCds:Worker:Smart:PrivateKeyFile"] = keyFile,
        ["MagCds:Worker:Smart:KeyId"] = "magcds-1",
        ["MagCds:Worker:Smart:Algorithm"] = "RS384",
        // OpenIddict 7 follows draft-ietf-oauth-rfc7523bis: the issuer as audience, an explicit assertion type.
        ["MagCds:Worker:Smart:AssertionAudience"] = _auth.BaseUrl + "/",
        ["MagCds:Worker:Smart:AssertionType"] = "client-authentication+jwt",
    };

    [Test]
    public async Task The_worker_authenticates_with_a_signed_assertion_and_reuses_its_token()
    {
        await using var h = await WorkerHarness.CreateAsync(_fhir, StoreProvider.Sqlite);
        var obs = await _fhir.SeedAsync(Result("smart-1", 23.5m, "ACC-SMART-1"));
        int issuedBefore = _auth.TokensIssued;
        await h.StartAsync(Smart(WritePem(_registeredKey)));
        await h.DrainedAsync(1);
        Assert.That((await h.AllAsync<RiskAssessment>()).Single().Basis[0].Reference, Is.EqualTo("Observation/" + obs.Id));

        var requests = await _fhir.RequestsAsync();
        Assert.That(requests.Where(r => r.Status == 401), Is.Empty, "every request carried an active token");
        int polls = requests.Count(r => r.Url.Contains("_lastUpdated", StringComparison.Ordinal));
        Assert.That(_auth.TokensIssued - issuedBefore, Is.EqualTo(1), $"one token for {requests.Count} requests ({polls} polls)");

        // Past the token's renewal time (half of its 20 s), the next polls use a new one.
        await WaitUntilAsync(() => Task.FromResult(_auth.TokensIssued - issuedBefore >= 2), "the token is renewed", 40);
        await Task.Delay(1500);
        Assert.That((await _fhir.RequestsAsync()).Where(r => r.Status == 401), Is.Empty);
    }

    [Test]
    public async Task With_a_key_the_server_does_not_know_nothing_is_read_or_written()
    {
        await using var h = await WorkerHarness.CreateAsync(_fhir, StoreProvider.Sqlite);
        await _fhir.SeedAsync(Result("smart-2", 23.5m, "ACC-SMART-2"));
        using var stranger = RSA.Create(2048);
        await h.StartAsync(Smart(WritePem(stranger)));
        await WaitUntilAsync(() => Task.FromResult(h.Service!.Logs.Lines.Any(l => l.Contains("token-endpoint-", StringComparison.Ordinal))),
            "the refusal of the token endpoint is logged");
        Assert.That((await _fhir.RequestsAsync()).Where(r => r.Method == "GET" && r.Url.StartsWith("/fhir/R4/Observation", StringComparison.Ordinal)), Is.Empty,
            "without a token MagCds does not even ask");
        Assert.That(await h.AllAsync<RiskAssessment>(), Is.Empty);
    }
}
