using System.Net;
using Hl7.Fhir.Model;
using MagCds.Tests.Support;

namespace MagCds.Tests.CdsHooks;

/// <summary>
/// An issuer configured with <c>FhirServers</c> gets its fhirServer queried only when it is one of them: MagCds neither
/// reads from nor sends the call's access token to any other address a call names. Signed calls, a real FHIR server.
/// </summary>
[NonParallelizable]
public sealed class FhirServerScopeTests : ServiceWithFhirServer
{
    private const string Patient = "pat-scope";
    private readonly CdsKit _kit = new();

    protected override Dictionary<string, string?> Settings => new(_kit.TrustSettings())
    {
        ["MagCds:CdsHooks:TrustedIssuers:0:FhirServers:0"] = Fhir.BaseUrl,
    };

    [OneTimeSetUp]
    public async Task Seed()
    {
        var result = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        result.Id = null;
        result.Subject = new ResourceReference("Patient/" + Patient);
        await Fhir.SeedAsync(result);
    }

    [OneTimeTearDown]
    public void DisposeKit() => _kit.Dispose();

    private async Task<HttpResponseMessage> CallNaming(string fhirServer, IEnumerable<Resource>? prefetch = null)
    {
        await Fhir.ClearRequestsAsync();
        const string path = "/cds-services/magcds-patient-view";
        return await Client.SendAsync(CdsKit.Post(path, CdsKit.PatientView(Patient, prefetch, fhirServer, "ehr-access-token-scope", includeResultsKey: prefetch is not null),
            _kit.Token(CdsKit.Base + path)));
    }

    private string SameServerOtherName => Fhir.BaseUrl.Replace("127.0.0.1", "localhost", StringComparison.Ordinal);

    [Test]
    public async Task A_prefetch_from_a_server_MagCds_may_not_read_still_names_its_patient()
    {
        // The results came in the prefetch, with the subject as an absolute URL on the server the call names: that
        // server is still where this patient lives, although MagCds does not read from it.
        var result = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        result.Subject = new ResourceReference($"{SameServerOtherName}/Patient/{Patient}");
        using var resp = await CallNaming(SameServerOtherName, [result]);
        string json = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), json);
        Assert.That(json, Does.Contain("Anti-MAG IgM 25000 BTU"), "the prefetched result is this patient's, and gets its card");
        Assert.That(await Fhir.RequestsAsync(), Is.Empty);
    }

    [Test]
    public void An_issuer_without_FhirServers_is_named_in_a_start_up_warning_and_one_with_them_is_not()
    {
        using var open = new MagCdsFactory(_kit.TrustSettings());
        open.CreateClient().Dispose();
        Assert.That(open.Logs.Lines, Has.One.Contains("has no FhirServers: a call it signs may make MagCds query any https server"));
        Assert.That(Service.Logs.Lines, Has.None.Contains("has no FhirServers"));
    }

    [Test]
    public async Task A_fhirServer_the_issuer_is_configured_with_is_queried()
    {
        using var resp = await CallNaming(Fhir.BaseUrl);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), await resp.Content.ReadAsStringAsync());
        Assert.That(await resp.Content.ReadAsStringAsync(), Does.Contain("25000 BTU"));
        Assert.That(await Fhir.RequestsAsync(), Is.Not.Empty);
    }

    [Test]
    public async Task Any_other_fhirServer_is_not_queried_and_gets_no_token()
    {
        // The very same server under another name is another authority: not on the list, so not asked at all.
        Assert.That(SameServerOtherName, Is.Not.EqualTo(Fhir.BaseUrl));
        using var resp = await CallNaming(SameServerOtherName);
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed), "no prefetch and no FHIR server it may read");
        Assert.That(await Fhir.RequestsAsync(), Is.Empty, "nothing was sent to the server the call named");
        Assert.That(Service.Logs.Lines, Has.Some.Contains("\"Name\":\"FhirServerNotAllowed\""));
    }

    [Test]
    public async Task Such_calls_are_all_counted_but_logged_once_a_minute_per_issuer()
    {
        // An EHR set up against another address makes every call one of these: one warning, not one per call.
        using var service = new MagCdsFactory(new Dictionary<string, string?>(Settings) { ["MagCds:Telemetry:Prometheus"] = "true" });
        using var client = service.CreateClient();
        const string path = "/cds-services/magcds-patient-view";
        for (int i = 0; i < 3; i++)
        {
            using var resp = await client.SendAsync(CdsKit.Post(path, CdsKit.PatientView(Patient, null, SameServerOtherName, "ehr-access-token-scope", includeResultsKey: false),
                _kit.Token(CdsKit.Base + path)));
            Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed));
        }
        Assert.That(service.Logs.Lines.Count(l => l.Contains("\"Name\":\"FhirServerNotAllowed\"", StringComparison.Ordinal)), Is.EqualTo(1));
        string metrics = "";
        await WorkerHarness.WaitUntilAsync(async () =>
        {
            metrics = await client.GetStringAsync("/metrics");
            return metrics.Contains("magcds_cdshooks_fhirserver_not_allowed", StringComparison.Ordinal);
        }, "the calls are counted", 30);
        Assert.That(metrics, Does.Match(@"magcds_cdshooks_fhirserver_not_allowed_total\{[^}]*issuer=""https://ehr\.test\.example""[^}]*\} 3"));
    }
}
