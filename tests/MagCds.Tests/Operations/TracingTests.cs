using System.Collections.Concurrent;
using System.Diagnostics;
using MagCds.Service.Hosting;
using MagCds.Tests.Support;

namespace MagCds.Tests.Operations;

/// <summary>Trace spans, like log lines, name routes and redacted URLs, never paths that can hold a patient id.</summary>
[NonParallelizable]
public sealed class TracingTests
{
    [Test]
    public async Task Incoming_request_spans_carry_the_route_not_the_path()
    {
        var spans = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == "Microsoft.AspNetCore",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Enqueue,
        };
        ActivitySource.AddActivityListener(listener);
        // Tracing is on when an OTLP endpoint is set; nothing listens there (export failures are silent).
        using var f = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:Telemetry:OtlpEndpoint"] = "http://127.0.0.1:9" });
        using var client = f.CreateClient();
        using (var r = await client.GetAsync("/fhir/Patient/pat-oakhaven?identifier=MRN-77231904")) Assert.That((int)r.StatusCode, Is.EqualTo(404));
        using (var r = await client.GetAsync("/fhir/StructureDefinition/magcds-observation")) Assert.That((int)r.StatusCode, Is.EqualTo(200));

        var tags = spans.SelectMany(a => a.TagObjects).Select(t => $"{t.Key}={t.Value}").ToList();
        Assert.That(tags, Does.Contain("url.path=/fhir/StructureDefinition/{id}").And.Contain("url.path=(no route)"));
        Assert.That(tags, Has.None.Contains("pat-oakhaven").And.None.Contains("MRN-77231904").And.None.Contains("magcds-observation"));
    }

    [TestCase("https://ehr.example/fhir/r4/Patient/pat-oakhaven", "https://ehr.example/fhir/r4/Patient/{id}")]
    [TestCase("https://ehr.example/fhir/Observation?subject=Patient/pat-oakhaven&code=x", "https://ehr.example/fhir/Observation")]
    [TestCase("https://ehr.example:8443/Observation/obs-1/_history/3", "https://ehr.example:8443/Observation/{id}/_history/3")]
    [TestCase("https://ehr.example/fhir/Subscription/sub-1/$events", "https://ehr.example/fhir/Subscription/{id}/$events")]
    public void Outgoing_FHIR_URLs_lose_their_ids_and_query(string url, string expected) =>
        Assert.That(Telemetry.RedactedUrl(new Uri(url)), Is.EqualTo(expected));
}
