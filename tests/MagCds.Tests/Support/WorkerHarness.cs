using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using Hl7.Fhir.Model;
using Hl7.Fhir.Rest;
using MagCds.Service.Storage;
using Microsoft.AspNetCore.Mvc.Testing;

namespace MagCds.Tests.Support;

/// <summary>
/// A worker test's world: the real FHIR test server (one per fixture, emptied before each test), a fresh store of
/// the fixture's kind, and MagCds with the worker pointed at that server. <see cref="StartAsync"/> can run MagCds
/// again on the same store, as a restart would.
/// </summary>
public sealed class WorkerHarness(FhirTestServer fhir, Dictionary<string, string?> store) : IAsyncDisposable
{
    public const string Secret = "test-notification-secret";
    public const string AdminKey = "test-admin-key-0001";

    /// <summary>Settings that give the admin key (header X-API-Key) admin rights.</summary>
    public static Dictionary<string, string?> AdminKeySettings => new()
    {
        ["MagCds:Security:ApiKeys:0:Name"] = "test-operator",
        ["MagCds:Security:ApiKeys:0:Key"] = AdminKey,
        ["MagCds:Security:ApiKeys:0:Admin"] = "true",
    };
    private readonly List<MagCdsFactory> _factories = [];

    public FhirTestServer Fhir => fhir;

    /// <summary>The store settings (configuration keys) every start of this harness uses.</summary>
    public IReadOnlyDictionary<string, string?> StoreSettings => store;
    public MagCdsFactory? Service { get; private set; }
    public HttpClient Client { get; private set; } = null!;

    /// <summary>A harness with a fresh store; the FHIR server is emptied too unless <paramref name="keepServerData"/>.</summary>
    public static async Task<WorkerHarness> CreateAsync(FhirTestServer fhir, StoreProvider provider, bool keepServerData = false)
    {
        if (!keepServerData) await fhir.ResetAsync();
        return new WorkerHarness(fhir, await StoreUnderTest.SettingsAsync(provider));
    }

    /// <summary>Starts MagCds (stopping a running one first) with the worker settings, the store, and any extra settings.</summary>
    /// <param name="kestrelPort">Listen on a real loopback port (for the FHIR server's rest-hook deliveries).</param>
    public Task<HttpClient> StartAsync(Dictionary<string, string?>? more = null, int? kestrelPort = null)
    {
        Stop();
        var settings = new Dictionary<string, string?>(store)
        {
            ["MagCds:Worker:Enabled"] = "true",
            ["MagCds:Worker:FhirServerUrl"] = fhir.BaseUrl,
            ["MagCds:Worker:PollIntervalSeconds"] = "1",
            ["MagCds:Worker:PollFrom"] = "2000-01-01T00:00:00Z",
            ["MagCds:Worker:PageSize"] = "10",
            ["MagCds:Worker:LeaseSeconds"] = "2",
            ["MagCds:Worker:MaxAttempts"] = "4",
            ["MagCds:Worker:RetryBaseDelaySeconds"] = "0.1",
            ["MagCds:Worker:RetryMaxDelaySeconds"] = "0.5",
            ["MagCds:Worker:RequestTimeoutSeconds"] = "10",
            ["MagCds:Worker:Subscription:Secret"] = Secret,
        };
        foreach (var (k, v) in AdminKeySettings) settings[k] = v;
        foreach (var (k, v) in more ?? []) settings[k] = v;
        var factory = new MagCdsFactory(settings);
        if (kestrelPort is { } port) factory.UseKestrel(port);
        _factories.Add(factory);
        Service = factory;
        Client = factory.CreateClient();
        Client.DefaultRequestHeaders.Add("X-API-Key", AdminKey);
        return System.Threading.Tasks.Task.FromResult(Client);
    }

    public void Stop()
    {
        Client?.Dispose();
        Service?.Dispose();
        Service = null;
    }

    public static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    /// <summary>An anti-MAG result (source document scale, Units) of one patient, as a lab would send it.</summary>
    public static Observation Result(string patient, decimal value, string accession, ObservationStatus status = ObservationStatus.Final)
    {
        var obs = TestFiles.Resource<Observation>("Observation-units-above.json");
        obs.Id = null;
        obs.Status = status;
        obs.Identifier[0].Value = accession;
        obs.Subject = new ResourceReference("Patient/" + patient);
        ((Quantity)obs.Value!).Value = value;
        PhiScan.Register(obs);
        return obs;
    }

    /// <summary>Everything of a type on the FHIR server (all pages).</summary>
    public Task<List<T>> AllAsync<T>() where T : Resource, new() => fhir.AllAsync<T>();

    /// <summary>The worker's queue as the admin endpoint shows it.</summary>
    public async Task<JsonElement> QueueAsync()
    {
        var doc = await Client.GetFromJsonAsync<JsonElement>("/admin/worker");
        return doc.GetProperty("queue");
    }

    /// <summary>Waits until <paramref name="done"/> holds (checked every 100 ms), failing with <paramref name="what"/> after the timeout.</summary>
    public static async System.Threading.Tasks.Task WaitUntilAsync(Func<Task<bool>> done, string what, int seconds = 30)
    {
        var until = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < until)
        {
            if (await done()) return;
            await System.Threading.Tasks.Task.Delay(100);
        }
        Assert.Fail($"Timed out after {seconds} s waiting until {what}.");
    }

    /// <summary>Waits until the queue is empty and at least <paramref name="done"/> resources were finished.</summary>
    public async System.Threading.Tasks.Task DrainedAsync(int done, int seconds = 30) =>
        await WaitUntilAsync(async () =>
        {
            var q = await QueueAsync();
            return q.GetProperty("pending").GetInt64() == 0 && q.GetProperty("done").GetInt64() >= done;
        }, $"the queue is empty with {done} done", seconds);

    public async ValueTask DisposeAsync()
    {
        Stop();
        foreach (var f in _factories) await f.DisposeAsync();
    }
}
