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

    public CdsHooksMetrics()
    {
        _otherPatient = _meter.CreateCounter<long>("magcds.cdshooks.other_patient_observations_ignored", description: "Observations of a patient other than context.patientId, dropped");
        _cards = _meter.CreateCounter<long>("magcds.cdshooks.cards", description: "Cards returned, by service and indicator");
        _feedback = _meter.CreateCounter<long>("magcds.cdshooks.feedback", description: "Feedback items stored, by outcome and override reason");
    }

    public void OtherPatientObservationsIgnored(string serviceId, int count) =>
        _otherPatient.Add(count, new KeyValuePair<string, object?>("service", serviceId));

    public void Card(string serviceId, string indicator) =>
        _cards.Add(1, new("service", serviceId), new("indicator", indicator));

    /// <param name="overrideReason">One of MagCds's override reason codes, "other" or "none": never a caller's free value (unbounded series).</param>
    public void Feedback(string serviceId, string outcome, string overrideReason) =>
        _feedback.Add(1, new("service", serviceId), new("outcome", outcome), new("override_reason", overrideReason));

    public void Dispose() => _meter.Dispose();
}
