using System.Net;
using MagCds.Service.Storage;
using MagCds.Tests.Support;

namespace MagCds.Tests.CdsHooks;

/// <summary>Two replicas sharing a PostgreSQL store: a CDS Hooks JWT accepted by one is a replay for the other.</summary>
public sealed class ReplicaReplayTests
{
    private const string Path = "/cds-services/magcds-patient-view";

    [Test]
    public async Task A_token_used_on_one_replica_is_refused_on_another()
    {
        using var kit = new CdsKit();
        var settings = kit.TrustSettings();
        foreach (var (k, v) in await StoreUnderTest.SettingsAsync(StoreProvider.Postgres)) settings[k] = v;
        using var a = new MagCdsFactory(settings);
        using var b = new MagCdsFactory(settings);
        using var clientA = a.CreateClient();
        using var clientB = b.CreateClient();
        string body = CdsKit.PatientView("pat-oakhaven", [TestFiles.Resource("Observation-btu-medium.json")]);

        string token = kit.Token(CdsKit.Base + Path);
        using (var first = await clientA.SendAsync(CdsKit.Post(Path, body, token)))
            Assert.That(first.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        using (var replay = await clientB.SendAsync(CdsKit.Post(Path, body, token)))
            Assert.That(replay.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(b.Logs.Lines.Any(l => l.Contains("replayed-jti", StringComparison.Ordinal)), Is.True);

        using var fresh = await clientB.SendAsync(CdsKit.Post(Path, body, kit.Token(CdsKit.Base + Path)));
        Assert.That(fresh.StatusCode, Is.EqualTo(HttpStatusCode.OK), "a new token is accepted on the other replica");
    }
}
