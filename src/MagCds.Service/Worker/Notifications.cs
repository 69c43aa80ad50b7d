using Hl7.Fhir.Model;

namespace MagCds.Service.Worker;

/// <summary>What a notification says, whatever its shape.</summary>
/// <param name="Kind">handshake, heartbeat, event-notification, query-event (Backport); resource or ping (classic R4 rest-hook).</param>
/// <param name="Subscription">The Subscription reference (Backport), for event-number bookkeeping.</param>
/// <param name="EventsSinceStart">events-since-subscription-start (Backport), when given.</param>
/// <param name="EventNumbers">The event numbers carried (Backport).</param>
/// <param name="Resources">Resources named, by type and id (full-resource and id-only payloads, classic payloads).</param>
/// <param name="NeedsPoll">True when something changed but the notification does not say what (empty payloads).</param>
public sealed record Notification(
    string Kind, string? Subscription, long? EventsSinceStart, IReadOnlyList<long> EventNumbers,
    IReadOnlyList<(string Type, string Id)> Resources, bool NeedsPoll);

/// <summary>
/// Reads the notification shapes a FHIR server sends: R4 Subscriptions Backport IG notification Bundles
/// (a history Bundle whose first entry is the SubscriptionStatus Parameters; empty, id-only and full-resource
/// payloads) and classic R4 rest-hook deliveries (an empty POST, or the changed resource itself).
/// </summary>
public static class NotificationReader
{
    public static Notification Ping { get; } = new("ping", null, null, [], [], NeedsPoll: true);

    /// <summary>
    /// A classic rest-hook PUT to endpoint/Type/id: the URL names the resource. Without a body (or with one that names
    /// no id) that resource is what changed; null when the URL names no resource or the body is another one (refused,
    /// as a FHIR update would be).
    /// </summary>
    public static Notification? AtUrl(Notification body, string type, string id) =>
        Parse($"{type}/{id}") is not { } named ? null
        : body.Kind == "ping" ? new Notification("resource", null, null, [], [named], NeedsPoll: false)
        : body is { Kind: "resource", Resources: [var sent] } && sent == named ? body
        : null;

    public static Notification Read(Resource body) => body switch
    {
        Bundle { Entry: [{ Resource: Parameters status }, ..] } b => Backport(status, b.Entry.Skip(1)),
        Bundle b => new Notification("bundle", null, null, [], b.Entry.Select(e => Named(e.Resource, e.FullUrl)).OfType<(string, string)>().ToList(), false),
        _ when Named(body, null) is { } r => new Notification("resource", null, null, [], [r], false),
        _ => Ping,
    };

    private static Notification Backport(Parameters status, IEnumerable<Bundle.EntryComponent> entries)
    {
        string kind = Value(status, "type") ?? "event-notification";
        // Kept as "Subscription/{id}" only: the worker calls $events on it with its credentials, which must never go
        // to a host a notification names (an absolute reference elsewhere would receive the server's token).
        string? subscription = (status.Parameter.FirstOrDefault(p => p.Name == "subscription")?.Value as ResourceReference)?.Reference is { } sref
                               && Parse(sref) is ("Subscription", var sid) ? "Subscription/" + sid : null;
        long? since = long.TryParse(Value(status, "events-since-subscription-start"), out long s) ? s : null;

        var numbers = new List<long>();
        var resources = new List<(string, string)>();
        foreach (var e in status.Parameter.Where(p => p.Name == "notification-event"))
        {
            if (long.TryParse(PartValue(e, "event-number"), out long n)) numbers.Add(n);
            if ((e.Part.FirstOrDefault(p => p.Name == "focus")?.Value as ResourceReference)?.Reference is { } focus && Parse(focus) is { } f) resources.Add(f);
        }
        // id-only entries carry a fullUrl (and a request); full-resource entries the resource as well.
        foreach (var e in entries) if (Named(e.Resource, e.FullUrl) is { } r) resources.Add(r);

        bool isEvent = kind is "event-notification" or "query-event";
        return new Notification(kind, subscription, since, numbers, resources.Distinct().ToList(), NeedsPoll: isEvent && resources.Count == 0);
    }

    private static string? Value(Parameters p, string name) => p.Parameter.FirstOrDefault(x => x.Name == name)?.Value?.ToString();

    private static string? PartValue(Parameters.ParameterComponent p, string name) => p.Part.FirstOrDefault(x => x.Name == name)?.Value?.ToString();

    private static (string, string)? Named(Resource? r, string? fullUrl) =>
        r is not null && r is not (Parameters or OperationOutcome or Bundle) && !string.IsNullOrEmpty(r.Id) ? (r.TypeName, r.Id)
        : r is null && fullUrl is not null ? Parse(fullUrl)
        : null;

    /// <summary>
    /// A FHIR logical id: 1–64 of A–Z, a–z, 0–9, '-' and '.' (nothing that changes a URL it is put into: "." and "..",
    /// which match FHIR's pattern, are URL dot-segments, and Observation/.. would be another URL).
    /// </summary>
    private static bool IsFhirId(string id) => id.Length is > 0 and <= 64 && id.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.') && id is not ("." or "..");

    /// <summary>"Observation/1", "https://server/fhir/Observation/1" or ".../Observation/1/_history/2" → (Observation, 1).</summary>
    public static (string Type, string Id)? Parse(string reference)
    {
        string r = reference;
        int h = r.IndexOf("/_history/", StringComparison.Ordinal);
        if (h >= 0) r = r[..h];
        var parts = r.TrimEnd('/').Split('/');
        if (parts.Length < 2 || !IsFhirId(parts[^1]) || parts[^2].Length == 0 || !char.IsUpper(parts[^2][0]) || !parts[^2].All(char.IsAsciiLetter)) return null;
        return (parts[^2], parts[^1]);
    }
}
