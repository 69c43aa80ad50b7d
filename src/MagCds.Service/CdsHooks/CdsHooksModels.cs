using System.Text.Json;
using System.Text.Json.Serialization;
using Hl7.Fhir.Serialization;

namespace MagCds.Service.CdsHooks;

// The CDS Hooks 2.0 wire format. Optional members are null when absent and never written (the spec forbids null
// and empty values), so builders leave empty lists null. FHIR resources inside are written by the Firely serializer
// (its System.Text.Json converters, registered by ForFhir), never by a generic JSON serializer.

public sealed record DiscoveryResponse(IReadOnlyList<ServiceDescriptor> Services);

public sealed record ServiceDescriptor(
    string Hook, string Title, string Description, string Id, IReadOnlyDictionary<string, string>? Prefetch, string? UsageRequirements);

public sealed record CdsResponse(IReadOnlyList<Card> Cards);

public sealed record Card
{
    public required string Uuid { get; init; }
    public required string Summary { get; init; }
    public string? Detail { get; init; }
    public required string Indicator { get; init; }
    public required CardSource Source { get; init; }
    public IReadOnlyList<Suggestion>? Suggestions { get; init; }
    public string? SelectionBehavior { get; init; }
    public IReadOnlyList<CdsCoding>? OverrideReasons { get; init; }
    public IReadOnlyList<CardLink>? Links { get; init; }
}

public sealed record CardSource(string Label, string? Url);

public sealed record Suggestion(string Label, string Uuid, bool? IsRecommended, IReadOnlyList<CdsAction> Actions);

public sealed record CdsAction(string Type, string Description, Hl7.Fhir.Model.Resource? Resource);

public sealed record CardLink(string Label, string Url, string Type);

public sealed record CdsCoding(string Code, string System, string? Display);

public static class CdsJson
{
    public static JsonSerializerOptions Options { get; } = Build();

    private static JsonSerializerOptions Build()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull }.ForFhir();
        // ForFhir sets the relaxed escaping of the Firely serializer; JsonEscaping writes the same bytes, and writes
        // the card's markdown (a line break every few lines) quickly.
        options.Encoder = MagCds.Service.FhirRest.JsonEscaping.Instance;
        return options;
    }
}
