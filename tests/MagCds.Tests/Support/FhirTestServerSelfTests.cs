using System.Net;
using System.Net.Http.Headers;
using Hl7.Fhir.Model;
using Hl7.Fhir.Rest;

namespace MagCds.Tests.Support;

/// <summary>The test FHIR server behaves like a FHIR R4 server when driven by the Firely client MagCds uses.</summary>
[NonParallelizable]
public class FhirTestServerSelfTests
{
    private const string Loinc = "http://loinc.org";
    private FhirTestServer _fhir = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        _fhir = new FhirTestServer();
        await _fhir.StartAsync();
    }

    [OneTimeTearDown]
    public async Task Stop() => await _fhir.DisposeAsync();

    [SetUp]
    public async Task Reset() => await _fhir.ResetAsync();

    private static Observation Obs(string patient, string code, string effective) => new()
    {
        Status = ObservationStatus.Final,
        Code = new CodeableConcept(Loinc, code),
        Subject = new ResourceReference($"Patient/{patient}"),
        Effective = new FhirDateTime(effective),
    };

    [Test]
    public async Task Metadata_is_an_R4_CapabilityStatement_that_Firely_accepts()
    {
        using var client = _fhir.CreateClient(settings: new FhirClientSettings { PreferredFormat = ResourceFormat.Json, VerifyFhirVersion = true });

        var cs = await client.CapabilityStatementAsync();

        Assert.That(cs!.FhirVersion, Is.EqualTo(FHIRVersion.N4_0_1));
        Assert.That(_fhir.BaseUrl, Does.Match(@"^http://127\.0\.0\.1:\d+/fhir/R4$"));
    }

    [Test]
    public async Task Search_by_patient_and_code_sorted_newest_first_pages_with_next_links_and_is_recorded()
    {
        await _fhir.SeedAsync(Obs("p1", "2345-7", "2024-01-01"));
        await _fhir.SeedAsync(Obs("p1", "2345-7", "2024-03-01"));
        await _fhir.SeedAsync(Obs("p1", "2345-7", "2024-02-01"));
        await _fhir.SeedAsync(Obs("p1", "718-7", "2024-04-01"));  // other code
        await _fhir.SeedAsync(Obs("p2", "2345-7", "2024-05-01")); // other patient
        await _fhir.ClearRequestsAsync();

        var query = new SearchParams().Add("patient", "Patient/p1").Add("code", $"{Loinc}|2345-7")
            .OrderBy("date", SortOrder.Descending).LimitTo(2);
        var page1 = await _fhir.Client.SearchAsync<Observation>(query);
        var page2 = await _fhir.Client.ContinueAsync(page1!);

        static string[] Dates(Bundle? b) => b!.Entry.Select(e => ((Observation)e.Resource!).Effective!.ToString()!).ToArray();
        Assert.That(page1!.Total, Is.EqualTo(3));
        Assert.That(Dates(page1), Is.EqualTo(new[] { "2024-03-01", "2024-02-01" }));
        Assert.That(page1.Entry.Select(e => e.FullUrl), Has.All.StartWith(_fhir.BaseUrl + "/Observation/"));
        Assert.That(page1.NextLink?.ToString(), Does.StartWith(_fhir.BaseUrl + "/Observation?"));
        Assert.That(Dates(page2), Is.EqualTo(new[] { "2024-01-01" }));
        Assert.That(page2!.NextLink, Is.Null);

        var requests = await _fhir.RequestsAsync();
        Assert.That(requests.Select(r => r.Method), Is.EqualTo(new[] { "GET", "GET" }));
        Assert.That(requests[0].Url, Does.StartWith("/fhir/R4/Observation?").And.Contain("_sort=-date").And.Contain("_count=2"));
        Assert.That(requests[1].Url, Does.Contain("_offset=2"));
        Assert.That(requests.Select(r => $"{r.HasAuthorization}:{r.Status}"), Has.All.EqualTo("False:200"));
    }

    [Test]
    public async Task Conditional_create_and_an_ifNoneExist_transaction_run_twice_store_one_of_each()
    {
        var ra = new RiskAssessment
        {
            Status = ObservationStatus.Final,
            Identifier = [new Identifier("urn:magcds:test", "ra-1")],
            Subject = new ResourceReference("Patient/p1"),
        };
        var condition = new SearchParams().Add("identifier", "urn:magcds:test|ra-1");
        var first = await _fhir.Client.ConditionalCreateAsync(ra, condition);
        var second = await _fhir.Client.ConditionalCreateAsync(ra, condition);
        Assert.That(second!.Id, Is.EqualTo(first!.Id));

        Bundle Transaction()
        {
            const string raUrn = "urn:uuid:6a0c3f52-8f0e-4d5e-9a6b-000000000001";
            var tx = new Bundle { Type = Bundle.BundleType.Transaction };
            tx.Entry.Add(new Bundle.EntryComponent
            {
                FullUrl = raUrn,
                Resource = new RiskAssessment { Status = ObservationStatus.Final, Identifier = [new Identifier("urn:magcds:test", "ra-2")], Subject = new ResourceReference("Patient/p1") },
                Request = new Bundle.RequestComponent { Method = Bundle.HTTPVerb.POST, Url = "RiskAssessment", IfNoneExist = "identifier=urn:magcds:test|ra-2" },
            });
            tx.Entry.Add(new Bundle.EntryComponent
            {
                FullUrl = "urn:uuid:6a0c3f52-8f0e-4d5e-9a6b-000000000002",
                Resource = new DetectedIssue { Status = ObservationStatus.Final, Identifier = [new Identifier("urn:magcds:test", "di-2")], Patient = new ResourceReference("Patient/p1"), Implicated = [new ResourceReference(raUrn)] },
                Request = new Bundle.RequestComponent { Method = Bundle.HTTPVerb.POST, Url = "DetectedIssue", IfNoneExist = "identifier=urn:magcds:test|di-2" },
            });
            return tx;
        }
        var run1 = await _fhir.SeedAsync(Transaction());
        var run2 = await _fhir.SeedAsync(Transaction());

        Assert.That(run1.Entry.Select(e => e.Response!.Status), Is.EqualTo(new[] { "201", "201" }));
        Assert.That(run2.Entry.Select(e => e.Response!.Status), Is.EqualTo(new[] { "200", "200" }));
        var di = (DetectedIssue)run2.Entry[1].Resource!;
        Assert.That(di.Implicated.Single().Reference, Is.EqualTo(run1.Entry[0].Response!.Location!.Split("/_history")[0]));
        var ras = await _fhir.Client.SearchAsync<RiskAssessment>(new SearchParams().Add("patient", "Patient/p1"));
        var dis = await _fhir.Client.SearchAsync<DetectedIssue>(new SearchParams().Add("patient", "Patient/p1"));
        Assert.That(ras!.Total, Is.EqualTo(2), "ra-1 and ra-2 once each");
        Assert.That(dis!.Total, Is.EqualTo(1));
    }
}

/// <summary>With a required token the test FHIR server refuses requests without it, and records whether one was sent.</summary>
[NonParallelizable]
public class FhirTestServerTokenSelfTests
{
    private const string Token = "test-token-7f3a9c";
    private FhirTestServer _fhir = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        _fhir = new FhirTestServer(requiredToken: Token);
        await _fhir.StartAsync();
    }

    [OneTimeTearDown]
    public async Task Stop() => await _fhir.DisposeAsync();

    [Test]
    public async Task Without_the_token_401_with_an_OperationOutcome_with_it_200_and_the_log_never_holds_the_token()
    {
        await _fhir.ResetAsync();
        using var http = new HttpClient();

        using var anonymous = await http.GetAsync(_fhir.BaseUrl + "/metadata");
        using var wrong = new HttpRequestMessage(HttpMethod.Get, _fhir.BaseUrl + "/metadata") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", "wrong") } };
        using var wrongResp = await http.SendAsync(wrong);
        using var noTokenClient = _fhir.CreateClient(withToken: false);
        var refused = await Assert.ThrowsAsync<FhirOperationException>(() => noTokenClient.CapabilityStatementAsync());
        var cs = await _fhir.Client.CapabilityStatementAsync();

        Assert.That(anonymous.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(anonymous.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/fhir+json"));
        Assert.That(await anonymous.Content.ReadAsStringAsync(), Does.Contain("\"resourceType\":\"OperationOutcome\""));
        Assert.That(wrongResp.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(refused!.Status, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(cs!.FhirVersion, Is.EqualTo(FHIRVersion.N4_0_1));

        var requests = await _fhir.RequestsAsync();
        Assert.That(requests.Select(r => $"{r.HasAuthorization}:{r.Status}"), Is.EqualTo(new[] { "False:401", "True:401", "False:401", "True:200" }));
        using var raw = new HttpRequestMessage(HttpMethod.Get, _fhir.RootUrl + "/admin/requests") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", Token) } };
        using var rawResp = await http.SendAsync(raw);
        Assert.That(await rawResp.Content.ReadAsStringAsync(), Does.Not.Contain(Token).And.Not.Contain("wrong"));
    }
}
