using System.Text.RegularExpressions;
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

        var phi = files.SelectMany(f => PhiIn(TestFiles.Resource(f))).Distinct().ToList();
        var lines = factory.Logs.Lines;
        Assert.That(lines, Has.Count.GreaterThan(files.Count * 3), "the run must actually have logged");
        Assert.That(phi, Has.Count.GreaterThan(50), "the scan must actually have PHI to look for");
        Assert.That(phi, Does.Contain("Oakhaven").And.Contain("MRN-77231904").And.Contain("ACC-BTU-MEDIUM").And.Contain("25000"));

        var hits = (from line in lines
                    let scanned = Regex.Replace(line, "\"(@t|Elapsed)\":[^,}]*", "") // time stamps and durations are not PHI
                    from value in phi
                    where Regex.IsMatch(scanned, $@"(?<![\w.-]){Regex.Escape(value)}(?![\w-])")
                    select $"{value} in {line}").Take(10).ToList();
        Assert.That(hits, Is.Empty);
    }

    /// <summary>The sensitive strings of a resource: names, identifier values, resource and patient ids, dates of birth, result values.</summary>
    private static IEnumerable<string> PhiIn(Resource r)
    {
        foreach (var node in r.ToPocoNode().Descendants())
        {
            switch (node.Poco)
            {
                case HumanName n:
                    foreach (var s in n.Given.Append(n.Family)) if (s is { Length: > 2 }) yield return s;
                    break;
                case Identifier { Value.Length: > 2 } i:
                    yield return i.Value;
                    break;
                case ResourceReference { Reference: { } reference }:
                    yield return reference.Split('/').Last();
                    break;
                case Resource { Id.Length: > 2 } res:
                    yield return res.Id;
                    break;
                case Date d when d.Value is not null:
                    yield return d.Value;
                    break;
                case Quantity { Value: decimal v }:
                    string text = v.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    if (text.Length >= 3) yield return text; // "1" or "10" would match unrelated numbers
                    break;
            }
        }
    }
}
