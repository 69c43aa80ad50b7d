using Microsoft.Extensions.Options;

namespace MagCds.Service.Storage;

/// <summary>
/// Erases feedback comments older than <see cref="StoreOptions.FeedbackCommentKeepDays"/> (by the feedback's own time),
/// at start-up and then hourly: a clinician's free text may name the patient, and nothing in MagCds reads it.
/// </summary>
public sealed partial class FeedbackRetention(FeedbackStore feedback, IOptions<StoreOptions> options, TimeProvider time, ILogger<FeedbackRetention> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        int days = options.Value.FeedbackCommentKeepDays;
        if (days == 0) return;
        using var timer = new PeriodicTimer(TimeSpan.FromHours(1), time);
        do
        {
            try
            {
                int erased = await feedback.ForgetCommentsAsync(time.GetUtcNow().AddDays(-days), stoppingToken);
                if (erased > 0) Erased(logger, erased, days);
            }
            catch (System.Data.Common.DbException e) { Failed(logger, e.GetType().Name); }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Feedback retention: the comments of {Count} feedback items older than {KeepDays} days erased")]
    private static partial void Erased(ILogger logger, int count, int keepDays);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Feedback retention could not reach the store ({Error}); tried again in an hour")]
    private static partial void Failed(ILogger logger, string error);
}
