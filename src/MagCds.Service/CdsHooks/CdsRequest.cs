using System.Text.Json;
using Hl7.Fhir.Model;
using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;

namespace MagCds.Service.CdsHooks;

/// <summary>What a prefetch key held: not sent (fetch it yourself), null (fetched, nothing found), a resource, or a failure.</summary>
public abstract record PrefetchSlot
{
    public sealed record Missing : PrefetchSlot;
    public sealed record Empty : PrefetchSlot;
    public sealed record Found(Resource Resource) : PrefetchSlot;
    /// <summary>The client could not satisfy the key and said so with an OperationOutcome.</summary>
    public sealed record Failed : PrefetchSlot;

    public static readonly PrefetchSlot NotSent = new Missing();
}

/// <summary>A validated CDS Hooks call. The access token is kept only for the FHIR queries of this call.</summary>
public sealed record CdsCall(
    string ServiceId,
    string Hook,
    string HookInstance,
    Uri? FhirServer,
    string? AccessToken,
    string PatientId,
    IReadOnlyList<string> Selections,
    Bundle? DraftOrders,
    IReadOnlyDictionary<string, PrefetchSlot> Prefetch)
{
    public PrefetchSlot Slot(string key) => Prefetch.TryGetValue(key, out var s) ? s : PrefetchSlot.NotSent;

    /// <summary>
    /// False when <see cref="FhirServer"/> is not one MagCds may read for this caller: it still says whose data the
    /// prefetch holds (a subject's absolute URL on that server is this patient), but nothing is fetched from it.
    /// </summary>
    public bool MayQueryFhirServer { get; init; } = true;

    /// <summary>The user is the patient or someone close to them (context.userId a Patient or RelatedPerson): a portal.</summary>
    public bool ForPatient { get; init; }

    // The token must never reach a log or an error message, even through a record's generated ToString.
    public override string ToString() => $"CdsCall {{ ServiceId = {ServiceId}, Hook = {Hook} }}";
}

/// <summary>
/// Reads and checks a CDS Hooks request body. Anything the spec requires that is missing or of the wrong type is a
/// 400 with an OperationOutcome saying which member; members the spec does not define are ignored.
/// </summary>
public static class CdsRequestReader
{
    // A member given twice ("patientId" twice) is refused: a gateway reading the first and MagCds the last would
    // disagree about the patient.
    private static readonly JsonDocumentOptions JsonOptions = new() { MaxDepth = 128, AllowDuplicateProperties = false };

    public static CdsCall Read(ReadOnlyMemory<byte> body, ServiceDescriptor service, bool allowInsecureFhirServer)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(WithoutBom(body), JsonOptions); }
        catch (JsonException e) { throw Bad(NotJson(e)); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad("The body must be a JSON object.");

            string hook = RequiredString(root, "hook");
            if (hook != service.Hook)
                throw Bad($"Service '{service.Id}' answers the '{service.Hook}' hook, not the one the request names.");
            string hookInstance = RequiredString(root, "hookInstance");
            if (!Guid.TryParse(hookInstance, out _)) throw Bad("hookInstance must be a UUID.");

            Uri? fhirServer = null;
            if (OptionalString(root, "fhirServer") is { } fs)
            {
                if (!Uri.TryCreate(fs, UriKind.Absolute, out fhirServer) || (fhirServer.Scheme != Uri.UriSchemeHttps && !(allowInsecureFhirServer && fhirServer.Scheme == Uri.UriSchemeHttp)))
                    throw Bad("fhirServer must be an absolute https URL.");
            }
            string? token = null;
            if (root.TryGetProperty("fhirAuthorization", out var auth) && auth.ValueKind != JsonValueKind.Null)
            {
                if (auth.ValueKind != JsonValueKind.Object) throw Bad("fhirAuthorization must be an object.");
                if (fhirServer is null) throw Bad("fhirServer is required when fhirAuthorization is given.");
                token = RequiredString(auth, "access_token", "fhirAuthorization.");
                string type = RequiredString(auth, "token_type", "fhirAuthorization.");
                if (!type.Equals("Bearer", StringComparison.OrdinalIgnoreCase)) throw Bad("fhirAuthorization.token_type must be Bearer.");
            }
            if (root.TryGetProperty("extension", out var ext) && ext.ValueKind != JsonValueKind.Object)
                throw Bad("extension must be a JSON object.");

            if (!root.TryGetProperty("context", out var ctx) || ctx.ValueKind != JsonValueKind.Object)
                throw Bad("context is required and must be an object.");
            // [ResourceType]/[id], of the user types the hooks name (patient-view allows patients and relatives).
            string userType = UserType(RequiredString(ctx, "userId", "context."))
                ?? throw Bad("context.userId must be Practitioner/<id>, PractitionerRole/<id>, Patient/<id> or RelatedPerson/<id>.");
            string patientId = RequiredString(ctx, "patientId", "context.");
            // The FHIR id, not a reference: "Patient/123" would match no result's subject, and every result would be
            // set aside as another patient's, answering "nothing to show" for a patient who may have a raised result.
            if (patientId.Any(c => c == '/' || char.IsWhiteSpace(c) || char.IsControl(c)))
                throw Bad("context.patientId must be the patient's FHIR id (such as 123), not a reference (Patient/123); it may not hold '/', spaces or control characters.");

            var selections = new List<string>();
            Bundle? draftOrders = null;
            if (hook is "order-select" or "order-sign")
            {
                if (!ctx.TryGetProperty("draftOrders", out var d) || d.ValueKind != JsonValueKind.Object)
                    throw Bad("context.draftOrders is required and must be a Bundle.");
                draftOrders = ParseResource(d, "context.draftOrders") as Bundle ?? throw Bad("context.draftOrders must be a Bundle.");
            }
            if (hook == "order-select")
            {
                if (!ctx.TryGetProperty("selections", out var sel) || sel.ValueKind != JsonValueKind.Array)
                    throw Bad("context.selections is required and must be an array.");
                foreach (var s in sel.EnumerateArray())
                    selections.Add(s.ValueKind == JsonValueKind.String ? Text(s) ?? throw Bad("context.selections holds a string that is not valid text (half of a UTF-16 surrogate pair).")
                        : throw Bad("context.selections must hold strings."));
            }

            var prefetch = new Dictionary<string, PrefetchSlot>();
            if (root.TryGetProperty("prefetch", out var pf) && pf.ValueKind != JsonValueKind.Null)
            {
                if (pf.ValueKind != JsonValueKind.Object) throw Bad("prefetch must be an object.");
                foreach (var p in pf.EnumerateObject())
                {
                    // Only the results are read; other keys (the Patient the discovery asks for, keys of other
                    // services) are not used, so a defect in them does not cost the clinician the card.
                    if (p.Name != CdsServiceCatalog.ResultsKey) continue;
                    prefetch[p.Name] = p.Value.ValueKind switch
                    {
                        JsonValueKind.Null => new PrefetchSlot.Empty(),
                        JsonValueKind.Object => ParseComplete(p.Value, "prefetch." + p.Name) switch
                        {
                            OperationOutcome => new PrefetchSlot.Failed(),
                            var r => new PrefetchSlot.Found(r),
                        },
                        _ => throw Bad($"prefetch.{p.Name} must be a FHIR resource or null."),
                    };
                }
            }

            return new CdsCall(service.Id, hook, hookInstance, fhirServer, token, patientId, selections, draftOrders, prefetch)
            {
                ForPatient = userType is "Patient" or "RelatedPerson",
            };
        }
    }

    /// <summary>A FHIR resource inside the JSON, read by the Firely parser (entries of a Bundle that fail are dropped).</summary>
    private static Resource ParseResource(JsonElement e, string where) => Parse(e, where).Resource;

    /// <summary>
    /// The patient's results, every one readable: a result dropped for a defect (an `issued` without time zone, say)
    /// may be the newest, and showing the one before it as the latest would mislead. So the call is refused, naming
    /// the entry, rather than answered from part of the results.
    /// </summary>
    private static Resource ParseComplete(JsonElement e, string where)
    {
        var parsed = Parse(e, where);
        if (parsed.BadEntries.Count > 0)
        {
            var (index, why) = parsed.BadEntries.OrderBy(b => b.Key).First();
            throw Bad($"{where}: entry {index} cannot be read ({why}); MagCds does not choose a latest result while one of the patient's results is unreadable.");
        }
        return parsed.Resource;
    }

    private static ParsedBody Parse(JsonElement e, string where)
    {
        // Elements R4 does not define (such as Medplum's meta.author) are skipped, as in MagCds's own queries of the
        // EHR's server: CDS Hooks requires prefetched data to equal what such a query returns.
        try { return FhirWire.Parse(System.Runtime.InteropServices.JsonMarshal.GetRawUtf8Value(e).ToArray(), FhirFormat.Json, ignoreUnknownMembers: true); }
        catch (FhirRequestException ex) { throw Bad($"{where}: {ex.Message}"); }
    }

    private static string? UserType(string userId)
    {
        int slash = userId.IndexOf('/');
        string type = slash > 0 ? userId[..slash] : "";
        string id = slash > 0 ? userId[(slash + 1)..] : "";
        return type is "Practitioner" or "PractitionerRole" or "Patient" or "RelatedPerson" && id.Length > 0 && !id.Any(c => c == '/' || char.IsWhiteSpace(c) || char.IsControl(c))
            ? type : null;
    }

    private static string RequiredString(JsonElement obj, string name, string prefix = "") =>
        obj.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && (Text(v) ?? throw NotText(prefix + name)) is { Length: > 0 } s
            ? s
            : throw Bad($"{prefix}{name} is required and must be a non-empty string.");

    private static string? OptionalString(JsonElement obj, string name) =>
        !obj.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? Text(v) ?? throw NotText(name) : throw Bad($"{name} must be a string.");

    /// <summary>
    /// A JSON string's text, or null when it is none: JSON lets a string escape half of a UTF-16 surrogate pair
    /// ("\ud800" alone; EHR free text cut in the middle of an emoji), which no .NET string can hold. Such a member is
    /// refused with a 400 naming it, not read (the reader would throw, and the call end in a 500).
    /// </summary>
    internal static string? Text(JsonElement v)
    {
        try { return v.GetString(); }
        catch (InvalidOperationException) { return null; }
    }

    private static FhirRequestException NotText(string name) => Bad($"{name} is not valid text (it holds half of a UTF-16 surrogate pair).");

    /// <summary>A UTF-8 byte order mark (some Windows-based clients send one) is not part of the JSON text, as at the REST door.</summary>
    internal static ReadOnlyMemory<byte> WithoutBom(ReadOnlyMemory<byte> body) => body.Span.StartsWith("\uFEFF"u8) ? body[3..] : body;

    /// <summary>
    /// Where the body stops being JSON (line and byte, counted from 1) and the parser's first sentence, which names at
    /// most one character of the body: enough for an integrator to find the fault, never a value.
    /// </summary>
    internal static string NotJson(JsonException e) =>
        $"The body is not valid JSON (line {e.LineNumber + 1 ?? 1}, byte {e.BytePositionInLine + 1 ?? 1}): {e.Message.Split(". ")[0].TrimEnd('.')}.";

    private static FhirRequestException Bad(string message) =>
        new(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidCdsRequest, message);
}
