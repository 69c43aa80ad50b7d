using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Service.FhirRest;
using MagCds.Tests.Support;

namespace MagCds.Tests.FhirRest;

/// <summary>
/// No PHI in logs: every test file goes through the FHIR REST door in both formats (plus refused requests) and
/// through the CDS Hooks door, and the captured
/// log lines are searched for every name, identifier, id, birth date and result value in the test data.
/// </summary>
public class LogPhiTests
{
    [Test]
    public async Task The_logs_of_a_full_API_run_contain_none_of_the_PHI_in_the_test_data()
    {
        using var factory = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true" });
        using var client = factory.CreateClient();
        var files = TestFiles.AllFiles().ToList();
        foreach (var file in files)
        {
            var r = TestFiles.Resource(file);
            foreach (var fmt in new[] { FhirFormat.Json, FhirFormat.Xml })
                await client.PostAsync(Http.Evaluate, Http.Body(r, fmt));
            // A refused request (wrong content type) with the same PHI in its body.
            await client.PostAsync(Http.Evaluate, Http.Raw(TestFiles.Text(file), "text/plain"));
            // An unparseable one that quotes the PHI.
            await client.PostAsync(Http.Evaluate, Http.Raw(TestFiles.Text(file).Replace("\"status\"", "\"bogus\""), "application/fhir+json"));
            // The same results through the CDS Hooks door, as prefetch of a patient-view call.
            var observations = r switch
            {
                Observation o => [o],
                Parameters p => p.Parameter.Select(x => x.Resource).OfType<Observation>().ToList(),
                Bundle b => b.Entry.Select(e => e.Resource).OfType<Observation>().ToList(),
                _ => new List<Observation>(),
            };
            await client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", CdsKit.PatientView("pat-oakhaven", observations), null));
        }

        var phi = PhiScan.Values;
        Assert.That(factory.Logs.Lines, Has.Count.GreaterThan(files.Count * 3), "the run must actually have logged");
        Assert.That(phi, Has.Count.GreaterThan(50), "the scan must actually have PHI to look for");
        Assert.That(phi, Does.Contain("Oakhaven").And.Contain("MRN-77231904").And.Contain("ACC-BTU-MEDIUM").And.Contain("25000"));
        Assert.That(PhiScan.Hits(factory.Logs.Lines), Is.Empty);
        Assert.That(PhiScan.Hits(factory.Logs.Templated), Is.Empty);
    }

    [Test]
    public void The_scan_finds_PHI_in_a_log_line()
    {
        // The suite-wide scan (every MagCdsFactory's logs, PhiScan) must be able to fail: a line quoting a name, an
        // identifier or a value is reported, and a time stamp that happens to contain a value is not.
        Assert.That(PhiScan.Hits(["{\"@mt\":\"patient Oakhaven\"}"]), Has.Count.EqualTo(1));
        Assert.That(PhiScan.Hits(["{\"@mt\":\"accession ACC-BTU-MEDIUM done\"}"]), Has.Count.EqualTo(1));
        Assert.That(PhiScan.Hits(["{\"@t\":\"2026-01-01T00:25000Z\",\"@mt\":\"evaluated\"}"]), Is.Empty);
        Assert.That(PhiScan.Hits(["{\"@mt\":\"assessed (lag {LagMs} ms)\",\"LagMs\":25000}"]), Is.Empty, "a duration that equals a value");
        Assert.That(PhiScan.Hits(["{\"@mt\":\"assessed\",\"Value\":25000}"]), Has.Count.EqualTo(1), "a value as a property");
        // A formatted duration is also rendered in "@r" (the worker's "{LagMs:0}" once rendered a 640 ms lag as "640",
        // a test value); the renderings are not searched, the properties they render are.
        Assert.That(PhiScan.Hits(["{\"@mt\":\"assessed (lag {LagMs:0} ms)\",\"@r\":[\"25000\"],\"LagMs\":25000.4}"]), Is.Empty, "a formatted duration");
        Assert.That(PhiScan.Hits(["{\"@mt\":\"assessed {Value:0}\",\"@r\":[\"25000\"],\"Value\":25000.0}"]), Has.Count.EqualTo(1), "a formatted value");
    }
}
