using System.Diagnostics;
using Hl7.Fhir.Model;
using Hl7.Fhir.Rest;
using MagCds.Service.Storage;
using MagCds.Tests.Support;
using static MagCds.Tests.Support.WorkerHarness;

namespace MagCds.Tests.Worker;

/// <summary>
/// The built service as a real process, killed with SIGKILL in the middle of a batch and started again on the same
/// store: every result ends up with exactly one assessment set, none lost, none duplicated.
/// </summary>
[TestFixture(StoreProvider.Sqlite)]
[TestFixture(StoreProvider.Postgres)]
[NonParallelizable]
public sealed class KillRestartTests(StoreProvider provider)
{
    private const int Results = 60;

    [Test]
    public async Task Killed_mid_batch_and_restarted_nothing_is_lost_or_duplicated()
    {
        await using var fhir = new FhirTestServer();
        await fhir.StartAsync();
        var seeded = new List<string>();
        for (int i = 0; i < Results; i++) seeded.Add("Observation/" + (await fhir.SeedAsync(Result($"k{i}", 23.5m, $"ACC-K{i}"))).Id);
        var store = await StoreUnderTest.SettingsAsync(provider);

        int before;
        using (var first = Start(fhir, store))
        {
            await WaitUntilAsync(async () => await CountAsync(fhir) >= 10, "the first process wrote some assessments", 60);
            first.Kill(entireProcessTree: true); // SIGKILL: no shutdown code runs
            await first.WaitForExitAsync();
            before = await CountAsync(fhir);
        }
        Assert.That(before, Is.LessThan(Results), "the kill must land mid-batch for this test to mean anything");

        using var second = Start(fhir, store);
        try
        {
            await WaitUntilAsync(async () => await CountAsync(fhir) >= Results, "the restarted process finished the work", 90);
            // Not a pause for duplicates to show up: the store says when nothing is left, neither due nor leased (a
            // duplicate could only come from work still in hand).
            await using (var db = StoreUnderTest.Open(StoreOptions(store)))
            {
                var queue = new WorkQueue(db, TimeProvider.System);
                await WaitUntilAsync(async () => await queue.StatsAsync(CancellationToken.None, fhir.BaseUrl.TrimEnd('/')) is { Pending: 0, Leased: 0, Done: >= Results },
                    "the store has nothing pending or leased", 60);
            }
            var ras = await fhir.AllAsync<RiskAssessment>();
            Assert.That(ras.Select(r => r.Basis[0].Reference).Order(), Is.EqualTo(seeded.Order()), "exactly one RiskAssessment per result");
            var dis = await fhir.AllAsync<DetectedIssue>();
            Assert.That(dis.Count, Is.EqualTo(Results), "exactly one DetectedIssue per (raised) result");
            // Written by a separate process, so checked here against the profiles (in-process services check their own).
            foreach (var output in ras.Concat<Resource>(dis)) FhirValidation.AssertValid(WithoutServerMeta(output));
        }
        finally
        {
            second.Kill(entireProcessTree: true);
            await second.WaitForExitAsync();
        }
    }

    /// <summary>The resource as MagCds wrote it: the server's versionId and lastUpdated are not part of the output.</summary>
    private static Resource WithoutServerMeta(Resource r)
    {
        var copy = (Resource)r.DeepCopy();
        copy.Meta!.VersionId = null;
        copy.Meta.LastUpdated = null;
        return copy;
    }

    private static Process Start(FhirTestServer fhir, Dictionary<string, string?> store)
    {
        var psi = new ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "MagCds.Service.dll"), "--urls", $"http://127.0.0.1:{FreePort()}"])
        {
            RedirectStandardOutput = false,
            RedirectStandardError = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        foreach (var (k, v) in store) psi.Environment[k.Replace(":", "__", StringComparison.Ordinal)] = v;
        psi.Environment["MagCds__Worker__Enabled"] = "true";
        psi.Environment["MagCds__Worker__FhirServerUrl"] = fhir.BaseUrl;
        psi.Environment["MagCds__Worker__PollFrom"] = "2000-01-01T00:00:00Z";
        psi.Environment["MagCds__Worker__PollIntervalSeconds"] = "1";
        psi.Environment["MagCds__Worker__PageSize"] = "20";
        psi.Environment["MagCds__Worker__Concurrency"] = "2";
        psi.Environment["MagCds__Worker__LeaseSeconds"] = "2";
        psi.Environment["Serilog__MinimumLevel__Default"] = "Warning";
        return Process.Start(psi)!;
    }

    private StoreOptions StoreOptions(Dictionary<string, string?> store) => new()
    {
        Provider = provider,
        SqliteConnectionString = store.GetValueOrDefault("MagCds:Store:SqliteConnectionString") ?? new StoreOptions().SqliteConnectionString,
        PostgresConnectionString = store.GetValueOrDefault("MagCds:Store:PostgresConnectionString"),
    };

    private static async Task<int> CountAsync(FhirTestServer fhir)
    {
        var b = await fhir.Client.SearchAsync<RiskAssessment>(summary: SummaryType.Count);
        return b?.Total ?? 0;
    }
}
