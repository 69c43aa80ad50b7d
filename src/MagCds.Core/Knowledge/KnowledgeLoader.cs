using System.Text.Json;
using System.Text.Json.Serialization;

namespace MagCds.Core.Knowledge;

/// <summary>Thrown when a knowledge file cannot be used; the service refuses to start with this message.</summary>
public sealed class KnowledgeInvalidException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Loads the knowledge (the embedded default or a deployer's file) and checks it completely, so that a broken
/// knowledge file stops the service at start-up instead of producing wrong guidance later.
/// </summary>
public static class KnowledgeLoader
{
    private const string EmbeddedName = "MagCds.Core.Knowledge.knowledge.json";

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        ReadCommentHandling = JsonCommentHandling.Skip,
        RespectNullableAnnotations = true,
        RespectRequiredConstructorParameters = true,
    };

    /// <summary>Loads <paramref name="path"/> when given, else the knowledge embedded in this assembly.</summary>
    public static KnowledgeBase Load(string? path = null)
    {
        string source = path ?? "embedded knowledge.json";
        try
        {
            using Stream stream = path is null
                ? typeof(KnowledgeLoader).Assembly.GetManifestResourceStream(EmbeddedName)
                  ?? throw new KnowledgeInvalidException("The embedded knowledge.json is missing from MagCds.Core.")
                : File.OpenRead(path);
            var kb = JsonSerializer.Deserialize<KnowledgeBase>(stream, Json)
                     ?? throw new KnowledgeInvalidException($"{source}: the file is empty.");
            Check(kb, source);
            return kb;
        }
        catch (KnowledgeInvalidException) { throw; }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            throw new KnowledgeInvalidException($"{source}: cannot be read as MagCds knowledge: {e.Message}", e);
        }
    }

    private static void Check(KnowledgeBase kb, string source)
    {
        var errors = new List<string>();
        void Require(bool ok, string message) { if (!ok) errors.Add(message); }

        Require(!string.IsNullOrWhiteSpace(kb.Version), "version is empty");
        Require(kb.ImplausibleAbove > 0, "implausibleAbove must be positive");
        CheckUnique(kb.Citations.Select(c => c.Id), "citation", errors);
        CheckUnique(kb.Statements.Select(s => s.Id), "statement", errors);
        CheckUnique(kb.AssayProfiles.Select(p => p.Id), "assay profile", errors);

        var citations = kb.Citations.Select(c => c.Id).ToHashSet(StringComparer.Ordinal);
        var statements = kb.Statements.Select(s => s.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var c in kb.Citations)
        {
            Require(Uri.TryCreate(c.Url, UriKind.Absolute, out _), $"citation '{c.Id}' has no absolute url");
            Require(!string.IsNullOrWhiteSpace(c.Text), $"citation '{c.Id}' has no text");
        }
        foreach (var s in kb.Statements)
        {
            Require(!string.IsNullOrWhiteSpace(s.Text), $"statement '{s.Id}' has no text");
            // Every statement MagCds emits must carry its source.
            Require(s.Citations.Count > 0, $"statement '{s.Id}' cites nothing");
            foreach (var c in s.Citations) Require(citations.Contains(c), $"statement '{s.Id}' cites unknown '{c}'");
        }

        foreach (var c in kb.SourceReferences) Require(citations.Contains(c), $"sourceReferences names unknown citation '{c}'");
        var g = kb.Guidance;
        foreach (var (name, ids) in new[]
                 {
                     ("elevated", g.Elevated), ("options", g.Options), ("not-elevated", g.NotElevated),
                     ("cannot-interpret", g.CannotInterpret), ("trend", g.Trend), ("background", g.Background),
                     ("ordering", g.Ordering),
                 })
        {
            Require(ids.Count > 0, $"guidance '{name}' lists no statement");
            foreach (var id in ids) Require(statements.Contains(id), $"guidance '{name}' names unknown statement '{id}'");
        }

        foreach (var p in kb.AssayProfiles)
        {
            string at = $"assay profile '{p.Id}'";
            // Profile ids are rule codes in RiskAssessment.method, next to the built-in rules.
            Require(Outputs.Vocabulary.Rules.BuiltIn.All(r => r.Code != p.Id), $"{at} uses the id of a built-in rule");
            Require(p.Match.Units.Count > 0, $"{at} matches no unit (a profile must never apply to values of unknown unit)");
            foreach (var u in p.Match.Units)
                Require(u.Unit is not null || u.Code is not null, $"{at} has a unit pattern without unit or code");
            foreach (var c in p.Match.Codes) Require(c.Contains('|', StringComparison.Ordinal), $"{at} code '{c}' is not 'system|code'");
            var ri = p.ReferenceInterval;
            Require(ri.High > 0, $"{at} reference interval high must be positive");
            Require(ri.Low is null || (ri.Low >= 0 && ri.Low < ri.High), $"{at} reference interval low must lie in [0, high)");
            Require(citations.Contains(ri.Citation), $"{at} reference interval cites unknown '{ri.Citation}'");
            Require(!string.IsNullOrWhiteSpace(p.Rule), $"{at} has no rule text");
            foreach (var c in p.Caveats) Require(statements.Contains(c), $"{at} caveat names unknown statement '{c}'");

            // Strata must tile the raised range without gaps or overlaps, so every raised value has exactly one group.
            decimal expectedLow = ri.High;
            for (int i = 0; i < p.Strata.Count; i++)
            {
                var s = p.Strata[i];
                Require(s.Low == expectedLow, $"{at} stratum '{s.Id}' starts at {s.Low}, expected {expectedLow}");
                Require(s.High is null ? i == p.Strata.Count - 1 : s.High > s.Low, $"{at} stratum '{s.Id}' has a bad upper limit");
                foreach (var st in s.Statements) Require(statements.Contains(st), $"{at} stratum '{s.Id}' names unknown statement '{st}'");
                expectedLow = s.High ?? expectedLow;
            }
            if (p.Strata.Count > 0)
            {
                Require(!ri.HighInclusive, $"{at} has strata, so its upper limit must be exclusive (strata start at it)");
                Require(p.Strata[^1].High is null, $"{at} last stratum must be open-ended");
            }
        }

        if (errors.Count > 0)
            throw new KnowledgeInvalidException($"{source} is not valid MagCds knowledge:\n - " + string.Join("\n - ", errors));
    }

    private static void CheckUnique(IEnumerable<string> ids, string what, List<string> errors)
    {
        foreach (var dup in ids.GroupBy(i => i, StringComparer.Ordinal).Where(g => g.Count() > 1))
            errors.Add($"{what} id '{dup.Key}' is used more than once");
    }
}
