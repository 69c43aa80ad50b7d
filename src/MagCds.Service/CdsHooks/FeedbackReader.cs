using System.Globalization;
using System.Text.Json;
using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;
using MagCds.Service.Storage;

namespace MagCds.Service.CdsHooks;

/// <summary>Reads and checks a CDS Hooks feedback body ({"feedback": [...]}); anything malformed is a 400.</summary>
public static partial class FeedbackReader
{
    [System.Text.RegularExpressions.GeneratedRegex(@"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?\z")]
    private static partial System.Text.RegularExpressions.Regex IsoDateTime();

    public static IReadOnlyList<FeedbackItem> Read(ReadOnlyMemory<byte> body, string serviceId)
    {
        JsonDocument doc;
        // A member given twice is refused, as in a hook call: a gateway reading the first and MagCds the last would
        // record another card or outcome than the one the EHR's log shows.
        try { doc = JsonDocument.Parse(CdsRequestReader.WithoutBom(body), new JsonDocumentOptions { MaxDepth = 32, AllowDuplicateProperties = false }); }
        catch (JsonException e) { throw Bad(CdsRequestReader.NotJson(e)); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("feedback", out var list) || list.ValueKind != JsonValueKind.Array || list.GetArrayLength() == 0)
                throw Bad("The body must be an object with a non-empty 'feedback' array.");
            var items = new List<FeedbackItem>();
            int n = 0;
            foreach (var f in list.EnumerateArray())
            {
                string at = $"feedback[{n++}]";
                if (f.ValueKind != JsonValueKind.Object) throw Bad($"{at} must be an object.");
                string card = Str(f, "card", at) ?? throw Bad($"{at}.card is required.");
                string outcome = Str(f, "outcome", at) ?? throw Bad($"{at}.outcome is required.");
                if (outcome is not ("accepted" or "overridden")) throw Bad($"{at}.outcome must be 'accepted' or 'overridden'.");
                string ts = Str(f, "outcomeTimestamp", at) ?? throw Bad($"{at}.outcomeTimestamp is required.");
                // ISO 8601 / RFC 3339 date and time (CDS Hooks: in UTC, so one without a zone is read as UTC); not
                // whatever else .NET's parser takes ("Fri, 11 Dec 2020 00:00:00 GMT").
                if (!IsoDateTime().IsMatch(ts) || !DateTimeOffset.TryParse(ts, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var when))
                    throw Bad($"{at}.outcomeTimestamp must be an ISO 8601 date-time (such as 2026-11-27T10:00:00Z).");

                var accepted = new List<string>();
                if (f.TryGetProperty("acceptedSuggestions", out var acc))
                {
                    if (acc.ValueKind != JsonValueKind.Array) throw Bad($"{at}.acceptedSuggestions must be an array.");
                    foreach (var a in acc.EnumerateArray())
                        accepted.Add(a.ValueKind == JsonValueKind.Object ? Str(a, "id", at + ".acceptedSuggestions") ?? throw Bad($"{at}.acceptedSuggestions[].id is required.") : throw Bad($"{at}.acceptedSuggestions holds objects."));
                }
                if (outcome == "accepted" && accepted.Count == 0) throw Bad($"{at}.acceptedSuggestions is required for an accepted outcome.");

                string? rSystem = null, rCode = null, rDisplay = null, comment = null;
                if (f.TryGetProperty("overrideReason", out var or) && or.ValueKind != JsonValueKind.Null)
                {
                    if (or.ValueKind != JsonValueKind.Object) throw Bad($"{at}.overrideReason must be an object.");
                    if (outcome != "overridden") throw Bad($"{at}.overrideReason is only for an overridden outcome.");
                    if (or.TryGetProperty("reason", out var reason) && reason.ValueKind != JsonValueKind.Null)
                    {
                        if (reason.ValueKind != JsonValueKind.Object) throw Bad($"{at}.overrideReason.reason must be a Coding.");
                        rCode = Str(reason, "code", at) ?? throw Bad($"{at}.overrideReason.reason.code is required.");
                        rSystem = Str(reason, "system", at) ?? throw Bad($"{at}.overrideReason.reason.system is required.");
                        rDisplay = Str(reason, "display", at);
                    }
                    comment = Str(or, "userComment", at);
                }
                items.Add(new FeedbackItem(serviceId, card, outcome, accepted, rSystem, rCode, rDisplay, comment, when));
            }
            return items;
        }
    }

    /// <summary>A non-empty string member; the card's uuid and codes up to 256 characters, a comment up to 4,000; no control characters but line breaks and tabs.</summary>
    private static string? Str(JsonElement o, string name, string at)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.String) throw Bad($"{at}.{name} must be a non-empty string.");
        if (CdsRequestReader.Text(v) is not { } s) throw Bad($"{at}.{name} is not valid text (it holds half of a UTF-16 surrogate pair).");
        if (s.Length == 0) throw Bad($"{at}.{name} must be a non-empty string.");
        int max = name == "userComment" ? 4000 : 256;
        if (s.Length > max) throw Bad($"{at}.{name} is longer than {max} characters.");
        foreach (char ch in s)
            if (char.IsControl(ch) && ch is not ('\n' or '\r' or '\t')) throw Bad($"{at}.{name} holds a control character.");
        return s;
    }

    private static FhirRequestException Bad(string message) => new(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidFeedback, message);
}
