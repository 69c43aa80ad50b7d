using Hl7.Fhir.Model;
using MagCds.Core.Evaluation;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Worker;

/// <summary>
/// Creates the Subscription on the watched server, or reuses one that already asks for the same notifications at the
/// same endpoint (so restarts and replicas never pile up Subscriptions). Two kinds, by configuration:
/// <list type="bullet">
/// <item>classic R4 rest-hook: criteria <c>Observation?code=…</c>, with a payload, so each notification names the
/// resource (the server PUTs it to endpoint/Observation/id);</item>
/// <item>topic-based (R4 Subscriptions Backport IG) when a topic URL is configured: criteria the topic, filtered to
/// the recognised codes, payload id-only by default, with a heartbeat that lets MagCds see missed events.</item>
/// </list>
/// The secret travels as a channel header. Anyone who may read Subscription resources on that server can read it.
/// </summary>
public sealed class SubscriptionSetup(WorkerFhirClient fhir, Evaluator evaluator, IOptions<WorkerOptions> options, MagCds.Service.Storage.WorkQueue queue)
{
    private const string SetupLock = "subscription-setup";
    private readonly string _owner = Guid.NewGuid().ToString("N");

    public const string BackportProfile = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription";
    public const string FilterCriteriaExtension = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria";
    public const string PayloadContentExtension = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";
    public const string HeartbeatExtension = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-heartbeat-period";

    /// <summary>The search that selects MagCds's Observations: the classic criteria, and the topic's filter.</summary>
    public string Criteria => "Observation?code=" + string.Join(",", evaluator.RecognisedCodes.OrderBy(c => c, StringComparer.Ordinal));

    /// <summary>
    /// Returns the id of the Subscription in use and what was done: "reused", "created", "updated" (the same
    /// notifications, but the secret header or the heartbeat had changed, e.g. after the secret was rotated; the old
    /// header would get every notification refused), or "reactivated" (the server had stopped it: status error or
    /// off); null while another replica is setting it up.
    /// </summary>
    public async Task<(string Id, string Action)?> EnsureAsync(CancellationToken ct)
    {
        // Replicas starting together would each find no Subscription and each create one: one at a time, through a
        // lock in the shared store; the others return null, try again shortly, and then find and reuse it.
        if (!await queue.TryClaimAsync(fhir.Server, SetupLock, _owner, TimeSpan.FromMinutes(2), ct)) return null;
        try
        {
            return await EnsureHeldAsync(ct);
        }
        finally
        {
            await queue.ReleaseClaimAsync(fhir.Server, SetupLock, _owner, CancellationToken.None);
        }
    }

    private async Task<(string Id, string Action)> EnsureHeldAsync(CancellationToken ct)
    {
        var wanted = Wanted();
        using var client = fhir.Create();
        var found = await client.GetAsync($"Subscription?url={Uri.EscapeDataString(options.Value.Subscription.EndpointUrl!)}", ct) as Bundle;
        var matching = (found?.Entry ?? []).Select(e => e.Resource).OfType<Subscription>().Where(x => Same(x, wanted)).ToList();
        var existing = matching.FirstOrDefault(x => x.Status is Subscription.SubscriptionStatus.Active or Subscription.SubscriptionStatus.Requested);
        string action = "updated";
        if (existing is null)
        {
            // A server stops a Subscription (error, off) when MagCds was unreachable too long. It is asked to resume
            // (R4: the client sets it to requested) instead of a new one being made beside it on every recheck, whose
            // notifications would each arrive as many times as there are Subscriptions once they are all resumed.
            existing = matching.FirstOrDefault(x => x.Status is Subscription.SubscriptionStatus.Error or Subscription.SubscriptionStatus.Off);
            if (existing is null) return ((await client.CreateAsync(wanted, ct))?.Id ?? "", "created");
            existing.Status = Subscription.SubscriptionStatus.Requested;
            action = "reactivated";
        }
        else if (existing.Channel.Header.SequenceEqual(wanted.Channel.Header)
                 && Extension(existing.Channel, HeartbeatExtension) == Extension(wanted.Channel, HeartbeatExtension))
            return (existing.Id ?? "", "reused");
        existing.Channel.Header = wanted.Channel.Header;
        existing.Channel.Extension.RemoveAll(e => e.Url == HeartbeatExtension);
        existing.Channel.Extension.AddRange(wanted.Channel.Extension.Where(e => e.Url == HeartbeatExtension));
        return ((await client.UpdateAsync(existing, ct: ct))?.Id ?? existing.Id ?? "", action);
    }

    /// <summary>The Subscription the settings ask for.</summary>
    public Subscription Wanted()
    {
        var s = options.Value.Subscription;
        var subscription = new Subscription
        {
            Status = Subscription.SubscriptionStatus.Requested,
            Reason = "MagCds: assess each new or changed anti-MAG IgM result and write the assessment back",
            Criteria = s.TopicUrl ?? Criteria,
            Channel = new Subscription.ChannelComponent
            {
                Type = Subscription.SubscriptionChannelType.RestHook,
                Endpoint = s.EndpointUrl!,
                Payload = "application/fhir+json",
                Header = [$"{s.SecretHeader}: {s.Secret}"],
            },
        };
        if (s.TopicUrl is null) return subscription;

        subscription.Meta = new Meta { Profile = [BackportProfile] };
        subscription.CriteriaElement.SetStringExtension(FilterCriteriaExtension, Criteria);
        subscription.Channel.PayloadElement.AddExtension(PayloadContentExtension, new Code(s.PayloadContent));
        if (s.HeartbeatSeconds > 0) subscription.Channel.AddExtension(HeartbeatExtension, new UnsignedInt(s.HeartbeatSeconds));
        return subscription;
    }

    /// <summary>Whether an existing Subscription sends the same notifications to the same endpoint.</summary>
    private static bool Same(Subscription x, Subscription wanted) =>
        x.Channel is { } channel
        && channel.Endpoint == wanted.Channel.Endpoint
        && x.Criteria == wanted.Criteria
        && Extension(x.CriteriaElement, FilterCriteriaExtension) == Extension(wanted.CriteriaElement, FilterCriteriaExtension)
        && Extension(channel.PayloadElement, PayloadContentExtension) == Extension(wanted.Channel.PayloadElement, PayloadContentExtension);

    private static string? Extension(Element? e, string url) => e?.GetExtension(url)?.Value is PrimitiveType p ? p.JsonValue?.ToString() : null;
}
