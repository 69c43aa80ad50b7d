using MagCds.Service.Audit;
using MagCds.Service.Worker;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Storage;

/// <summary>
/// How long the store keeps what, in one place, applied at start-up and then hourly: audit entries
/// (<see cref="AuditOptions.KeepDays"/>), the free-text comments of CDS Hooks feedback
/// (<see cref="StoreOptions.FeedbackCommentKeepDays"/>: a clinician's words may name the patient, and nothing in MagCds
/// reads them), and, when the worker is on, its finished queue rows (<see cref="WorkerOptions.KeepDoneDays"/>). A
/// period of 0 keeps for ever. A store that cannot be reached is tried again at the next hour.
/// </summary>
public sealed partial class Retention(
    AuditTrail audit, FeedbackStore feedback, WorkQueue queue,
    IOptions<AuditOptions> auditOptions, IOptions<StoreOptions> storeOptions, IOptions<WorkerOptions> workerOptions,
    TimeProvider time, ILogger<Retention> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromHours(1), time);
        try
        {
            do await ApplyAsync(stoppingToken);
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping (also a start that failed, where the host reports every cancelled service as failed otherwise).
        }
    }

    /// <summary>Applies every rule once, now (by the service's clock).</summary>
    public async Task ApplyAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        await RuleAsync("audit entries deleted", auditOptions.Value.KeepDays, days => audit.PurgeAsync(now.AddDays(-days), ct));
        await RuleAsync("feedback comments erased", storeOptions.Value.FeedbackCommentKeepDays, days => feedback.ForgetCommentsAsync(now.AddDays(-days), ct));
        if (workerOptions.Value.Enabled)
            await RuleAsync("finished worker queue rows deleted", workerOptions.Value.KeepDoneDays, days => queue.PurgeAsync(TimeSpan.FromDays(days), ct));
    }

    private async Task RuleAsync(string what, int keepDays, Func<int, Task<int>> apply)
    {
        if (keepDays == 0) return;
        try
        {
            int count = await apply(keepDays);
            if (count > 0) Applied(logger, count, what, keepDays);
        }
        catch (System.Data.Common.DbException e) { Failed(logger, what, e.GetType().Name); }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Retention: {What:l}: {Count} (older than {KeepDays} days)")]
    private static partial void Applied(ILogger logger, int count, string what, int keepDays);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Retention could not reach the store ({Error}) for {What:l}; tried again in an hour")]
    private static partial void Failed(ILogger logger, string what, string error);
}
