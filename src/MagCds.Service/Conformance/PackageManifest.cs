using System.Text.Json;

namespace MagCds.Service.Conformance;

/// <summary>
/// The package.json of fhir-profiles/ (NPM package metadata, not a FHIR resource). Its version and date are the
/// business version and date of every resource in the package, except the knowledge-versioned ones.
/// </summary>
public sealed record PackageManifest
{
    public required string Name { get; init; }
    public required string Version { get; init; }
    public required string Canonical { get; init; }
    /// <summary>Publication date (FHIR date), used as the date of the generated resources so they are deterministic.</summary>
    public required string Date { get; init; }

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public static PackageManifest Parse(string json) =>
        JsonSerializer.Deserialize<PackageManifest>(json, Json) ?? throw new InvalidOperationException("package.json is empty.");
}
