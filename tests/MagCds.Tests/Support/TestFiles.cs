using System.Text.Json;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;

namespace MagCds.Tests.Support;

/// <summary>The embedded test data: real FHIR files plus cases.json, the table of expected outcomes.</summary>
public static class TestFiles
{
    public static string Text(string name)
    {
        using var s = typeof(TestFiles).Assembly.GetManifestResourceStream("TestData/" + name)
                      ?? throw new FileNotFoundException("No embedded test file " + name);
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>A test file's exact bytes (the hostile corpus holds invalid UTF-8 on purpose).</summary>
    public static byte[] Bytes(string name)
    {
        using var s = typeof(TestFiles).Assembly.GetManifestResourceStream("TestData/" + name)
                      ?? throw new FileNotFoundException("No embedded test file " + name);
        using var m = new MemoryStream();
        s.CopyTo(m);
        return m.ToArray();
    }

    public static Resource Resource(string name) => new FhirJsonDeserializer().DeserializeResource(Text(name));

    public static T Resource<T>(string name) where T : Resource => (T)Resource(name);

    public static IReadOnlyList<Case> Cases { get; } =
        JsonSerializer.Deserialize<List<Case>>(Text("cases.json"), new JsonSerializerOptions(JsonSerializerDefaults.Web))!;

    public static IEnumerable<TestCaseData> CaseData(Func<Case, bool>? where = null) =>
        Cases.Where(where ?? (_ => true)).Select(c => new TestCaseData(c).SetArgDisplayNames(c.File));

    public static IEnumerable<string> AllFiles() =>
        typeof(TestFiles).Assembly.GetManifestResourceNames().Where(n => n.StartsWith("TestData/", StringComparison.Ordinal) && !n.StartsWith("TestData/Hostile/", StringComparison.Ordinal) && n.EndsWith(".json", StringComparison.Ordinal) && !n.EndsWith("cases.json", StringComparison.Ordinal))
            .Select(n => n["TestData/".Length..]).Order(StringComparer.Ordinal);
}

/// <summary>One row of cases.json: a test file and what MagCds must make of it (for the first anti-MAG input).</summary>
public sealed record Case(
    string File, int Http, string? About, string? Category, string? Stratum, int RiskAssessments, int DetectedIssues,
    List<string>? Codes, string? Rule, string? Status, string? Reason, decimal? PercentFromPrevious, decimal? PercentFromFirst)
{
    public override string ToString() => File;
}
