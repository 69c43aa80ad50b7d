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

    public CdsHooksMetrics()
    {
        _otherPatient = _meter.CreateCounter<long>("magcds.cdshooks.other_patient_observations_ignored", description: "Observations of a patient other than context.patientId, dropped");
        _cards = _meter.CreateCounter<long>("magcds.cdshooks.cards", description: "Cards returned, by service and indicator");
        _feedback = _meter.CreateCounter<long>("magcds.cdshooks.feedback", description: "Feedback items stored, by outcome and override reason");
        _fhirServerNotAllowed = _meter.CreateCounter<long>("magcds.cdshooks.fhirserver_not_allowed", description: "Calls naming a fhirServer outside their issuer's FhirServers (not queried), by service and issuer");
    }

    public void OtherPatientObservationsIgnored(string serviceId, int count) =>
        _otherPatient.Add(count, new KeyValuePair<string, object?>("service", serviceId));

    public void Card(string serviceId, string indicator) =>
        _cards.Add(1, new("service", serviceId), new("indicator", indicator));

    /// <param name="overrideReason">One of MagCds's override reason codes, "other" or "none": never a caller's free value (unbounded series).</param>
    public void Feedback(string serviceId, string outcome, string overrideReason) =>
        _feedback.Add(1, new("service", serviceId), new("outcome", outcome), new("override_reason", overrideReason));

    /// <param name="issuer">A configured trusted issuer (the call's token was valid), so the series stay few.</param>
    public void FhirServerNotAllowed(string serviceId, string issuer) =>
        _fhirServerNotAllowed.Add(1, new("service", serviceId), new("issuer", issuer));

    public void Dispose() => _meter.Dispose();
}
