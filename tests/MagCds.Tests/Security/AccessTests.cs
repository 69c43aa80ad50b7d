using System.Net;
using System.Net.Http.Headers;
using Hl7.Fhir.Model;
using MagCds.Tests.Support;

namespace MagCds.Tests.Security;

/// <summary>
/// Who may call the FHIR REST door and the admin endpoints: API keys, and bearer JWTs from a real authorization server
/// (OpenIddict) with a scope per endpoint. Refusals are OperationOutcomes; public endpoints stay public.
/// </summary>
[NonParallelizable]
public sealed class AccessTests
{
    private const string ClientKey = "engine-key-0123456789";
    private const string AdminKey = "operator-key-0123456789";

    private static HttpContent Sample() => Http.Raw(TestFiles.Text("Observation-btu-medium.json"), "application/fhir+json");

    private static async Task<HttpResponseMessage> SendAsync(HttpClient client, HttpMethod method, string path, HttpContent? body = null, string? apiKey = null, string? bearer = null)
    {
        using var req = new HttpRequestMessage(method, path) { Content = body };
        if (apiKey is not null) req.Headers.Add("X-API-Key", apiKey);
        if (bearer is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        return await client.SendAsync(req);
    }

    [Test]
    public async Task With_no_credentials_configured_the_admin_endpoints_are_closed_with_403_and_no_empty_challenge()
    {
        // Loopback only, nothing configured: the REST door serves anyone, the admin endpoints nobody. A 401 would have
        // to name a challenge (RFC 9110), and no credentials exist that could answer one.
        using var f = new MagCdsFactory();
        using var client = f.CreateClient();
        using var r = await SendAsync(client, HttpMethod.Get, "/admin/audit");
        Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(r.Headers.WwwAuthenticate, Is.Empty);
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { "forbidden" }));
        using var evaluate = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample());
        Assert.That(evaluate.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task Api_keys_open_the_REST_door_and_only_admin_keys_the_admin_endpoints()
    {
        using var f = new MagCdsFactory(new Dictionary<string, string?>
        {
            ["MagCds:Security:ApiKeys:0:Name"] = "lab-engine", ["MagCds:Security:ApiKeys:0:Key"] = ClientKey,
            ["MagCds:Security:ApiKeys:1:Name"] = "operator", ["MagCds:Security:ApiKeys:1:Key"] = AdminKey, ["MagCds:Security:ApiKeys:1:Admin"] = "true",
            ["MagCds:Worker:Enabled"] = "true", ["MagCds:Worker:FhirServerUrl"] = "http://127.0.0.1:9/fhir", // for its admin endpoint
        });
        using var client = f.CreateClient();

        using (var r = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample()))
        {
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(r.Headers.WwwAuthenticate.ToString(), Is.EqualTo("ApiKey header=\"X-API-Key\""), "the challenge that applies: no JWTs are configured");
            Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { "unauthorized" }));
        }
        using (var r = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample(), apiKey: "not-a-key-0123456789"))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        using (var xml = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(TestFiles.Text("Observation-btu-medium.json"), "application/fhir+json") })
        {
            xml.Headers.Accept.ParseAdd("application/fhir+xml");
            using var r = await client.SendAsync(xml);
            Assert.That((r.StatusCode, r.Content.Headers.ContentType?.MediaType), Is.EqualTo((HttpStatusCode.Unauthorized, "application/fhir+xml")), "in the format asked for");
        }
        using (var r = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample(), apiKey: ClientKey))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));

        using (var r = await SendAsync(client, HttpMethod.Get, "/admin/worker", apiKey: ClientKey))
        {
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
            Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { "forbidden" }));
        }
        using (var r = await SendAsync(client, HttpMethod.Get, "/admin/worker", apiKey: AdminKey))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        using (var r = await SendAsync(client, HttpMethod.Post, "/admin/worker/reassess", apiKey: ClientKey))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "queuing work is an admin's too");

        foreach (var open in new[] { "/fhir/metadata", "/health/live", "/knowledge" })
        {
            using var r = await client.GetAsync(open);
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK), open + " stays public");
        }
        Assert.That(f.Logs.Lines.Any(l => l.Contains(ClientKey, StringComparison.Ordinal) || l.Contains(AdminKey, StringComparison.Ordinal)), Is.False, "keys are never logged");
    }

    [Test]
    public async Task Bearer_tokens_need_the_scope_of_the_endpoint()
    {
        await using var auth = await AuthorizationServer.StartAsync("no-backend-client", null,
            ["magcds/evaluate", "magcds/admin", "system/Observation.rs"], resource: "magcds");
        using var f = new MagCdsFactory(new Dictionary<string, string?>
        {
            ["MagCds:Security:Jwt:Authority"] = auth.BaseUrl + "/",
            ["MagCds:Security:Jwt:Audience"] = "magcds",
            ["MagCds:Security:Jwt:RequireHttpsMetadata"] = "false", // the test authority is plain http on loopback
        });
        using var client = f.CreateClient();

        string evaluate = await auth.TestClientTokenAsync("magcds/evaluate");
        string other = await auth.TestClientTokenAsync("system/Observation.rs");
        using (var r = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample(), bearer: evaluate))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        using (var r = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample(), bearer: other))
        {
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden), "a valid token without the scope");
            Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { "forbidden" }));
        }
        using (var r = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample(), bearer: evaluate[..^4] + "AAAA"))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "a token whose signature does not verify");
        using (var r = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample()))
        {
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(r.Headers.WwwAuthenticate.ToString(), Is.EqualTo("Bearer"));
        }
    }

    [Test]
    public async Task A_CDS_Hooks_call_is_not_judged_by_the_REST_identity_provider()
    {
        // An identity provider that accepts connections and never answers: a hook call that consulted it would hang.
        using var idp = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        idp.Start();
        int connections = 0;
        using var stop = new CancellationTokenSource();
        var held = new System.Collections.Concurrent.ConcurrentBag<System.Net.Sockets.TcpClient>();
        _ = Task.Run(async () =>
        {
            try { while (true) { held.Add(await idp.AcceptTcpClientAsync(stop.Token)); Interlocked.Increment(ref connections); } }
            catch (OperationCanceledException) { }
        });
        try
        {
            using var f = new MagCdsFactory(new Dictionary<string, string?>
            {
                ["MagCds:Security:Jwt:Authority"] = $"http://127.0.0.1:{((IPEndPoint)idp.LocalEndpoint).Port}/",
                ["MagCds:Security:Jwt:Audience"] = "magcds",
                ["MagCds:Security:Jwt:RequireHttpsMetadata"] = "false",
                ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true", // the EHR's token is not checked here; only who else looks at it
            });
            using var client = f.CreateClient();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            using var resp = await client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view",
                CdsKit.PatientView("pat-oakhaven", [TestFiles.Resource("Observation-btu-medium.json")]), "an.ehr.token"), timeout.Token);
            Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(Volatile.Read(ref connections), Is.Zero, "the REST identity provider was never contacted");
        }
        finally
        {
            stop.Cancel();
            foreach (var c in held) c.Dispose();
        }
    }

    [Test]
    public async Task Bearer_tokens_are_refused_when_expired_for_another_audience_or_signed_by_another_key()
    {
        // Tokens of five seconds, checked without clock tolerance, so expiry can be seen within the test.
        await using var auth = await AuthorizationServer.StartAsync("no-backend-client", null, ["magcds/evaluate"],
            accessTokenLifetime: TimeSpan.FromSeconds(5), resource: "magcds");
        var settings = new Dictionary<string, string?>
        {
            ["MagCds:Security:Jwt:Authority"] = auth.BaseUrl + "/",
            ["MagCds:Security:Jwt:Audience"] = "magcds",
            ["MagCds:Security:Jwt:ClockSkewSeconds"] = "0",
            ["MagCds:Security:Jwt:RequireHttpsMetadata"] = "false",
        };
        using var f = new MagCdsFactory(settings);
        using var client = f.CreateClient();

        // MagCds reads the authority's metadata and keys on first use; that happens here, not inside the token's lifetime.
        using (var r = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample(), bearer: "not.a.token"))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        string token = await auth.TestClientTokenAsync("magcds/evaluate");
        using (var r = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample(), bearer: token))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the fresh token is good");
        var issued = DateTimeOffset.UtcNow;
        HttpStatusCode status;
        while (true)
        {
            using var r = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample(), bearer: token);
            status = r.StatusCode;
            if (status == HttpStatusCode.Unauthorized)
            {
                Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(r)), Is.EqualTo(new[] { "unauthorized" }));
                break;
            }
            Assert.That(status, Is.EqualTo(HttpStatusCode.OK), "good until it expires");
            Assert.That(DateTimeOffset.UtcNow - issued, Is.LessThan(TimeSpan.FromSeconds(20)), "the same token is refused once expired");
            await Task.Delay(250);
        }

        // The same claims, signed by a key the authorization server does not publish.
        using var otherKey = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        string forged = new Microsoft.IdentityModel.JsonWebTokens.JsonWebTokenHandler().CreateToken(new Microsoft.IdentityModel.Tokens.SecurityTokenDescriptor
        {
            Issuer = auth.BaseUrl + "/",
            Audience = "magcds",
            Claims = new Dictionary<string, object> { ["scope"] = "magcds/evaluate", ["sub"] = AuthorizationServer.TestClientId },
            Expires = DateTime.UtcNow.AddMinutes(5),
            SigningCredentials = new Microsoft.IdentityModel.Tokens.SigningCredentials(
                new Microsoft.IdentityModel.Tokens.ECDsaSecurityKey(otherKey) { KeyId = "not-the-servers" }, "ES256"),
        });
        using (var r = await SendAsync(client, HttpMethod.Post, Http.Evaluate, Sample(), bearer: forged))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "a token signed by another key");

        // A good token of the same server, but MagCds expects another audience.
        settings["MagCds:Security:Jwt:Audience"] = "another-api";
        using var other = new MagCdsFactory(settings);
        using var otherClient = other.CreateClient();
        using (var r = await SendAsync(otherClient, HttpMethod.Post, Http.Evaluate, Sample(), bearer: await auth.TestClientTokenAsync("magcds/evaluate")))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "a token for another audience");
    }
}
