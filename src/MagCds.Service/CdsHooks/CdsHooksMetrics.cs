using System.Diagnostics.Metrics;

namespace MagCds.Service.CdsHooks;

/// <summary>CDS Hooks counters (System.Diagnostics.Metrics, meter "MagCds.CdsHooks"), ready for any OpenTelemetry exporter.</summary>
public sealed class CdsHooksMetrics : IDisposable
{
    public const string MeterName = "MagCds.CdsHooks";
    private readonly Meter _meter = new(MeterName);
    private readonly Counter<long> _otherPatient;
    private readonly Counter<long> _cards;
    private readonly Counter<long> _feedback;
    private readonly Counter<long> _fhirServerNotAllowed;
    private volatile IReadOnlyList<Measurement<long>> _stored = [];

    public CdsHooksMetrics()
    {
        _otherPatient = _meter.CreateCounter<long>("magcds.cdshooks.other_patient_observations_ignored", description: "Observations of a patient other than context.patientId, dropped");
        _cards = _meter.CreateCounter<long>("magcds.cdshooks.cards", description: "Cards returned, by service and indicator");
        _feedback = _meter.CreateCounter<long>("magcds.cdshooks.feedback", description: "Feedback items stored, by outcome and override reason");
        _fhirServerNotAllowed = _meter.CreateCounter<long>("magcds.cdshooks.fhirserver_not_allowed", description: "Calls naming a fhirServer outside their issuer's FhirServers (not queried), by service and issuer");
        _meter.CreateObservableGauge("magcds.cdshooks.feedback_stored", () => _stored,
            description: "Feedback items in the store since it was made (read once a minute, so it survives restarts), by service, outcome and override reason");
    }

    public void OtherPatientObservationsIgnored(string serviceId, int count) =>
        _otherPatient.Add(count, new KeyValuePair<string, object?>("service", serviceId));

    public void Card(string serviceId, string indicator) =>
        _cards.Add(1, new("service", serviceId), new("indicator", indicator));

    /// <param name="overrideReason">One of MagCds's override reason codes, "other" or "none" (<see cref="OverrideReasonTag"/>).</param>
    public void Feedback(string serviceId, string outcome, string overrideReason) =>
        _feedback.Add(1, new("service", serviceId), new("outcome", outcome), new("override_reason", overrideReason));

    /// <summary>The stored totals the gauge reports from now on (several stored reasons may share the tag "other").</summary>
    public void StoredFeedback(IEnumerable<(string ServiceId, string Outcome, string OverrideReason, long Count)> counts) =>
        _stored = counts.GroupBy(c => (c.ServiceId, c.Outcome, c.OverrideReason))
            .Select(g => new Measurement<long>(g.Sum(c => c.Count), new("service", g.Key.ServiceId), new("outcome", g.Key.Outcome), new("override_reason", g.Key.OverrideReason)))
            .ToList();

    /// <summary>
    /// The override_reason tag of a feedback item: one of MagCds's own reason codes by name, "other" for any other
    /// coding, "none" without one. Never a caller's free value, which would make the series unbounded.
    /// </summary>
    public static string OverrideReasonTag(string? system, string? code, string magCdsReasonSystem) =>
        code is null ? "none"
        : system == magCdsReasonSystem && CardBuilder.OverrideReasonConcepts.Any(c => c.Code == code) ? code : "other";

    /// <param name="issuer">A configured trusted issuer (the call's token was valid), so the series stay few.</param>
    public void FhirServerNotAllowed(string serviceId, string issuer) =>
        _fhirServerNotAllowed.Add(1, new("service", serviceId), new("issuer", issuer));

    public void Dispose() => _meter.Dispose();
}
