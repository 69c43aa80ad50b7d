using Hl7.Fhir.Model;
using MagCds.Core.Evaluation;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Worker;

/// <summary>
/// Creates the classic R4 rest-hook Subscription on the watched server, or reuses one that already sends the same
/// criteria to the same endpoint (so restarts and replicas never pile up Subscriptions). With a payload, so each
/// notification names the resource (the server PUTs it to endpoint/Observation/id); the secret travels as a channel
/// header. Note that anyone who may read Subscription resources on that server can read the header.
/// </summary>
public sealed class SubscriptionSetup(WorkerFhirClient fhir, Evaluator evaluator, IOptions<WorkerOptions> options)
{
    public string Criteria => "Observation?code=" + string.Join(",", evaluator.RecognisedCodes.OrderBy(c => c, StringComparer.Ordinal));

    /// <summary>Returns the id of the Subscription in use, and whether it was created now.</summary>
    public async Task<(string Id, bool Created)> EnsureAsync(CancellationToken ct)
    {
        var s = options.Value.Subscription;
        string endpoint = s.EndpointUrl!;
        using var client = fhir.Create();
        var found = await client.GetAsync($"Subscription?url={Uri.EscapeDataString(endpoint)}", ct) as Bundle;
        var existing = (found?.Entry ?? []).Select(e => e.Resource).OfType<Subscription>()
            .FirstOrDefault(x => x.Channel?.Endpoint == endpoint && x.Criteria == Criteria
                                 && x.Status is Subscription.SubscriptionStatus.Active or Subscription.SubscriptionStatus.Requested);
        if (existing is not null) return (existing.Id ?? "", false);

        var created = await client.CreateAsync(new Subscription
        {
            Status = Subscription.SubscriptionStatus.Requested,
            Reason = "MagCds: assess each new or changed anti-MAG IgM result and write the assessment back",
            Criteria = Criteria,
            Channel = new Subscription.ChannelComponent
            {
                Type = Subscription.SubscriptionChannelType.RestHook,
                Endpoint = endpoint,
                Payload = "application/fhir+json",
                Header = [$"{s.SecretHeader}: {s.Secret}"],
            },
        }, ct);
        return (created?.Id ?? "", true);
    }
}
