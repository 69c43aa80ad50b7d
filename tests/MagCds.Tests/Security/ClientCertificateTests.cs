using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Hl7.Fhir.Model;
using MagCds.Tests.Support;

namespace MagCds.Tests.Security;

/// <summary>
/// Client certificates (mTLS) on a real Kestrel HTTPS endpoint: a certificate from the configured CA whose subject
/// is a configured client opens the REST door (an admin one the admin endpoints too). A certificate that does not
/// chain to the CA, is expired or is not for client authentication never gets past the TLS handshake; one of the CA
/// for an unlisted subject, or none at all, is answered 403 certificate-required (a 401 would have to name an HTTP
/// challenge, and none asks for a certificate).
/// </summary>
[NonParallelizable]
public sealed class ClientCertificateTests
{
    private const string Engine = "CN=lab-engine, O=MagCds Test Hospital";
    private const string Operator = "CN=ops-console, O=MagCds Test Hospital";
    private TestCertificates _pki = null!;
    private MagCdsFactory _service = null!;
    private Uri _base = null!;

    [OneTimeSetUp]
    public void Start()
    {
        _pki = new TestCertificates();
        int port = WorkerHarness.FreePort();
        _base = new Uri($"https://127.0.0.1:{port}");
        _service = new MagCdsFactory(new Dictionary<string, string?>
        {
            ["Kestrel:Endpoints:Https:Url"] = _base.ToString(),
            ["Kestrel:Endpoints:Https:Certificate:Path"] = _pki.ServerPfx,
            ["Kestrel:Endpoints:Https:Certificate:Password"] = TestCertificates.ServerPassword,
            ["MagCds:Security:ClientCertificates:CaFile"] = _pki.CaFile,
            // The test CA publishes no revocation list; a hospital CA would, and the default (Online) checks it.
            ["MagCds:Security:ClientCertificates:RevocationMode"] = "NoCheck",
            ["MagCds:Security:ClientCertificates:Clients:0:Name"] = "lab-engine",
            ["MagCds:Security:ClientCertificates:Clients:0:Subject"] = Engine,
            ["MagCds:Security:ClientCertificates:Clients:1:Name"] = "ops-console",
            // Written differently from the certificate (spacing): compared as distinguished names, not as text.
            ["MagCds:Security:ClientCertificates:Clients:1:Subject"] = "CN=ops-console,O=MagCds Test Hospital",
            ["MagCds:Security:ClientCertificates:Clients:1:Admin"] = "true",
        });
        _service.UseKestrel();
        _service.StartServer();
    }

    [TearDown]
    public void ServiceStayedClean() => _service.AssertClean();

    [OneTimeTearDown]
    public void Stop()
    {
        _service.Dispose();
        _pki.Dispose();
    }

    /// <summary>A client that presents <paramref name="certificate"/> (or none) and trusts only the test server's certificate.</summary>
    private HttpClient ClientWith(X509Certificate2? certificate)
    {
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificates = certificate is null ? null : new X509CertificateCollection { certificate },
                RemoteCertificateValidationCallback = (_, server, _, _) => server is not null && server.GetCertHashString() == _pki.Server.GetCertHashString(),
            },
        };
        return new HttpClient(handler) { BaseAddress = _base };
    }

    private static HttpContent Sample() => Http.Raw(TestFiles.Text("Observation-btu-medium.json"), "application/fhir+json");

    [Test]
    public async Task A_configured_client_certificate_opens_the_REST_door_and_names_the_caller()
    {
        using var engine = _pki.Client(Engine);
        using var client = ClientWith(engine);
        using var r = await client.PostAsync(Http.Evaluate, Sample());
        Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(((Parameters)await Http.ReadAsync(r)).Parameter.Select(p => p.Resource).OfType<RiskAssessment>(), Has.Exactly(1).Items);

        // The audit names the client by its configured name.
        using var ops = _pki.Client(Operator);
        using var admin = ClientWith(ops);
        await WorkerHarness.WaitUntilAsync(async () => (await admin.GetStringAsync("/admin/audit?door=fhir-rest")).Contains("\"lab-engine\"", StringComparison.Ordinal),
            "the evaluation is audited with the certificate's client name");
    }

    [Test]
    public async Task Only_an_admin_certificate_opens_the_admin_endpoints()
    {
        using var engine = _pki.Client(Engine);
        using var client = ClientWith(engine);
        using (var r = await client.GetAsync("/admin/audit"))
        {
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { "forbidden" }));
        }
        using var ops = _pki.Client(Operator);
        using var admin = ClientWith(ops);
        using (var r = await admin.GetAsync("/admin/audit"))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [TestCase("Sec-Fetch-Site", "cross-site", HttpStatusCode.Forbidden, TestName = "A cross-site browser post with a client certificate is refused")]
    [TestCase("Sec-Fetch-Site", "same-site", HttpStatusCode.Forbidden, TestName = "A browser post from another origin of the same site with a client certificate is refused")]
    [TestCase("Origin", "https://attacker.example", HttpStatusCode.Forbidden, TestName = "A browser post with a foreign Origin and a client certificate is refused")]
    [TestCase("Sec-Fetch-Site", "same-origin", HttpStatusCode.OK, TestName = "A same-origin browser post with a client certificate is served")]
    [TestCase("Origin", "self", HttpStatusCode.OK, TestName = "A browser post with the service's own Origin and a client certificate is served")]
    public async Task Browser_posts_with_a_client_certificate(string header, string value, HttpStatusCode expected)
    {
        // The browser presents the certificate by itself; where the request comes from decides. An integration engine
        // sends neither header (the tests above).
        using var engine = _pki.Client(Engine);
        using var client = ClientWith(engine);
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Sample() };
        req.Headers.Add(header, value == "self" ? _base.GetLeftPart(UriPartial.Authority) : value);
        using var r = await client.SendAsync(req);
        Assert.That(r.StatusCode, Is.EqualTo(expected));
        if (expected == HttpStatusCode.Forbidden)
            Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { "forbidden" }));

        // Reading stays open to a browser: a GET does not change anything.
        using var ops = _pki.Client(Operator);
        using var admin = ClientWith(ops);
        using var get = new HttpRequestMessage(HttpMethod.Get, "/admin/audit");
        get.Headers.Add(header, value == "self" ? _base.GetLeftPart(UriPartial.Authority) : value);
        using var g = await admin.SendAsync(get);
        Assert.That(g.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [TestCase("none", TestName = "No certificate is answered 403 certificate-required")]
    [TestCase("unknown-subject", TestName = "A certificate from the CA for an unlisted subject is answered 403 certificate-required")]
    public async Task Refused_certificates(string kind)
    {
        using var cert = kind == "none" ? null : _pki.Client("CN=somebody, O=MagCds Test Hospital");
        using var client = ClientWith(cert);
        using var r = await client.PostAsync(Http.Evaluate, Sample());
        Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(r.Headers.WwwAuthenticate, Is.Empty, "no HTTP challenge asks for a certificate");
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { "certificate-required" }));
    }

    [TestCase("other-ca", TestName = "A certificate of a listed subject from another CA is refused in the TLS handshake")]
    [TestCase("expired", TestName = "An expired certificate from the CA is refused in the TLS handshake")]
    [TestCase("server-use", TestName = "A certificate from the CA not meant for client authentication is refused in the TLS handshake")]
    public async Task Refused_in_the_handshake(string kind)
    {
        // Before any request is read: the chain is built against the configured CA only (validity and client-auth use
        // included), without fetching anything the certificate names, so a stranger's certificate cannot make MagCds reach out.
        using var cert = kind switch
        {
            "other-ca" => _pki.Client(Engine, issuer: _pki.OtherCa),
            "expired" => _pki.Client(Engine, expired: true),
            "server-use" => _pki.Client(Engine, serverUseOnly: true),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };
        using var client = ClientWith(cert);
        var e = await Assert.ThrowsAsync<HttpRequestException>(() => client.PostAsync(Http.Evaluate, Sample()));
        Assert.That(e!.HttpRequestError, Is.AnyOf(HttpRequestError.SecureConnectionError, HttpRequestError.ResponseEnded, HttpRequestError.Unknown));
    }
}
