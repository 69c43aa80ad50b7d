using System.Net;
using System.Text.Json;
using Hl7.Fhir.Model;
using MagCds.Tests.Support;

namespace MagCds.Tests.CdsHooks;

/// <summary>
/// The CDS Hooks fallback query against a server that does not sort (its self link leaves <c>_sort</c> out, as the
/// test server does when told to ignore it): the newest result may be on any page, so MagCds reads every page (up to
/// five) and sorts them itself, answers 412 when there are more, and never follows a next link to another host with
/// the EHR's token. Real FHIR engine (tests/fhir-test-server), two results per page.
/// </summary>
[NonParallelizable]
public class UnsortedServerTests : ServiceWithFhirServer
{

    protected override Dictionary<string, string?> Settings => new()
    {
        ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true",
        ["MagCds:CdsHooks:AllowInsecureFhirServer"] = "true",
        ["MagCds:CdsHooks:MaxResults"] = "2",
    };

    /// <summary>
    /// <paramref name="older"/> results not raised (640 BTU), then the newest, raised (25000 BTU), stored last: in the
    /// order a server without sorting returns them, the newest is on the last page.
    /// </summary>
    private async Task SeedAsync(string patient, int older)
    {
        await Fhir.ResetAsync();
        for (int i = 0; i < older; i++)
        {
            var o = TestFiles.Resource<Observation>("Observation-btu-not-detected.json");
            o.Id = null;
            o.Identifier[0].Value = $"ACC-OLDER-{i}";
            o.Subject = new ResourceReference("Patient/" + patient);
            o.Effective = new FhirDateTime(new DateTimeOffset(2025, 1 + i % 12, 1, 8, 0, 0, TimeSpan.Zero).AddYears(-(i / 12)));
            o.Issued = ((FhirDateTime)o.Effective).ToDateTimeOffset(TimeSpan.Zero).AddDays(1);
            await Fhir.SeedAsync(o);
        }
        var newest = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        newest.Id = null;
        newest.Subject = new ResourceReference("Patient/" + patient);
        await Fhir.SeedAsync(newest);
        await Fhir.ClearRequestsAsync();
    }

    private async Task<HttpResponseMessage> CallAsync(string patient) =>
        await Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", CdsKit.PatientView(patient, null, Fhir.BaseUrl, "ehr-token-3b9d", includeResultsKey: false), null));

    [Test]
    public async Task Every_page_is_read_and_the_newest_result_found_wherever_it_is()
    {
        await SeedAsync("pat-unsorted", older: 4);
        await Fhir.QuirksAsync(ignoreSort: true);
        using var resp = await CallAsync("pat-unsorted");
        string json = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), json);
        var card = JsonDocument.Parse(json).RootElement.GetProperty("cards").EnumerateArray().Single();
        Assert.That(card.GetProperty("summary").GetString(), Does.StartWith("Anti-MAG IgM 25000 BTU: raised"), "the newest result, on the last of three pages");
        Assert.That((await Fhir.RequestsAsync()).Count(r => r.Url.Contains("Observation?", StringComparison.Ordinal)), Is.EqualTo(3));
    }

    [Test]
    public async Task More_pages_than_are_read_without_a_confirmed_order_give_412()
    {
        await SeedAsync("pat-many", older: 10); // 11 results: six pages of two
        await Fhir.QuirksAsync(ignoreSort: true);
        using var resp = await CallAsync("pat-many");
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed));
        Assert.That(await resp.Content.ReadAsStringAsync(), Does.Contain("did not confirm sorting"));
        Assert.That((await Fhir.RequestsAsync()).Count(r => r.Url.Contains("Observation?", StringComparison.Ordinal)), Is.EqualTo(5), "five pages, no more");
    }

    [Test]
    public async Task A_sorted_server_is_read_one_page_deep()
    {
        await SeedAsync("pat-sorted", older: 4);
        await Fhir.QuirksAsync();
        using var resp = await CallAsync("pat-sorted");
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await resp.Content.ReadAsStringAsync(), Does.Contain("Anti-MAG IgM 25000 BTU: raised"));
        Assert.That((await Fhir.RequestsAsync()).Count(r => r.Url.Contains("Observation?", StringComparison.Ordinal)), Is.EqualTo(1));
    }

    [Test]
    public async Task A_next_link_to_another_host_is_not_followed_with_the_token()
    {
        await using var elsewhere = await HttpCapture.StartAsync();
        await SeedAsync("pat-elsewhere", older: 4);
        await Fhir.QuirksAsync(ignoreSort: true, nextLinkBase: elsewhere.BaseUrl + "fhir/R4");
        using var resp = await CallAsync("pat-elsewhere");
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.PreconditionFailed), "the rest of the results cannot be read, so the latest cannot be told");
        Assert.That(elsewhere.Received, Is.Zero, "nothing, and no token, went to the other host");
    }
}
