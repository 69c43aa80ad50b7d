using System.Net;
using System.Text.Json;
using MagCds.Service.Storage;
using MagCds.Tests.Support;

namespace MagCds.Tests.Operations;

/// <summary>Every evaluation leaves an audit entry in the store (both kinds), queryable by an admin, without clinical values.</summary>
[TestFixture(StoreProvider.Sqlite)]
[TestFixture(StoreProvider.Postgres)]
public sealed class AuditTests(StoreProvider provider)
{
    private const string EngineKey = "engine-key-0123456789";
    private const string AdminKey = "operator-key-0123456789";

    [Test]
    public async Task REST_and_CDS_Hooks_evaluations_are_audited_with_caller_door_resource_version_and_outputs()
    {
        var settings = await StoreUnderTest.SettingsAsync(provider);
        settings["MagCds:Security:ApiKeys:0:Name"] = "lab-engine";
        settings["MagCds:Security:ApiKeys:0:Key"] = EngineKey;
        settings["MagCds:Security:ApiKeys:1:Name"] = "operator";
        settings["MagCds:Security:ApiKeys:1:Key"] = AdminKey;
        settings["MagCds:Security:ApiKeys:1:Admin"] = "true";
        settings["MagCds:CdsHooks:AllowUnsignedCalls"] = "true";
        using var f = new MagCdsFactory(settings);
        using var client = f.CreateClient();

        using (var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(TestFiles.Text("Observation-btu-medium.json"), "application/fhir+json") })
        {
            req.Headers.Add("X-API-Key", EngineKey);
            req.Headers.Add("X-Request-Id", "MSG-AUDIT-1");
            using var r = await client.SendAsync(req);
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        var obs = TestFiles.Resource<Hl7.Fhir.Model.Observation>("Observation-btu-high.json");
        using (var r = await client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", CdsKit.PatientView("pat-oakhaven", [obs]), null)))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));

        JsonElement entries = default;
        await WorkerHarness.WaitUntilAsync(async () =>
        {
            using var req = new HttpRequestMessage(HttpMethod.Get, "/admin/audit");
            req.Headers.Add("X-API-Key", AdminKey);
            using var r = await client.SendAsync(req);
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            string text = await r.Content.ReadAsStringAsync();
            entries = JsonDocument.Parse(text).RootElement;
            return entries.GetArrayLength() == 2;
        }, "both evaluations are audited");

        var rest = entries.EnumerateArray().Single(e => e.GetProperty("door").GetString() == "fhir-rest");
        Assert.That(rest.GetProperty("caller").GetString(), Is.EqualTo("lab-engine"), "the key's name, never the key");
        Assert.That(rest.GetProperty("correlationId").GetString(), Is.EqualTo("MSG-AUDIT-1"));
        Assert.That(rest.GetProperty("resource").GetString(), Is.EqualTo("Observation/btu-medium"));
        Assert.That(rest.GetProperty("outcome").GetString(), Is.EqualTo("Elevated"));
        Assert.That(rest.GetProperty("outputs").EnumerateArray().Select(o => o.GetString()![..3]), Is.EqualTo(new[] { "ra-", "di-" }));
        var cds = entries.EnumerateArray().Single(e => e.GetProperty("door").GetString() == "magcds-patient-view");
        Assert.That(cds.GetProperty("caller").GetString(), Is.EqualTo("unsigned-development-call"));

        string all = entries.GetRawText();
        Assert.That(all, Does.Not.Contain("25000").And.Not.Contain("pat-oakhaven").And.Not.Contain("ACC-BTU").And.Not.Contain(EngineKey));

        using var anonymous = await client.GetAsync("/admin/audit");
        Assert.That(anonymous.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }
}
