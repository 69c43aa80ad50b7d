using System.Text.Json.Nodes;
using MagCds.Core.Knowledge;

namespace MagCds.Tests.Core;

public class KnowledgeTests
{
    private static string EmbeddedJson()
    {
        using var s = typeof(KnowledgeLoader).Assembly.GetManifestResourceStream("MagCds.Core.Knowledge.knowledge.json")!;
        return new StreamReader(s).ReadToEnd();
    }

    [Test]
    public void Embedded_knowledge_loads_with_both_shipped_assay_profiles()
    {
        var kb = KnowledgeLoader.Load();
        Assert.Multiple(() =>
        {
            Assert.That(kb.Version, Is.Not.Empty);
            Assert.That(kb.AssayProfiles.Select(p => p.Id), Is.EquivalentTo(new[] { "source-document-units", "buhlmann-btu" }));
            var btu = kb.AssayProfiles.Single(p => p.Id == "buhlmann-btu");
            Assert.That(btu.ReferenceInterval.High, Is.EqualTo(1000m));
            Assert.That(btu.Strata.Select(s => (s.Low, s.High)), Is.EqualTo(new (decimal, decimal?)[] { (1000m, 10000m), (10000m, 70000m), (70000m, null) }));
            var units = kb.AssayProfiles.Single(p => p.Id == "source-document-units");
            Assert.That((units.ReferenceInterval.Low, units.ReferenceInterval.High), Is.EqualTo(((decimal?)0.1m, 10m)));
        });
    }

    [Test]
    public void Every_statement_cites_a_known_source_and_the_two_references_of_the_source_document_are_present()
    {
        var kb = KnowledgeLoader.Load();
        Assert.That(kb.Statements.All(s => s.Citations.Count > 0), Is.True);
        var texts = string.Join(" ", kb.Citations.Select(c => c.Text));
        Assert.That(texts, Does.Contain("10.1136/jnnp-2017-316715").And.Contain("17241126"));
    }

    private static string Broken(Action<JsonObject> edit)
    {
        var root = JsonNode.Parse(EmbeddedJson())!.AsObject();
        edit(root);
        string path = Path.Combine(Path.GetTempPath(), $"magcds-knowledge-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, root.ToJsonString());
        return path;
    }

    /// <summary>A profile's interval reads the same wherever it is shown, and says whether its upper limit is included.</summary>
    [TestCase(null, 1000, false, "below 1000 BTU")]
    [TestCase(null, 1000, true, "up to 1000 BTU")]
    [TestCase(0.1, 10, true, "0.1-10 BTU")]
    public void A_profile_interval_is_shown_with_its_limit_included_or_not(double? low, double high, bool inclusive, string expected) =>
        Assert.That(new ProfileInterval((decimal)high, inclusive, "BTU", "epa-mag", "a label", (decimal?)low).Text(), Is.EqualTo(expected));

    private static IEnumerable<TestCaseData> BrokenFiles()
    {
        yield return new TestCaseData((Action<JsonObject>)(r => r["statements"]![0]!["citations"] = new JsonArray()), "cites nothing").SetArgDisplayNames("uncited statement");
        yield return new TestCaseData((Action<JsonObject>)(r => r["statements"]![0]!["citations"] = new JsonArray("nowhere")), "cites unknown 'nowhere'").SetArgDisplayNames("unknown citation");
        yield return new TestCaseData((Action<JsonObject>)(r => r["guidance"]!["elevated"] = new JsonArray("no-such-statement")), "unknown statement 'no-such-statement'").SetArgDisplayNames("unknown guidance statement");
        yield return new TestCaseData((Action<JsonObject>)(r => r["assayProfiles"]![1]!["strata"]![1]!["low"] = 12000), "starts at 12000, expected 10000").SetArgDisplayNames("gap between strata");
        yield return new TestCaseData((Action<JsonObject>)(r => r["assayProfiles"]![0]!["match"]!["units"] = new JsonArray()), "matches no unit").SetArgDisplayNames("profile without unit");
        yield return new TestCaseData((Action<JsonObject>)(r => r["bogus"] = 1), "cannot be read").SetArgDisplayNames("unknown member");
        yield return new TestCaseData((Action<JsonObject>)(r => r.Remove("version")), "cannot be read").SetArgDisplayNames("missing version");
        // Empty (null) entries: refused by name, not a crash while checking.
        yield return new TestCaseData((Action<JsonObject>)(r => r["statements"]!.AsArray().Add(null)), "statements[").SetArgDisplayNames("null statement");
        yield return new TestCaseData((Action<JsonObject>)(r => r["citations"]!.AsArray().Add(null)), "citations[7] is empty (null)").SetArgDisplayNames("null citation");
        yield return new TestCaseData((Action<JsonObject>)(r => r["assayProfiles"]!.AsArray().Add(null)), "assayProfiles[2] is empty (null)").SetArgDisplayNames("null profile");
        yield return new TestCaseData((Action<JsonObject>)(r => r["assayProfiles"]![1]!["strata"]!.AsArray().Insert(0, null)), "assayProfiles[1].strata[0] is empty (null)").SetArgDisplayNames("null stratum");
        yield return new TestCaseData((Action<JsonObject>)(r => r["assayProfiles"]![1]!["match"]!["units"]!.AsArray().Add(null)), ".match.units[").SetArgDisplayNames("null unit pattern");
        // Knowledge the engine could not run or publish.
        yield return new TestCaseData((Action<JsonObject>)(r => r["assayProfiles"]![1]!["strata"]![1]!["statements"] = new JsonArray()), "stratum 'medium' lists no statement").SetArgDisplayNames("stratum without statement");
        yield return new TestCaseData((Action<JsonObject>)(r => RenameCitation(r, "source-document", "the-guide")), "no citation with id 'source-document'").SetArgDisplayNames("no source document");
        yield return new TestCaseData((Action<JsonObject>)(r => r["assayProfiles"]![1]!["id"] = "buhlmann btu "), "id must be 1 to 64 letters").SetArgDisplayNames("profile id not a code");
        yield return new TestCaseData((Action<JsonObject>)(r => r["assayProfiles"]![1]!["name"] = ""), "has no name").SetArgDisplayNames("profile without name");
        yield return new TestCaseData((Action<JsonObject>)(r => r["assayProfiles"]![0]!["referenceInterval"]!.AsObject().Remove("label")), "missing required properties including: 'label'").SetArgDisplayNames("profile interval without label");
        yield return new TestCaseData((Action<JsonObject>)(r => r["assayProfiles"]![0]!["referenceInterval"]!["label"] = " "), "reference interval has no label").SetArgDisplayNames("profile interval with a blank label");
        yield return new TestCaseData((Action<JsonObject>)(r => r["assayProfiles"]![1]!["strata"]![2]!["id"] = "medium"), "stratum id 'medium' is used more than once").SetArgDisplayNames("duplicate stratum id");
        yield return new TestCaseData((Action<JsonObject>)(r => r["citations"]![1]!["url"] = "javascript:alert(1)"), "has no absolute http(s) url").SetArgDisplayNames("citation url not a web address");
        yield return new TestCaseData((Action<JsonObject>)(r => r["citations"]![1]!["label"] = " "), "has no label").SetArgDisplayNames("citation without label");
        yield return new TestCaseData((Action<JsonObject>)(r => r["implausibleAbove"] = 5000), "stratum 'medium' starts above implausibleAbove").SetArgDisplayNames("implausible limit below the strata");
    }

    /// <summary>Renames a citation everywhere it is named (consistently: only the id itself is then missing).</summary>
    private static void RenameCitation(JsonObject root, string from, string to)
    {
        string text = root.ToJsonString().Replace($"\"{from}\"", $"\"{to}\"", StringComparison.Ordinal);
        var renamed = JsonNode.Parse(text)!.AsObject();
        foreach (var name in root.Select(p => p.Key).ToList()) root[name] = renamed[name]!.DeepClone();
    }

    [TestCaseSource(nameof(BrokenFiles))]
    public void A_broken_knowledge_file_is_refused_with_a_message_that_says_what_is_wrong(Action<JsonObject> edit, string expected)
    {
        string path = Broken(edit);
        try
        {
            var e = Assert.Throws<KnowledgeInvalidException>(() => KnowledgeLoader.Load(path));
            Assert.That(e!.Message, Does.Contain(expected).And.Contain(path));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void A_knowledge_file_that_says_something_else_needs_a_version_of_its_own()
    {
        string same = Broken(_ => { });
        string changed = Broken(r => r["statements"]![0]!["text"] = r["statements"]![0]!["text"]!.GetValue<string>() + " (edited)");
        string versioned = Broken(r =>
        {
            r["statements"]![0]!["text"] = r["statements"]![0]!["text"]!.GetValue<string>() + " (edited)";
            r["version"] = "2026.11.2-hospital.1";
        });
        try
        {
            Assert.That(KnowledgeLoader.Load(same).Version, Is.EqualTo(KnowledgeLoader.Load().Version), "a copy of the embedded knowledge is fine");
            var e = Assert.Throws<KnowledgeInvalidException>(() => KnowledgeLoader.Load(changed));
            Assert.That(e!.Message, Does.Contain("the version of the embedded knowledge").And.Contain(changed));
            Assert.That(KnowledgeLoader.Load(versioned).Version, Is.EqualTo("2026.11.2-hospital.1"));
        }
        finally { foreach (var f in new[] { same, changed, versioned }) File.Delete(f); }
    }

    [Test]
    public void A_missing_knowledge_file_is_refused_clearly()
    {
        var e = Assert.Throws<KnowledgeInvalidException>(() => KnowledgeLoader.Load("/nonexistent/knowledge.json"));
        Assert.That(e!.Message, Does.Contain("/nonexistent/knowledge.json"));
    }
}
