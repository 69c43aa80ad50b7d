using System.Net;
using MagCds.Tests.Support;

namespace MagCds.Tests.Operations;

/// <summary>
/// Behind an ingress every request arrives from the ingress's address. With the ingress configured as a trusted
/// proxy (MagCds:Proxies), the per-client rate limit counts the client named in X-Forwarded-For; from anyone else the
/// header is ignored, so a client cannot choose its own bucket. Real Kestrel on loopback: the "ingress" is 127.0.0.1.
/// </summary>
[NonParallelizable]
public sealed class ForwardedHeadersTests
{
    private static MagCdsFactory Start(string? trustedProxy, string? trustedNetwork = null, bool hostProcessesForwardedHeaders = false)
    {
        var settings = new Dictionary<string, string?>
        {
            ["MagCds:RateLimit:PermitsPerSecond"] = "1",
            ["MagCds:RateLimit:Burst"] = "2",
            // A trusted proxy lets callers from beyond this machine in: MagCds refuses to start without authentication.
            ["MagCds:Security:ApiKeys:0:Name"] = "engine",
            ["MagCds:Security:ApiKeys:0:Key"] = "an-api-key-of-some-length",
        };
        // What ASPNETCORE_FORWARDEDHEADERS_ENABLED=true sets: the host inserts the middleware itself.
        if (hostProcessesForwardedHeaders) settings["FORWARDEDHEADERS_ENABLED"] = "true";
        if (trustedProxy is not null) settings["MagCds:Proxies:KnownProxies:0"] = trustedProxy;
        if (trustedNetwork is not null) settings["MagCds:Proxies:KnownNetworks:0"] = trustedNetwork;
        var f = new MagCdsFactory(settings);
        f.UseKestrel(WorkerHarness.FreePort());
        f.StartServer();
        return f;
    }

    private static async Task<HttpStatusCode> GetAsync(HttpClient client, string forwardedFor)
    {
        using var req = new HttpRequestMessage(HttpMethod.Get, "/fhir/metadata");
        req.Headers.Add("X-Forwarded-For", forwardedFor);
        using var r = await client.SendAsync(req);
        return r.StatusCode;
    }

    /// <summary>Calls with the i-th X-Forwarded-For until limited (at most 10 calls); whether the limit was reached.</summary>
    private static async Task<bool> LimitedAsync(HttpClient client, Func<int, string> forwardedFor)
    {
        for (int i = 0; i < 10; i++)
            if (await GetAsync(client, forwardedFor(i)) == HttpStatusCode.TooManyRequests) return true;
        return false;
    }

    /// <summary>Client A calls until it is limited, then client B calls once; B's status.</summary>
    private static async Task<HttpStatusCode> SecondClientAfterFirstIsLimited(MagCdsFactory f)
    {
        using var client = f.CreateClient();
        Assert.That(await LimitedAsync(client, _ => "203.0.113.10"), "client A must reach its limit");
        return await GetAsync(client, "203.0.113.20");
    }

    [Test]
    public async Task Behind_a_trusted_proxy_each_forwarded_client_has_its_own_rate_limit()
    {
        using var f = Start(trustedProxy: "127.0.0.1");
        Assert.That(await SecondClientAfterFirstIsLimited(f), Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task An_IPv6_client_has_one_bucket_for_its_whole_64_prefix_not_one_per_address()
    {
        // An IPv6 host is normally given a /64 and may send from any address in it: new addresses are not new buckets.
        using var f = Start(trustedProxy: "127.0.0.1");
        using var client = f.CreateClient();
        Assert.That(await LimitedAsync(client, i => $"2001:db8:0:7::{i + 1:x}"), "addresses of one /64 share a bucket");
        Assert.That(await GetAsync(client, "2001:db8:0:8::1"), Is.EqualTo(HttpStatusCode.OK), "the next /64 is another client");
    }

    [Test]
    public async Task An_IPv4_client_is_one_client_whether_or_not_its_address_arrives_IPv4_mapped()
    {
        using var f = Start(trustedProxy: "127.0.0.1");
        using var client = f.CreateClient();
        Assert.That(await LimitedAsync(client, i => i % 2 == 0 ? "203.0.113.40" : "::ffff:203.0.113.40"), "one bucket for both spellings");
        Assert.That(await GetAsync(client, "203.0.113.41"), Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task Only_the_address_the_trusted_proxy_saw_counts_not_what_the_client_wrote_before_it()
    {
        // The ingress (127.0.0.1) appends the address it saw, here a workload inside the trusted network (127.0.0.5);
        // anything before it is that workload's own text. Varying that text must not give it new buckets, although
        // its own address is in a trusted network (one hop is believed, not a walk through every trusted address).
        using var f = Start(trustedProxy: null, trustedNetwork: "127.0.0.0/8");
        using var client = f.CreateClient();
        Assert.That(await LimitedAsync(client, i => $"198.51.100.{i}, 127.0.0.5"), "varying the forged part does not give new buckets");
    }

    [Test]
    public async Task With_the_host_also_told_to_process_forwarded_headers_still_only_one_hop_is_believed()
    {
        using var f = Start(trustedProxy: null, trustedNetwork: "127.0.0.0/8", hostProcessesForwardedHeaders: true);
        using var client = f.CreateClient();
        Assert.That(await LimitedAsync(client, i => $"198.51.100.{i}, 127.0.0.5"), "varying the forged part does not give new buckets");
        // And the header is still read once: a client named by the trusted proxy has its own bucket.
        Assert.That(await GetAsync(client, "203.0.113.30"), Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task X_Forwarded_For_from_an_address_that_is_not_a_trusted_proxy_is_ignored()
    {
        using var f = Start(trustedProxy: "10.0.0.5");
        Assert.That(await SecondClientAfterFirstIsLimited(f), Is.EqualTo(HttpStatusCode.TooManyRequests));
    }

    [Test]
    public async Task With_no_proxy_configured_X_Forwarded_For_is_ignored()
    {
        using var f = Start(trustedProxy: null);
        Assert.That(await SecondClientAfterFirstIsLimited(f), Is.EqualTo(HttpStatusCode.TooManyRequests));
    }
}
