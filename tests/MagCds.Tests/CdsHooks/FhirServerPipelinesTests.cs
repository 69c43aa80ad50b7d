using MagCds.Service.CdsHooks;

namespace MagCds.Tests.CdsHooks;

/// <summary>One resilience pipeline per FHIR server, up to a bound: the servers come from the calls.</summary>
public class FhirServerPipelinesTests
{
    private static HttpRequestMessage Get(string url) => new(HttpMethod.Get, url);

    [Test]
    public void Each_server_has_its_own_pipeline_up_to_the_capacity_and_the_others_share_one()
    {
        var pipelines = new FhirServerPipelines(capacity: 3);
        string[] urls = ["https://a.example/fhir/Observation?x=1", "https://b.example:8443/r4/Observation", "http://c.example/fhir/Observation"];
        string[] keys = urls.Select(u => pipelines.KeyOf(Get(u))).ToArray();
        Assert.That(keys, Is.EqualTo(new[] { "https://a.example", "https://b.example:8443", "http://c.example" }));

        Assert.That(pipelines.KeyOf(Get("https://d.example/fhir/Observation")), Is.EqualTo(FhirServerPipelines.Shared));
        Assert.That(pipelines.KeyOf(Get("https://e.example/fhir/Observation")), Is.EqualTo(FhirServerPipelines.Shared));
        Assert.That(pipelines.Servers, Is.EquivalentTo(keys), "servers past the capacity are not remembered");

        // A known server keeps its pipeline past the capacity, whatever the path or the case of its host name.
        Assert.That(pipelines.KeyOf(Get("https://A.EXAMPLE/other/base/Patient/1")), Is.EqualTo("https://a.example"));
        // Another port or scheme is another server.
        Assert.That(pipelines.KeyOf(Get("https://a.example:444/fhir")), Is.EqualTo(FhirServerPipelines.Shared));
    }
}
