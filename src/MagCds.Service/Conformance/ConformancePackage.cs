using System.Collections.Frozen;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Core;
using MagCds.Core.Evaluation;

namespace MagCds.Service.Conformance;

/// <summary>
/// The conformance package the service serves and validates with: the authored resources of fhir-profiles/package
/// (profiles with their snapshots, the $mag-evaluate OperationDefinition), embedded at build time and moved to the
/// configured canonical base, plus the resources generated from the running knowledge and settings
/// (<see cref="PackageArtifacts"/>). Built once at start-up; read-only afterwards.
/// </summary>
public sealed class ConformancePackage
{
    private const string EmbeddedPrefix = "fhir-profiles/package/";
    private readonly FrozenDictionary<(string Type, string Id), Resource> _byId;

    public PackageManifest Manifest { get; }
    public IReadOnlyList<Resource> Resources { get; }
    public OperationDefinition MagEvaluate { get; }
    public CapabilityStatement CapabilityStatement { get; }

    private ConformancePackage(PackageManifest manifest, IReadOnlyList<Resource> resources)
    {
        Manifest = manifest;
        Resources = resources;
        _byId = resources.ToFrozenDictionary(r => (r.TypeName, r.Id ?? ""));
        MagEvaluate = resources.OfType<OperationDefinition>().Single(o => o.Id == "mag-evaluate");
        CapabilityStatement = resources.OfType<CapabilityStatement>().Single();
    }

    /// <summary>The authored resources (already at their final canonical base) plus everything generated from <paramref name="evaluator"/>.</summary>
    public static ConformancePackage Create(PackageManifest manifest, IReadOnlyList<Resource> authored, Evaluator evaluator)
    {
        var op = authored.OfType<OperationDefinition>().Single(o => o.Id == "mag-evaluate");
        var all = authored.Concat(PackageArtifacts.Generate(evaluator, manifest, op)).ToList();
        return new ConformancePackage(manifest, all);
    }

    /// <summary>The package embedded in this assembly, moved to the evaluator's canonical base.</summary>
    public static ConformancePackage FromEmbedded(Evaluator evaluator)
    {
        var assembly = typeof(ConformancePackage).Assembly;
        string Read(string name)
        {
            using var stream = assembly.GetManifestResourceStream(name) ?? throw new InvalidOperationException($"{name} is not embedded.");
            using var reader = new StreamReader(stream);
            return Rebase(reader.ReadToEnd(), evaluator.Canonical);
        }

        var manifest = PackageManifest.Parse(Read(EmbeddedPrefix + "package.json"));
        var parser = new FhirJsonDeserializer();
        var authored = assembly.GetManifestResourceNames()
            .Where(n => n.StartsWith(EmbeddedPrefix, StringComparison.Ordinal) && n != EmbeddedPrefix + "package.json")
            .Order(StringComparer.Ordinal)
            .Select(n => parser.DeserializeResource(Read(n)))
            .ToList();
        return Create(manifest, authored, evaluator);
    }

    /// <summary>
    /// Moves text written with the default canonical base to <paramref name="urls"/>' base. The package is authored
    /// with one base, so a plain replacement moves every canonical, binding, fixed system and reference consistently.
    /// </summary>
    public static string Rebase(string text, CanonicalUrls urls) =>
        urls.Base == CanonicalUrls.DefaultBase ? text : text.Replace(CanonicalUrls.DefaultBase, urls.Base, StringComparison.Ordinal);

    public Resource? Read(string type, string id) => _byId.GetValueOrDefault((type, id));

    /// <summary>Resources of <paramref name="type"/>, filtered by canonical url (a <c>url|version</c> form is accepted) and version.</summary>
    public IEnumerable<Resource> Search(string type, string? url, string? version)
    {
        if (url?.Split('|', 2) is [var u, var v]) (url, version) = (u, version ?? v);
        return Resources.Where(r => r.TypeName == type)
            .Where(r => url is null || PackageArtifacts.CanonicalOf(r).Url == url)
            .Where(r => version is null || PackageArtifacts.CanonicalOf(r).Version == version);
    }
}
