using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.Tokens;
using MagCds.Tests.Support;

namespace MagCds.Tests.CdsHooks;

/// <summary>Only a correctly signed, fresh, unreplayed ES384/RS384 token from a trusted issuer for this exact URL gets in.</summary>
public class JwtTests
{
    private CdsKit _kit = null!;
    private MagCdsFactory _factory = null!;
    private HttpClient _client = null!;
    private const string Path = "/cds-services/magcds-patient-view";
    private const string Aud = CdsKit.Base + Path;

    [OneTimeSetUp]
    public void Start()
    {
        _kit = new CdsKit();
        _factory = new MagCdsFactory(_kit.TrustSettings());
        _client = _factory.CreateClient();
    }

    [TearDown]
    public void ServiceStayedClean() => _factory.AssertClean();

    [OneTimeTearDown]
    public void Stop()
    {
        _client.Dispose();
        _factory.Dispose();
        _kit.Dispose();
    }

    private static string Body => CdsKit.PatientView("pat-oakhaven", [TestFiles.Resource("Observation-btu-medium.json")]);

    private async Task<HttpResponseMessage> Call(string? token) => await _client.SendAsync(CdsKit.Post(Path, Body, token));

    [Test]
    public async Task A_valid_ES384_token_is_accepted() =>
        Assert.That((await Call(_kit.Token(Aud))).StatusCode, Is.EqualTo(HttpStatusCode.OK));

    [Test]
    public async Task A_token_signed_by_hand_with_typ_JWT_is_accepted() =>
        // The control for the hand-made tokens below: only their header differs from this one.
        Assert.That((await Call(_kit.TokenWithHeader(Aud, "{\"alg\":\"ES384\",\"typ\":\"JWT\",\"kid\":\"ec-key\"}"))).StatusCode, Is.EqualTo(HttpStatusCode.OK));

    [Test]
    public async Task A_valid_RS384_token_is_accepted() =>
        Assert.That((await Call(_kit.Token(Aud, _kit.RsaKey, SecurityAlgorithms.RsaSha384))).StatusCode, Is.EqualTo(HttpStatusCode.OK));

    /// <summary>Each bad token with the reason MagCds logs for it: the test fails if the token is refused for another reason.</summary>
    private static IEnumerable<TestCaseData> BadTokens()
    {
        TestCaseData C(string name, string reason, Func<CdsKit, string?> make) => new TestCaseData(make, reason).SetArgDisplayNames(name);
        var otherEc = new ECDsaSecurityKey(System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP384));
        yield return C("no token", "no-bearer-token", _ => null);
        yield return C("alg none", "algorithm-not-allowed", _ => CdsKit.UnsignedToken(Aud));
        yield return C("HS256 with a shared secret", "algorithm-not-allowed", k => k.Token(Aud, new SymmetricSecurityKey(new byte[32]) { KeyId = "ec-key" }, SecurityAlgorithms.HmacSha256));
        yield return C("ES256 (not allowed)", "algorithm-not-allowed", k => k.Token(Aud, k.EcKey, SecurityAlgorithms.EcdsaSha256));
        yield return C("expired", "SecurityTokenInvalidLifetimeException", k => k.Token(Aud, issued: DateTime.UtcNow.AddMinutes(-20), expires: DateTime.UtcNow.AddMinutes(-10)));
        // No nbf, as in the spec's example token: iat alone must keep a token from the future out.
        yield return C("iat in the future", "iat-in-future", k => k.Token(Aud, issued: DateTime.UtcNow.AddMinutes(10), expires: DateTime.UtcNow.AddMinutes(15)));
        yield return C("nbf in the future", "SecurityTokenInvalidLifetimeException", k => k.Token(Aud, notBefore: DateTime.UtcNow.AddMinutes(10)));
        yield return C("lifetime over an hour", "lifetime-too-long", k => k.Token(Aud, expires: DateTime.UtcNow.AddHours(3)));
        yield return C("no iat", "no-iat", k => k.TokenWithPayload(CdsKit.PayloadWithout(Aud, "iat")));
        yield return C("no exp", "SecurityTokenInvalidLifetimeException", k => k.TokenWithPayload(CdsKit.PayloadWithout(Aud, "exp")));
        yield return C("no jti", "no-jti", k => k.TokenWithPayload(CdsKit.PayloadWithout(Aud, "jti")));
        yield return C("no kid", "no-kid", k => k.TokenWithHeader(Aud, "{\"alg\":\"ES384\",\"typ\":\"JWT\"}"));
        yield return C("wrong audience", "SecurityTokenInvalidAudienceException", k => k.Token(CdsKit.Base + "/cds-services/other-service"));
        yield return C("audience of discovery", "SecurityTokenInvalidAudienceException", k => k.Token(CdsKit.Base + "/cds-services"));
        yield return C("audience with a trailing slash", "SecurityTokenInvalidAudienceException", k => k.Token(Aud + "/"));
        yield return C("untrusted issuer", "untrusted-issuer", k => k.Token(Aud, issuer: "https://evil.example"));
        yield return C("unknown kid", "unknown-kid", k => k.Token(Aud, new ECDsaSecurityKey(otherEc.ECDsa) { KeyId = "other-kid" }));
        yield return C("known kid, other key", "SecurityTokenInvalidSignatureException", k => k.Token(Aud, new ECDsaSecurityKey(otherEc.ECDsa) { KeyId = "ec-key" }));
        yield return C("jku not allow-listed", "jku-not-allowed", k => k.Token(Aud, header: new Dictionary<string, object> { ["jku"] = "https://evil.example/jwks" }));
        yield return C("garbage", "unreadable", _ => "not.a.jwt");
        yield return C("no typ (REQUIRED, fixed JWT)", "typ", k => k.TokenWithHeader(Aud, "{\"alg\":\"ES384\",\"kid\":\"ec-key\"}"));
        yield return C("typ other than JWT", "typ", k => k.TokenWithHeader(Aud, "{\"alg\":\"ES384\",\"typ\":\"at+jwt\",\"kid\":\"ec-key\"}"));
        // RFC 7515 4.1.11: an extension header the recipient must understand, which MagCds does not (found by a probe).
        yield return C("a crit header MagCds does not understand", "crit", k => k.TokenWithHeader(Aud, "{\"alg\":\"ES384\",\"typ\":\"JWT\",\"kid\":\"ec-key\",\"crit\":[\"foo\"],\"foo\":1}"));
    }

    [TestCaseSource(nameof(BadTokens))]
    public async Task A_bad_token_gets_a_bare_401(Func<CdsKit, string?> make, string reason)
    {
        int before = _factory.Logs.Lines.Count;
        var resp = await Call(make(_kit));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(await resp.Content.ReadAsStringAsync(), Is.Empty, "no detail for the caller");
        Assert.That(resp.Headers.WwwAuthenticate.Single().Scheme, Is.EqualTo("Bearer"), "HTTP: a 401 carries a challenge");
        var rejections = _factory.Logs.Lines.Skip(before).Where(l => l.Contains("CDS Hooks JWT rejected", StringComparison.Ordinal)).ToList();
        Assert.That(rejections, Has.Count.EqualTo(1).And.Some.Contains($"\"Reason\":\"{reason}\""), "refused for the reason this case is about");
    }

    [Test]
    public async Task A_replayed_jti_is_refused()
    {
        string token = _kit.Token(Aud);
        Assert.That((await Call(token)).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await Call(token)).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test]
    public async Task Tokens_never_reach_the_logs()
    {
        string token = _kit.Token(Aud);
        await Call(token);
        await Call(token); // replayed: rejected and logged as such
        Assert.That(_factory.Logs.Lines.Any(l => l.Contains(token.Split('.')[2], StringComparison.Ordinal) || l.Contains(token.Split('.')[1], StringComparison.Ordinal)), Is.False);
        Assert.That(_factory.Logs.Lines.Any(l => l.Contains("replayed-jti", StringComparison.Ordinal)), Is.True, "the reason is logged");
    }
}

/// <summary>The key comes from an allow-listed jku served over real HTTP by a second, minimal Kestrel server.</summary>
public class JkuTests
{
    /// <summary>A minimal Kestrel server answering GET /jwks with <paramref name="answer"/>; returns it and the jku URL.</summary>
    private static async Task<(WebApplication App, string Jku)> JwksServerAsync(Func<IResult> answer)
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        app.MapGet("/jwks", answer);
        await app.StartAsync();
        return (app, app.Urls.Single() + "/jwks");
    }

    private const string PatientView = "/cds-services/magcds-patient-view";

    /// <summary>A patient-view call with a token valid now on <paramref name="clock"/>, its key to be found at <paramref name="jku"/>.</summary>
    private static HttpRequestMessage CallAt(CdsKit kit, string jku, FixedClock clock) => CdsKit.Post(PatientView, CdsKit.PatientView("pat-oakhaven", []),
        kit.Token(CdsKit.Base + PatientView, issued: clock.Now.UtcDateTime, expires: clock.Now.UtcDateTime.AddMinutes(5), header: new Dictionary<string, object> { ["jku"] = jku }));

    /// <summary>MagCds trusting the kit's issuer with keys from <paramref name="jku"/> only (no JWKS file).</summary>
    private static MagCdsFactory TrustingJku(CdsKit kit, string jku, TimeProvider? clock = null)
    {
        var settings = kit.TrustSettings(jku);
        settings.Remove("MagCds:CdsHooks:TrustedIssuers:0:JwksFile");
        return new MagCdsFactory(settings, clock);
    }

    [Test]
    public async Task An_allow_listed_jku_that_redirects_elsewhere_is_not_followed()
    {
        using var kit = new CdsKit();
        var (target, targetJku) = await JwksServerAsync(() => Results.Text(CdsKit.Jwks(kit.EcKey), "application/json"));
        await using var _ = target;
        var (redirect, jku) = await JwksServerAsync(() => Results.Redirect(targetJku));
        await using var __ = redirect;
        await using var factory = TrustingJku(kit, jku);
        var client = factory.CreateClient();
        var clock = new FixedClock(DateTimeOffset.UtcNow);
        Assert.That((await client.SendAsync(CallAt(kit, jku, clock))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized),
            "the keys are taken from the allow-listed URL only");
    }

    [Test]
    public async Task A_token_whose_allow_listed_jku_serves_the_key_is_accepted()
    {
        using var kit = new CdsKit();
        var (jwks, jku) = await JwksServerAsync(() => Results.Text(CdsKit.Jwks(kit.EcKey), "application/json"));
        await using var _ = jwks;
        await using var factory = TrustingJku(kit, jku);
        var client = factory.CreateClient();
        string aud = CdsKit.Base + "/cds-services/magcds-patient-view";
        string body = CdsKit.PatientView("pat-oakhaven", []);
        var ok = await client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body, kit.Token(aud, header: new Dictionary<string, object> { ["jku"] = jku })));
        var noJku = await client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body, kit.Token(aud)));
        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(noJku.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "without jku and without a configured JWKS there is no key");
        await jwks.StopAsync();
    }

    /// <summary>
    /// An issuer configured with a JwksUrl (the usual registration: the EHR publishes its keys at a fixed URL): the
    /// keys come from there, and a key the EHR adds later is found once an unknown kid may trigger a new fetch (30 s).
    /// </summary>
    [Test]
    public async Task An_issuers_JwksUrl_serves_its_keys_and_a_key_added_later_is_picked_up()
    {
        using var kit = new CdsKit();
        var rotated = new ECDsaSecurityKey(System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP384)) { KeyId = "rotated-key" };
        string served = CdsKit.Jwks(kit.EcKey);
        var (jwks, url) = await JwksServerAsync(() => Results.Text(served, "application/json"));
        await using var _ = jwks;
        var settings = kit.TrustSettings();
        settings.Remove("MagCds:CdsHooks:TrustedIssuers:0:JwksFile");
        settings["MagCds:CdsHooks:TrustedIssuers:0:JwksUrl"] = url;
        var clock = new FixedClock(DateTimeOffset.UtcNow);
        await using var factory = new MagCdsFactory(settings, clock);
        var client = factory.CreateClient();
        string body = CdsKit.PatientView("pat-oakhaven", []), aud = CdsKit.Base + PatientView;
        async Task<HttpStatusCode> Call(SecurityKey key) => (await client.SendAsync(CdsKit.Post(PatientView, body,
            kit.Token(aud, key, issued: clock.Now.UtcDateTime, expires: clock.Now.UtcDateTime.AddMinutes(5))))).StatusCode;

        Assert.That(await Call(kit.EcKey), Is.EqualTo(HttpStatusCode.OK), "the key served at the JwksUrl");
        Assert.That(await Call(rotated), Is.EqualTo(HttpStatusCode.Unauthorized), "a key the URL does not serve");
        served = CdsKit.Jwks(kit.EcKey, rotated);
        clock.Now += TimeSpan.FromSeconds(29);
        Assert.That(await Call(rotated), Is.EqualTo(HttpStatusCode.Unauthorized), "no new fetch within 30 s of the last one");
        clock.Now += TimeSpan.FromSeconds(2);
        Assert.That(await Call(rotated), Is.EqualTo(HttpStatusCode.OK), "the EHR's new key, fetched again for its unknown kid");
        Assert.That(await Call(kit.EcKey), Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task Configured_algorithms_replace_the_defaults_rather_than_add_to_them()
    {
        using var kit = new CdsKit();
        var settings = kit.TrustSettings();
        settings["MagCds:CdsHooks:Algorithms:0"] = "ES384";
        await using var factory = new MagCdsFactory(settings);
        var client = factory.CreateClient();
        string body = CdsKit.PatientView("pat-oakhaven", []), aud = CdsKit.Base + PatientView;
        Assert.That((await client.SendAsync(CdsKit.Post(PatientView, body, kit.Token(aud)))).StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((await client.SendAsync(CdsKit.Post(PatientView, body, kit.Token(aud, kit.RsaKey, SecurityAlgorithms.RsaSha384)))).StatusCode,
            Is.EqualTo(HttpStatusCode.Unauthorized), "RS384 was left out");
    }

    [Test]
    public async Task The_aud_does_not_follow_the_callers_host_header()
    {
        using var kit = new CdsKit();
        await using var factory = new MagCdsFactory(kit.TrustSettings());
        var client = factory.CreateClient();
        // A token minted for a service of the same id elsewhere, sent with that service's host name.
        var request = CdsKit.Post("/cds-services/magcds-patient-view", CdsKit.PatientView("pat-oakhaven", []),
            kit.Token("http://other.example/cds-services/magcds-patient-view"));
        request.Headers.Host = "other.example";
        Assert.That((await client.SendAsync(request)).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test]
    public async Task A_failing_jwks_url_is_tried_once_per_30_seconds_not_once_per_call()
    {
        using var kit = new CdsKit();
        int fetches = 0;
        var (jwks, jku) = await JwksServerAsync(() => { Interlocked.Increment(ref fetches); return Results.StatusCode(404); });
        await using var _ = jwks;
        var clock = new FixedClock(DateTimeOffset.UtcNow);
        await using var factory = TrustingJku(kit, jku, clock);
        var client = factory.CreateClient();
        async Task<HttpStatusCode> Call() => (await client.SendAsync(CallAt(kit, jku, clock))).StatusCode;

        Assert.That(await Call(), Is.EqualTo(HttpStatusCode.Unauthorized));
        int afterFirst = fetches;
        Assert.That(afterFirst, Is.GreaterThan(0));
        for (int i = 0; i < 5; i++) Assert.That(await Call(), Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(fetches, Is.EqualTo(afterFirst), "no new fetch within 30 s of a failed one");
        clock.Now += TimeSpan.FromSeconds(31);
        Assert.That(await Call(), Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(fetches, Is.GreaterThan(afterFirst), "tried again after 30 s");
        await jwks.StopAsync();
    }

    [Test]
    public async Task Known_keys_stay_usable_while_the_issuers_jwks_url_is_down()
    {
        // Cached keys are refreshed after 10 minutes; a refresh that fails keeps them instead of refusing every call.
        using var kit = new CdsKit();
        var (jwks, jku) = await JwksServerAsync(() => Results.Text(CdsKit.Jwks(kit.EcKey), "application/json"));
        var clock = new FixedClock(DateTimeOffset.UtcNow);
        await using var factory = TrustingJku(kit, jku, clock);
        var client = factory.CreateClient();
        string aud = CdsKit.Base + PatientView;
        string body = CdsKit.PatientView("pat-oakhaven", []);
        var header = new Dictionary<string, object> { ["jku"] = jku };

        var before = await client.SendAsync(CallAt(kit, jku, clock));
        await jwks.StopAsync();
        await jwks.DisposeAsync();
        clock.Now += TimeSpan.FromMinutes(11);
        var during = await client.SendAsync(CallAt(kit, jku, clock));
        var otherKid = await client.SendAsync(CdsKit.Post(PatientView, body,
            kit.Token(aud, key: new ECDsaSecurityKey(System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP384)) { KeyId = "unknown-kid" },
                issued: clock.Now.UtcDateTime, expires: clock.Now.UtcDateTime.AddMinutes(5), header: header)));
        Assert.That(before.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(during.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the known key is still used while the JWKS URL is down");
        Assert.That(otherKid.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "a key it never served is not");
    }
}

/// <summary>The JWKS cache on its own, with an HTTP handler that plays the EHR's key URL.</summary>
public class JwksProviderTests
{
    private sealed class Factory(HttpMessageHandler handler) : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => new(handler, disposeHandler: false);
    }

    private sealed class KeyUrl(string jwks) : HttpMessageHandler
    {
        public int Calls;
        public bool Hang = true;
        /// <summary>What the URL serves; a hanging request answers with it once <see cref="Released"/> is set.</summary>
        public string Jwks = jwks;
        public readonly TaskCompletionSource Released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            Interlocked.Increment(ref Calls);
            if (Hang) await Released.Task.WaitAsync(ct);
            return new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent(Jwks) };
        }
    }

    [Test]
    public async Task A_known_key_does_not_wait_for_a_slow_key_URL_and_a_withdrawn_key_stops_working_once_the_refresh_is_in()
    {
        using var kit = new CdsKit();
        using var url = new KeyUrl(CdsKit.Jwks(kit.EcKey)) { Hang = false };
        var clock = new FixedClock(new DateTimeOffset(2026, 11, 27, 8, 0, 0, TimeSpan.Zero));
        var provider = new MagCds.Service.CdsHooks.JwksProvider(new Factory(url), clock);
        const string source = "https://ehr.example/jwks";
        Assert.That((await provider.FindKeyAsync(source, "ec-key", CancellationToken.None))?.KeyId, Is.EqualTo("ec-key"));

        // Eleven minutes on (the keys are stale) the key URL hangs. An EHR that gives up after 2 s still gets its answer:
        // the known key is used at once, and the keys are fetched again beside the call.
        clock.Now += TimeSpan.FromMinutes(11);
        url.Hang = true;
        using (var ehrGivesUp = new CancellationTokenSource(TimeSpan.FromSeconds(2)))
            Assert.That((await provider.FindKeyAsync(source, "ec-key", ehrGivesUp.Token))?.KeyId, Is.EqualTo("ec-key"));
        Assert.That(() => Volatile.Read(ref url.Calls), Is.EqualTo(2).After(5000, 20), "one refresh, beside the call");
        Assert.That((await provider.FindKeyAsync(source, "ec-key", CancellationToken.None))?.KeyId, Is.EqualTo("ec-key"), "still usable while the refresh hangs");
        Assert.That(Volatile.Read(ref url.Calls), Is.EqualTo(2), "no second refresh while one is under way");

        // The EHR has rotated its key: once the refresh is in, the withdrawn key is refused.
        url.Jwks = CdsKit.Jwks(kit.RsaKey);
        url.Released.SetResult();
        Assert.That(async () => await provider.FindKeyAsync(source, "ec-key", CancellationToken.None), Is.Null.After(5000, 20));
        Assert.That((await provider.FindKeyAsync(source, "rsa-key", CancellationToken.None))?.KeyId, Is.EqualTo("rsa-key"));
    }

    [Test]
    public async Task A_fetch_its_caller_gave_up_on_is_not_held_against_the_next_caller()
    {
        using var kit = new CdsKit();
        using var url = new KeyUrl(CdsKit.Jwks(kit.EcKey));
        var provider = new MagCds.Service.CdsHooks.JwksProvider(new Factory(url), TimeProvider.System);
        const string source = "https://ehr.example/jwks";

        // The EHR hangs up while the key URL is slow.
        using (var hangUp = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
            Assert.That(async () => await provider.FindKeyAsync(source, "ec-key", hangUp.Token), Throws.InstanceOf<OperationCanceledException>());

        // The next call, a moment later, fetches again and finds the key.
        url.Hang = false;
        var key = await provider.FindKeyAsync(source, "ec-key", CancellationToken.None);
        Assert.That(key?.KeyId, Is.EqualTo("ec-key"));
        Assert.That(url.Calls, Is.EqualTo(2));
    }
}
