using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Hl7.Fhir.Model;
using Hl7.Fhir.Rest;

// Usage: MagCds.WorkerBench <fhir-base> <service-dll> <mode> <count> [rate]
//   mode steady:  MagCds runs with a rest-hook Subscription; <count> results are created at <rate> per second.
//   mode kill:    as steady, and MagCds is killed with SIGKILL when half the results exist, then started again.
//   mode backlog: <count> results exist before MagCds starts (polling finds them): the drain rate is the throughput.
// Lag of a result = RiskAssessment.meta.lastUpdated - Observation.meta.lastUpdated, both stamped by the FHIR server.
// Ends by checking that every result has exactly one current RiskAssessment and DetectedIssue; exit 1 otherwise.
if (args.Length < 4) { Console.Error.WriteLine("usage: MagCds.WorkerBench <fhir-base> <service-dll> steady|kill|backlog <count> [rate]"); return 2; }
string fhirBase = args[0], dll = args[1], mode = args[2];
int count = int.Parse(args[3], CultureInfo.InvariantCulture);
double rate = args.Length > 4 ? double.Parse(args[4], CultureInfo.InvariantCulture) : 20;
string store = Path.Combine(Path.GetTempPath(), $"magcds-bench-{Guid.NewGuid():N}.db");
// MAGCDS_BENCH_PORT fixes the service's port and MAGCDS_BENCH_SETTINGS ("Key=Value;Key=Value") adds settings, so
// another load (tests/load/soak.sh) can run against the same service while the worker is fed.
int port = int.TryParse(Environment.GetEnvironmentVariable("MAGCDS_BENCH_PORT"), out int fixedPort) ? fixedPort : FreePort();
using var fhir = new FhirClient(fhirBase, new FhirClientSettings { PreferredFormat = ResourceFormat.Json, Timeout = 120_000 });

Process StartService()
{
    var psi = new ProcessStartInfo("dotnet", [dll, "--urls", $"http://127.0.0.1:{port}"]) { UseShellExecute = false };
    var env = new Dictionary<string, string>
    {
        ["MagCds__Store__SqliteConnectionString"] = "Data Source=" + store,
        ["MagCds__Worker__Enabled"] = "true",
        ["MagCds__Worker__FhirServerUrl"] = fhirBase,
        ["MagCds__Worker__PollFrom"] = "2000-01-01T00:00:00Z",
        ["MagCds__Worker__PollIntervalSeconds"] = "30", // the default: the first poll runs at start-up
        ["MagCds__Worker__PageSize"] = "100",
        ["MagCds__Worker__Subscription__Secret"] = "bench-notification-secret",
        ["MagCds__Worker__Subscription__Create"] = mode == "backlog" ? "false" : "true",
        ["MagCds__Worker__Subscription__EndpointUrl"] = $"http://127.0.0.1:{port}/worker/notifications",
        ["Serilog__MinimumLevel__Default"] = "Warning",
    };
    foreach (var kv in (Environment.GetEnvironmentVariable("MAGCDS_BENCH_SETTINGS") ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries))
        env[kv[..kv.IndexOf('=')]] = kv[(kv.IndexOf('=') + 1)..];
    foreach (var (k, v) in env) psi.Environment[k] = v;
    return Process.Start(psi)!;
}

Observation Result(int i) => new()
{
    Identifier = [new Identifier("urn:oid:2.16.840.1.113883.19.5.99", $"BENCH-{i}")],
    Status = ObservationStatus.Final,
    Category = [new CodeableConcept("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")],
    Code = new CodeableConcept("http://loinc.org", "39087-2", "Anti-MAG IgM"),
    Subject = new ResourceReference($"Patient/bench-{i % 200}"),
    Effective = new FhirDateTime(new DateTimeOffset(2026, 1, 1, 9, 0, 0, TimeSpan.Zero).AddDays(i / 200)),
    Value = new Quantity { Value = 1000 + 97 * i, Unit = "BTU", System = "http://unitsofmeasure.org", Code = "[arb'U]" },
};

async System.Threading.Tasks.Task<int> Count<T>() where T : Resource, new() =>
    (await fhir.SearchAsync<T>(summary: SummaryType.Count))?.Total ?? 0;

var service = mode == "backlog" ? null : StartService();
var clock = Stopwatch.StartNew();
if (service is not null)
{
    // Ready when the Subscription exists.
    while ((await fhir.SearchAsync<Subscription>(summary: SummaryType.Count))?.Total is not > 0) await System.Threading.Tasks.Task.Delay(200);
    Console.WriteLine($"subscription ready after {clock.Elapsed.TotalSeconds:0.0} s");
}
else
{
    // Backlog: everything is written first, in transactions of 100.
    for (int i = 0; i < count; i += 100)
    {
        var tx = new Bundle { Type = Bundle.BundleType.Transaction };
        for (int j = i; j < Math.Min(count, i + 100); j++)
            tx.Entry.Add(new Bundle.EntryComponent { Resource = Result(j), Request = new Bundle.RequestComponent { Method = Bundle.HTTPVerb.POST, Url = "Observation" } });
        await fhir.TransactionAsync(tx);
    }
    Console.WriteLine($"backlog of {count} results written");
    clock.Restart();
    service = StartService();
}

if (mode != "backlog")
{
    var interval = TimeSpan.FromSeconds(1 / rate);
    var start = Stopwatch.StartNew();
    for (int i = 0; i < count; i++)
    {
        var due = interval * i - start.Elapsed;
        if (due > TimeSpan.Zero) await System.Threading.Tasks.Task.Delay(due);
        await fhir.CreateAsync(Result(i));
        if (mode == "kill" && i == count / 2)
        {
            service.Kill(entireProcessTree: true); // SIGKILL
            await service.WaitForExitAsync();
            Console.WriteLine($"killed MagCds after {i + 1} results; {await Count<RiskAssessment>()} assessed so far");
            service = StartService();
        }
    }
    Console.WriteLine($"created {count} results in {start.Elapsed.TotalSeconds:0.0} s ({count / start.Elapsed.TotalSeconds:0.0}/s)");
}

var deadline = Stopwatch.StartNew();
while (await Count<RiskAssessment>() < count && deadline.Elapsed < TimeSpan.FromMinutes(10)) await System.Threading.Tasks.Task.Delay(1000);
var drained = clock.Elapsed;
await System.Threading.Tasks.Task.Delay(3000); // any duplicate would show up now
service.Refresh();
var magcdsCpu = service.TotalProcessorTime;
service.Kill(entireProcessTree: true);

async System.Threading.Tasks.Task<List<T>> All<T>() where T : Resource, new()
{
    var list = new List<T>();
    var page = await fhir.SearchAsync<T>(pageSize: 500);
    while (page is not null)
    {
        list.AddRange(page.Entry.Select(e => e.Resource).OfType<T>());
        page = page.NextLink is null ? null : await fhir.ContinueAsync(page);
    }
    return list;
}

var observations = (await All<Observation>()).ToDictionary(o => "Observation/" + o.Id);
var ras = await All<RiskAssessment>();
var dis = await All<DetectedIssue>();
bool Current(ObservationStatus? s) => s is not (ObservationStatus.Cancelled or ObservationStatus.EnteredInError);
var perObservation = ras.Where(r => Current(r.Status)).GroupBy(r => r.Basis[0].Reference!).ToDictionary(g => g.Key, g => g.Count());
int missing = observations.Keys.Count(k => !perObservation.ContainsKey(k));
int duplicated = perObservation.Values.Count(n => n > 1);
int diCurrent = dis.Count(d => Current(d.Status));
var lags = ras.Select(r => (r.Meta!.LastUpdated!.Value - observations[r.Basis[0].Reference!].Meta!.LastUpdated!.Value).TotalSeconds).Order().ToList();
double P(double q) => lags.Count == 0 ? double.NaN : lags[Math.Min(lags.Count - 1, (int)Math.Ceiling(q * lags.Count) - 1)];

Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"mode={mode} results={count} assessed={ras.Count} detectedIssues={dis.Count} missing={missing} duplicated={duplicated} currentDetectedIssues={diCurrent}"));
Console.WriteLine(mode == "backlog"
    ? string.Create(CultureInfo.InvariantCulture, $"drained in {drained.TotalSeconds:0.0} s from service start: {count / drained.TotalSeconds:0.0} results/s (start-up included)")
    : string.Create(CultureInfo.InvariantCulture, $"lag p50={P(0.50):0.000} s p90={P(0.90):0.000} s p99={P(0.99):0.000} s max={lags.LastOrDefault():0.000} s"));
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"MagCds process CPU time {magcdsCpu.TotalSeconds:0.0} s (the last process; {Environment.ProcessorCount} cores)"));
await ServerTimes();
File.Delete(store);
return missing == 0 && duplicated == 0 && ras.Count == count && diCurrent == count ? 0 : 1;

// Where the FHIR server spent its time (the test server's request log has each request's duration).
async System.Threading.Tasks.Task ServerTimes()
{
    using var http = new HttpClient();
    var log = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync(fhirBase[..^"/fhir/R4".Length] + "/admin/requests"));
    var byKind = log.RootElement.EnumerateArray()
        .Select(r => (Kind: Kind(r.GetProperty("method").GetString()!, r.GetProperty("url").GetString()!), Ms: r.GetProperty("ms").ValueKind == System.Text.Json.JsonValueKind.Number ? r.GetProperty("ms").GetDouble() : 0))
        .GroupBy(x => x.Kind).Select(g => (g.Key, Count: g.Count(), Total: g.Sum(x => x.Ms))).OrderByDescending(g => g.Total).ToList();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"FHIR server busy {byKind.Sum(k => k.Total) / 1000:0.0} s in {byKind.Sum(k => k.Count)} requests; largest shares:"));
    foreach (var k in byKind.Take(6))
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {k.Count,6} x {k.Total / k.Count,7:0.0} ms  {k.Key}"));
}

// "GET /fhir/R4/Observation?subject&code&_sort&_count": the request's shape without ids and values.
static string Kind(string method, string url)
{
    var parts = url.Split('?', 2);
    string path = string.Join('/', parts[0].Split('/').Select(seg => seg.Length > 20 || seg.StartsWith("bench", StringComparison.Ordinal) ? "{id}" : seg));
    return method + " " + path + (parts.Length > 1 ? "?" + string.Join('&', parts[1].Split('&').Select(p => p.Split('=')[0])) : "");
}

static int FreePort()
{
    using var l = new TcpListener(IPAddress.Loopback, 0);
    l.Start();
    return ((IPEndPoint)l.LocalEndpoint).Port;
}
