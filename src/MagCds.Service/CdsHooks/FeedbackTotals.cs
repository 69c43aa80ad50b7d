using MagCds.Service.Storage;

namespace MagCds.Service.CdsHooks;

/// <summary>
/// Reads the stored feedback's counts at start-up and then every minute into the gauge
/// <c>magcds.cdshooks.feedback_stored</c>, so the totals a dashboard shows survive restarts (the counter
/// <c>magcds.cdshooks.feedback</c> starts again at 0 with each process). A store that cannot be read keeps the last
/// totals until the next minute.
/// </summary>
public sealed partial class FeedbackTotals(FeedbackStore store, CdsHooksMetrics metrics, MagCds.Core.CanonicalUrls urls, TimeProvider time, ILogger<FeedbackTotals> logger)
    : BackgroundService
{
    public static readonly TimeSpan Every = TimeSpan.FromMinutes(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Every, time);
        try
        {
            do await RefreshAsync(stoppingToken);
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    private async Task RefreshAsync(CancellationToken ct)
    {
        try
        {
            var counts = await store.CountsAsync(ct);
            metrics.StoredFeedback(counts.Select(c => (c.ServiceId, c.Outcome, CdsHooksMetrics.OverrideReasonTag(c.OverrideSystem, c.OverrideCode, urls.OverrideReasonSystem), c.Count)));
        }
        catch (System.Data.Common.DbException e) { ReadFailed(logger, e.GetType().Name); }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Stored feedback counts could not be read ({Error}); the gauge keeps its last totals and is read again in a minute")]
    private static partial void ReadFailed(ILogger logger, string error);
}
