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
            var empty = NullEntries(kb);
            if (empty.Count > 0)
                throw new KnowledgeInvalidException($"{source} is not valid MagCds knowledge:\n - " + string.Join("\n - ", empty));
            Check(kb, source);
            if (path is not null && Load() is var embedded && embedded.Version == kb.Version
                && JsonSerializer.Serialize(embedded, Json) != JsonSerializer.Serialize(kb, Json))
                throw new KnowledgeInvalidException(
                    $"{source} is not valid MagCds knowledge:\n - it carries version '{kb.Version}', the version of the embedded knowledge, but says something else: " +
                    "give it a version of its own, so that every output names the knowledge it came from.");
            return kb;
        }
        catch (KnowledgeInvalidException) { throw; }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            throw new KnowledgeInvalidException($"{source}: cannot be read as MagCds knowledge: {e.Message}", e);
        }
    }

    /// <summary>
    /// Empty (null) entries of lists: the JSON reader refuses null members but not null list items, and every later
    /// check reads the items.
    /// </summary>
    private static List<string> NullEntries(KnowledgeBase kb)
    {
        var found = new List<string>();
        void In<T>(IReadOnlyList<T?> list, string where)
        {
            for (int i = 0; i < list.Count; i++) if (list[i] is null) found.Add($"{where}[{i}] is empty (null)");
        }
        In(kb.Citations, "citations");
        In(kb.Statements, "statements");
        In(kb.AssayProfiles, "assayProfiles");
        In(kb.SourceReferences, "sourceReferences");
        foreach (var (name, ids) in kb.Guidance.Named()) In(ids, "guidance." + name);
        for (int i = 0; i < kb.Statements.Count; i++)
            if (kb.Statements[i] is { } s) In(s.Citations, $"statements[{i}].citations");
        for (int i = 0; i < kb.AssayProfiles.Count; i++)
        {
            if (kb.AssayProfiles[i] is not { } p) continue;
            string at = $"assayProfiles[{i}]";
            In(p.Match.Units, at + ".match.units");
            In(p.Match.Codes, at + ".match.codes");
            In(p.Match.Methods, at + ".match.methods");
            In(p.Match.Performers, at + ".match.performers");
            In(p.Caveats, at + ".caveats");
            In(p.Strata, at + ".strata");
            for (int j = 0; j < p.Strata.Count; j++)
                if (p.Strata[j] is { } s) In(s.Statements, $"{at}.strata[{j}].statements");
        }
        return found;
    }

    /// <summary>Ids that become FHIR codes and element ids (rule codes, titre groups): letters, digits, '-' and '.'.</summary>
    private static bool IsCodeLike(string id) =>
        id.Length is > 0 and <= 64 && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.');

    private static void Check(KnowledgeBase kb, string source)
    {
        var errors = new List<string>();
        void Require(bool ok, string message) { if (!ok) errors.Add(message); }

        Require(!string.IsNullOrWhiteSpace(kb.Version), "version is empty");
        Require(!string.IsNullOrWhiteSpace(kb.Title), "title is empty");
        Require(kb.ImplausibleAbove > 0, "implausibleAbove must be positive");
        CheckUnique(kb.Citations.Select(c => c.Id), "citation", errors);
        CheckUnique(kb.Statements.Select(s => s.Id), "statement", errors);
        CheckUnique(kb.AssayProfiles.Select(p => p.Id), "assay profile", errors);

        var citations = kb.Citations.Select(c => c.Id).ToHashSet(StringComparer.Ordinal);
        var statements = kb.Statements.Select(s => s.Id).ToHashSet(StringComparer.Ordinal);
        // The fallback source of outputs that no profile or titre group judged (the lab's own range or flag).
        Require(citations.Contains(KnowledgeBase.SourceDocumentCitation), $"no citation with id '{KnowledgeBase.SourceDocumentCitation}' (the source document)");
        foreach (var c in kb.Citations)
        {
            // Citation URLs become links in cards EHRs render: web addresses only (no javascript:, data: or file:).
            Require(Uri.TryCreate(c.Url, UriKind.Absolute, out var url) && url.Scheme is "https" or "http", $"citation '{c.Id}' has no absolute http(s) url");
            Require(!string.IsNullOrWhiteSpace(c.Text), $"citation '{c.Id}' has no text");
            Require(!string.IsNullOrWhiteSpace(c.Label), $"citation '{c.Id}' has no label");
        }
        foreach (var s in kb.Statements)
        {
            Require(!string.IsNullOrWhiteSpace(s.Text), $"statement '{s.Id}' has no text");
            // Every statement MagCds emits must carry its source.
            Require(s.Citations.Count > 0, $"statement '{s.Id}' cites nothing");
            foreach (var c in s.Citations) Require(citations.Contains(c), $"statement '{s.Id}' cites unknown '{c}'");
        }

        foreach (var c in kb.SourceReferences) Require(citations.Contains(c), $"sourceReferences names unknown citation '{c}'");
        foreach (var (name, ids) in kb.Guidance.Named())
        {
            Require(ids.Count > 0, $"guidance '{name}' lists no statement");
            foreach (var id in ids) Require(statements.Contains(id), $"guidance '{name}' names unknown statement '{id}'");
        }

        foreach (var p in kb.AssayProfiles)
        {
            string at = $"assay profile '{p.Id}'";
            // Profile ids are rule codes in RiskAssessment.method, next to the built-in rules.
            Require(IsCodeLike(p.Id), $"{at} id must be 1 to 64 letters, digits, '-' or '.' (it is a FHIR code)");
            Require(Outputs.Vocabulary.Rules.BuiltIn.All(r => r.Code != p.Id), $"{at} uses the id of a built-in rule");
            Require(!string.IsNullOrWhiteSpace(p.Name), $"{at} has no name");
            Require(p.ReferenceInterval.High < kb.ImplausibleAbove, $"{at} reference interval lies above implausibleAbove, so no result could reach it");
            Require(p.Match.Units.Count > 0, $"{at} matches no unit (a profile must never apply to values of unknown unit)");
            foreach (var u in p.Match.Units)
                Require(u.Unit is not null || u.Code is not null, $"{at} has a unit pattern without unit or code");
            foreach (var c in p.Match.Codes) Require(c.Contains('|', StringComparison.Ordinal), $"{at} code '{c}' is not 'system|code'");
            var ri = p.ReferenceInterval;
            Require(ri.High > 0, $"{at} reference interval high must be positive");
            Require(ri.Low is null || (ri.Low >= 0 && ri.Low < ri.High), $"{at} reference interval low must lie in [0, high)");
            Require(citations.Contains(ri.Citation), $"{at} reference interval cites unknown '{ri.Citation}'");
            Require(!string.IsNullOrWhiteSpace(ri.Label), $"{at} reference interval has no label (what the interval is, shown beside it)");
            Require(!string.IsNullOrWhiteSpace(p.Rule), $"{at} has no rule text");
            foreach (var c in p.Caveats) Require(statements.Contains(c), $"{at} caveat names unknown statement '{c}'");

            // Strata must tile the raised range without gaps or overlaps, so every raised value has exactly one group.
            CheckUnique(p.Strata.Select(s => s.Id), $"{at} stratum", errors);
            decimal expectedLow = ri.High;
            for (int i = 0; i < p.Strata.Count; i++)
            {
                var s = p.Strata[i];
                Require(IsCodeLike(s.Id), $"{at} stratum id '{s.Id}' must be 1 to 64 letters, digits, '-' or '.'");
                Require(!string.IsNullOrWhiteSpace(s.Name), $"{at} stratum '{s.Id}' has no name");
                // A titre group's first statement is what its outputs cite as their source.
                Require(s.Statements.Count > 0, $"{at} stratum '{s.Id}' lists no statement");
                Require(s.Low < kb.ImplausibleAbove, $"{at} stratum '{s.Id}' starts above implausibleAbove, so no result could reach it");
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
