using System.Diagnostics.Metrics;
using MagCds.Service.Worker;

namespace MagCds.Tests.Worker;

/// <summary>Metric labels come from fixed sets, never from what a notification says.</summary>
public class WorkerMetricsTests
{
    [Test]
    public void A_notifications_own_words_never_become_a_label()
    {
        var labels = new List<string>();
        using var metrics = new WorkerMetrics();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == WorkerMetrics.MeterName) l.EnableMeasurementEvents(instrument); };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) => { foreach (var t in tags) labels.Add($"{t.Key}={t.Value}"); });
        listener.Start();

        metrics.Notification("event-notification");
        metrics.Notification("ZQKIND-Smithers");
        metrics.Ignored("Patient");
        metrics.Ignored("Smithers");

        Assert.That(labels, Is.EqualTo(new[] { "kind=event-notification", "kind=other", "type=Patient", "type=other" }));
    }
}
