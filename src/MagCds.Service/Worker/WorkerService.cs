using Hl7.Fhir.Rest;
using MagCds.Service.Audit;
using MagCds.Service.Storage;
using Microsoft.Extensions.Options;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace MagCds.Service.Worker;

/// <summary>
/// The FHIR server door's loop: create the Subscription when asked, poll when due (or when an empty notification
/// asks for it), recover missed Backport events, then lease queued resources and assess them, a few at a time.
/// Failures that may pass (server down, busy, timeouts) are retried with exponential backoff and jitter; others,
/// and those that keep failing, go to the dead letters with their reason.
/// </summary>
public sealed partial class WorkerService(
    WorkQueue queue, WorkerFhirClient fhir, AssessmentWriter writer, Poller poller, SubscriptionSetup subscriptions, EventRecovery recovery,
    WorkerSignal signal, WorkerMetrics metrics, AuditTrail audit, MagCds.Core.Knowledge.KnowledgeBase knowledge,
    ServerClock serverClock, IOptions<WorkerOptions> options, TimeProvider time, ILogger<WorkerService> logger)
    : BackgroundService
{
    /// <summary>This process's name on leases: a restarted process is a new owner, and waits for old leases to run out.</summary>
    private readonly string _owner = $"{Environment.MachineName}:{Environment.ProcessId}:{Guid.NewGuid():N}";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var o = options.Value;
        bool subscribed = !o.Subscription.Create, cursorReady = false;
        DateTimeOffset pauseLogged = DateTimeOffset.MinValue, nextPoll = time.GetUtcNow(), retryRequestedPoll = time.GetUtcNow(), nextSubscribe = time.GetUtcNow(), nextStats = time.GetUtcNow();
        string server = fhir.Server;
        Started(logger, o.PollIntervalSeconds, o.Subscription.Create);
        if (string.IsNullOrEmpty(o.Subscription.Secret)) NoSecret(logger, o.PollIntervalSeconds);

        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var now = time.GetUtcNow();
                // The server asked for a pause (429 or 503 with Retry-After): the loop waits it out (ServerPauseGate
                // holds back any call still made), in slices that keep the queue gauges current; notifications are
                // still stored meanwhile, and the work waits in the queue.
                if (serverClock.PauseLeft() is { } pause)
                {
                    if (serverClock.PausedUntil is { } until && until > pauseLogged)
                    {
                        Pausing(logger, pause.TotalSeconds);
                        pauseLogged = until;
                    }
                    if (now >= nextStats)
                    {
                        metrics.Queue(await queue.StatsAsync(stoppingToken, server));
                        nextStats = now + TimeSpan.FromSeconds(5);
                    }
                    // Whole milliseconds, rounded up: a wait rounded down would end just short of the pause.
                    var slice = TimeSpan.FromMilliseconds(Math.Ceiling(Math.Min(pause.TotalMilliseconds, 5000)));
                    await Task.Delay(slice, time, stoppingToken);
                    continue;
                }
                if (!cursorReady) cursorReady = await TryAsync("start-cursor", stoppingToken, () => poller.StartAsync(stoppingToken));
                if (o.Subscription.Create && now >= nextSubscribe && (!subscribed || o.Subscription.RecheckSeconds > 0))
                {
                    bool busy = false, first = !subscribed;
                    subscribed = await TryAsync("subscribe", stoppingToken, async () =>
                    {
                        if (await subscriptions.EnsureAsync(stoppingToken) is { } ready)
                        {
                            if (first || ready.Action != "reused") SubscriptionReady(logger, ready.Id, ready.Action);
                            // Made again or resumed (the old one was deleted or stopped): what changed while no
                            // notification came is found by a catch-up poll.
                            if (!first && ready.Action is "created" or "reactivated")
                            {
                                var request = Poller.Request();
                                await queue.EnqueueAsync(server, [], "subscription", new Dictionary<string, string> { [request.Key] = request.Value }, stoppingToken);
                            }
                        }
                        else busy = true;
                    }) && !busy;
                    // Once in place it is looked at again now and then (the server may have switched it off); while
                    // another replica is creating it, soon (and then reused); after a failure, later.
                    nextSubscribe = now + TimeSpan.FromSeconds(subscribed ? o.Subscription.RecheckSeconds : busy ? 2 : 30);
                }
                // A poll asked for by a notification is in the store until a poll succeeds: it runs now, whatever the
                // interval, and after a failed poll again 5 s later.
                string? request = await poller.RequestedAsync(stoppingToken);
                if ((request is not null && now >= retryRequestedPoll) || (o.PollIntervalSeconds > 0 && now >= nextPoll))
                {
                    bool polled = await TryAsync("poll", stoppingToken, async () => Polled(logger, await poller.PollAsync(stoppingToken)));
                    if (polled && request is not null) await poller.AnsweredAsync(request, stoppingToken);
                    nextPoll = now + TimeSpan.FromSeconds(Math.Max(1, o.PollIntervalSeconds));
                    retryRequestedPoll = polled ? now : now + TimeSpan.FromSeconds(5);
                }
                await TryAsync("recover-events", stoppingToken, () => recovery.RecoverAsync(stoppingToken));

                var items = await queue.LeaseAsync(_owner, o.Concurrency * 2, TimeSpan.FromSeconds(o.LeaseSeconds), stoppingToken, server);
                if (items.Count > 0)
                {
                    var started = new System.Collections.Concurrent.ConcurrentDictionary<long, bool>();
                    try
                    {
                        await Parallel.ForEachAsync(items, new ParallelOptions { MaxDegreeOfParallelism = o.Concurrency, CancellationToken = stoppingToken },
                            async (item, ct) => { started[item.Id] = true; await ProcessAsync(item, ct); });
                    }
                    catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                    {
                        // Stopping: rows leased in this batch but never started go back now, not counted as attempts.
                        foreach (var item in items.Where(i => !started.ContainsKey(i.Id)))
                            await HandBackAsync(item, "shutdown", TimeSpan.Zero, failed: false);
                        throw;
                    }
                }
                // The gauges are read from the whole table (finished rows included), so not on every turn.
                if (now >= nextStats)
                {
                    metrics.Queue(await queue.StatsAsync(stoppingToken, server));
                    nextStats = now + TimeSpan.FromSeconds(5);
                }
                if (items.Count == 0) await signal.WaitAsync(TimeSpan.FromSeconds(1), stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { break; }
            catch (System.Data.Common.DbException e)
            {
                // The store is unreachable: nothing can be leased or acknowledged; wait and try again.
                StoreFailed(logger, e.GetType().Name);
                await Task.Delay(StoreRetryDelay, time, stoppingToken).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }
    }

    /// <summary>
    /// Processes one leased row. A store error is this row's alone: it must not end the batch, which would leave the
    /// batch's other rows leased until their leases run out, and each such expiry counts towards a "lease-expired"
    /// dead letter. What was written to the FHIR server before the error is safe to write again (conditional creates).
    /// </summary>
    private async Task ProcessAsync(WorkItem item, CancellationToken ct)
    {
        try
        {
            await ProcessLeasedAsync(item, ct);
        }
        catch (System.Data.Common.DbException e) when (Database.RefusedValue(e))
        {
            // The store refuses something of this row's (PostgreSQL: a NUL in an id): it would fail every time.
            await GiveUpAsync(item, "store-refused-value");
        }
        catch (System.Data.Common.DbException e)
        {
            // Out of reach (down, busy, restarting) says nothing about the row and is not counted; any other store
            // error is, so that a row that keeps meeting it ends in the dead letters, not in an endless loop.
            bool counted = !Database.IsUnavailable(e);
            StoreErrorOnRow(logger, item.ResourceType, item.ResourceId, e.GetType().Name, counted ? "a store error, counted as an attempt" : "the store is out of reach, not counted");
            if (counted && item.Attempts >= options.Value.MaxAttempts) await GiveUpAsync(item, "store-error");
            else await HandBackAsync(item, counted ? "store-error" : "store-unavailable", StoreRetryDelay, failed: counted);
        }
    }

    /// <summary>How long the loop waits for an unreachable store, and a row handed back after a store error.</summary>
    private static readonly TimeSpan StoreRetryDelay = TimeSpan.FromSeconds(5);

    private async Task ProcessLeasedAsync(WorkItem item, CancellationToken ct)
    {
        if (item.ResourceType != "Observation")
        {
            metrics.Ignored(item.ResourceType);
            await queue.CompleteAsync(item, _owner, "ignored-type", CancellationToken.None);
            return;
        }
        // A row whose leases keep running out without an answer (it crashes or hangs every worker that takes it) would
        // otherwise be taken for ever, by every replica in turn.
        if (item.ExpiredLeases >= options.Value.MaxAttempts)
        {
            await GiveUpAsync(item, "lease-expired");
            return;
        }
        // A row leased with its batch may have waited for a free slot longer than its lease, and another replica may
        // have leased it meanwhile: it is processed only if this worker still holds it.
        var lease = TimeSpan.FromSeconds(options.Value.LeaseSeconds);
        // Not cancelled by a stop: the row has been counted as started, so it must reach the hand-back below.
        if (!await queue.RenewAsync(item, _owner, lease, CancellationToken.None))
        {
            LeaseLost(logger, item.ResourceType, item.ResourceId);
            return;
        }
        // The lease is renewed while the item is processed (several FHIR calls, each with retries, can outlast it); if
        // it was lost anyway, processing stops, since another worker now owns the row.
        using var leaseLost = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var processed = new CancellationTokenSource();
        var renewing = RenewLeaseAsync(item, leaseLost, processed.Token);
        try
        {
            var (outcome, version, outputs, series, reassess) = await writer.AssessAsync(item.ResourceId, leaseLost.Token, beforeWrite: async () =>
            {
                // Confirmed once more just before writing: after a pause of this process (or a clock that differs
                // from another replica's) the row may be someone else's now, and a write cannot be called back.
                if (!await queue.RenewAsync(item, _owner, lease, CancellationToken.None)) await leaseLost.CancelAsync();
                leaseLost.Token.ThrowIfCancellationRequested();
            }, lastAssessment: () => queue.LastAssessedAsync(item.Server, item.ResourceType, item.ResourceId, leaseLost.Token));
            if (outcome == "not-anti-mag") metrics.Ignored("Observation");
            // Queued before this row is finished: a crash in between assesses them again, never not at all.
            if (reassess.Count > 0) await queue.EnqueueAsync(item.Server, reassess.Select(id => ("Observation", id)), "reassess", CancellationToken.None);
            await queue.CompleteAsync(item, _owner, outcome, CancellationToken.None, version, series, knowledge.Version);
            audit.Record(new AuditEntry(time.GetUtcNow(), "fhir-server", "worker", $"work-item-{item.Id}", $"{item.ResourceType}/{item.ResourceId}",
                version, knowledge.Version, outcome, outputs));
            var lag = time.GetUtcNow() - item.EnqueuedAt;
            metrics.Processed(outcome, lag);
            Assessed(logger, item.ResourceType, item.ResourceId, outcome, item.Attempts, lag.TotalMilliseconds);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Shutting down: give the row back now rather than when its lease runs out.
            await HandBackAsync(item, "shutdown", TimeSpan.Zero, failed: false);
        }
        catch (OperationCanceledException) when (leaseLost.IsCancellationRequested)
        {
            LeaseLost(logger, item.ResourceType, item.ResourceId);
        }
        catch (Exception e) when (Classify(e) is { } failure)
        {
            if (failure.Applied.Count > 0)
                audit.Record(new AuditEntry(time.GetUtcNow(), "fhir-server", "worker", $"work-item-{item.Id}", $"{item.ResourceType}/{item.ResourceId}",
                    null, knowledge.Version, "partial-write:" + failure.Reason, failure.Applied));
            var o = options.Value;
            var age = time.GetUtcNow() - item.EnqueuedAt;
            // A server that is down, busy or slow says nothing about this resource: such a failure is not counted as
            // an attempt (so a refused token after an outage still gets its MaxAttempts), waits longer the longer
            // the row has waited, and gives up only after OutageToleranceHours.
            bool outage = failure.Retryable && failure.ServerUnavailable;
            if (outage ? age < TimeSpan.FromHours(o.OutageToleranceHours) : failure.Retryable && item.Attempts < o.MaxAttempts)
            {
                // Exponential backoff with "equal jitter": half fixed, half random, so replicas do not retry in step.
                double cap = Math.Clamp(outage ? age.TotalSeconds / 4 : o.RetryBaseDelaySeconds * Math.Pow(2, item.Attempts - 1),
                    o.RetryBaseDelaySeconds, o.RetryMaxDelaySeconds);
                var delay = TimeSpan.FromSeconds(cap / 2 + Random.Shared.NextDouble() * cap / 2);
                await queue.RetryAsync(item, _owner, failure.Reason, delay, CancellationToken.None, failed: !outage);
                WillRetry(logger, item.ResourceType, item.ResourceId, failure.Reason, item.Attempts, delay.TotalSeconds);
            }
            else await GiveUpAsync(item, failure.Reason);
        }
        finally
        {
            await processed.CancelAsync();
            await renewing;
        }
    }

    /// <summary>
    /// Renews the item's lease every third of its length until processing ends. The work is cancelled when the lease
    /// was lost, or when the store could not confirm it and it would run out before the next try: past that point
    /// another replica may take the row, and two must never write back the same result at once.
    /// </summary>
    private async Task RenewLeaseAsync(WorkItem item, CancellationTokenSource leaseLost, CancellationToken processed)
    {
        var lease = TimeSpan.FromSeconds(options.Value.LeaseSeconds);
        var confirmedUntil = time.GetUtcNow() + lease; // renewed just before processing started
        try
        {
            while (true)
            {
                await Task.Delay(lease / 3, time, processed);
                // The new lease runs from before the call (the store stamps it when the command is built), and a call
                // that hangs is given up in time to stop the work before the confirmed lease runs out.
                var asked = time.GetUtcNow();
                bool? renewed;
                using (var bounded = CancellationTokenSource.CreateLinkedTokenSource(processed))
                {
                    bounded.CancelAfter(Max(TimeSpan.Zero, confirmedUntil - asked - lease / 3));
                    try { renewed = await queue.RenewAsync(item, _owner, lease, bounded.Token); }
                    catch (Exception e) when (!processed.IsCancellationRequested
                                              && e is System.Data.Common.DbException or InvalidOperationException or OperationCanceledException) { renewed = null; }
                }
                if (renewed == true) confirmedUntil = asked + lease;
                else if (renewed == false || time.GetUtcNow() + lease / 3 >= confirmedUntil)
                {
                    await leaseLost.CancelAsync();
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Processing ended.
        }
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>What an exception means for the work: retry (the server may recover) or not. Only type names are kept (messages may hold URLs with ids).</summary>
    private static WorkFailure? Classify(Exception e) => e switch
    {
        WorkFailure f => f,
        FhirOperationException f => new WorkFailure("http-" + (int)f.Status, (int)f.Status is 408 or 429 or >= 500),
        ServerPausedException => new WorkFailure("paused", true),
        HttpRequestException => new WorkFailure("unreachable", true),
        TimeoutRejectedException or TaskCanceledException or TimeoutException => new WorkFailure("timeout", true),
        BrokenCircuitException => new WorkFailure("circuit-open", true),
        Hl7.Fhir.Serialization.DeserializationFailedException or FormatException => new WorkFailure("unreadable-response", false),
        System.Data.Common.DbException => null, // the store itself: handled by the loop
        _ => new WorkFailure("internal-error:" + e.GetType().Name, false),
    };

    /// <summary>
    /// Runs a step of the loop; a failure is logged by kind and the loop goes on. A cancellation that is not the stop
    /// (an HTTP client's own timeout) is a failed step too: it must not end the loop, which would stop the host.
    /// </summary>
    private async Task<bool> TryAsync(string step, CancellationToken stopping, Func<Task> run)
    {
        try
        {
            await run();
            return true;
        }
        catch (Exception e) when (!(e is OperationCanceledException && stopping.IsCancellationRequested)
                                  && e is not System.Data.Common.DbException && Classify(e) is { } f)
        {
            StepFailed(logger, step, f.Reason);
            return false;
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Worker lost its lease on {ResourceType}/{ResourceId} while assessing it; another worker owns it now")]
    private static partial void LeaseLost(ILogger logger, string resourceType, string resourceId);

    [LoggerMessage(Level = LogLevel.Information, Message = "FHIR server worker started: poll every {PollIntervalSeconds} s, create subscription {CreateSubscription}")]
    private static partial void Started(ILogger logger, int pollIntervalSeconds, bool createSubscription);

    [LoggerMessage(Level = LogLevel.Warning, Message = "MagCds:Worker:Subscription:Secret is not set: every notification to /worker/notifications is refused (403), so new results are found only by polling (every {PollIntervalSeconds} s; 0 = never)")]
    private static partial void NoSecret(ILogger logger, int pollIntervalSeconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Subscription {SubscriptionId} in use ({SubscriptionAction})")]
    private static partial void SubscriptionReady(ILogger logger, string subscriptionId, string subscriptionAction);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Poll queued {Count} Observations")]
    private static partial void Polled(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Information, Message = "Worker assessed {ResourceType}/{ResourceId}: {Outcome} (attempt {Attempt}, lag {LagMs:0} ms)")]
    private static partial void Assessed(ILogger logger, string resourceType, string resourceId, string outcome, int attempt, double lagMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Worker will retry {ResourceType}/{ResourceId}: {Reason} (attempt {Attempt}, next in {DelaySeconds:0.0} s)")]
    private static partial void WillRetry(ILogger logger, string resourceType, string resourceId, string reason, int attempt, double delaySeconds);

    /// <summary>
    /// Every way a row becomes a dead letter goes through here, so each is counted (the runbook's alert) and logged the
    /// same way; a row this worker no longer holds is left to its owner.
    /// </summary>
    private async Task GiveUpAsync(WorkItem item, string reason)
    {
        try
        {
            if (!await queue.DeadLetterAsync(item, _owner, reason, CancellationToken.None)) return;
        }
        catch (System.Data.Common.DbException e)
        {
            // The store cannot take it now: the row's lease runs out and the row is taken again later.
            StoreFailed(logger, e.GetType().Name);
            return;
        }
        metrics.DeadLettered();
        DeadLettered(logger, item.ResourceType, item.ResourceId, reason, item.Attempts);
    }

    /// <summary>
    /// Gives a leased row back (see <see cref="WorkQueue.RetryAsync"/>). When the store cannot take even that, the row's
    /// lease runs out instead and the row is taken again then; the failure is logged, not thrown, so that the rest of
    /// the batch is still handed back or processed.
    /// </summary>
    private async Task HandBackAsync(WorkItem item, string reason, TimeSpan delay, bool failed)
    {
        try
        {
            await queue.RetryAsync(item, _owner, reason, delay, CancellationToken.None, failed);
        }
        catch (System.Data.Common.DbException e)
        {
            StoreFailed(logger, e.GetType().Name);
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Worker dead-lettered {ResourceType}/{ResourceId}: {Reason} after {Attempts} attempts")]
    private static partial void DeadLettered(ILogger logger, string resourceType, string resourceId, string reason, int attempts);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Worker pauses its calls to the FHIR server for {Seconds:0.0} s, as the server asked (Retry-After)")]
    private static partial void Pausing(ILogger logger, double seconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Worker step {Step} failed: {Reason}")]
    private static partial void StepFailed(ILogger logger, string step, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Worker store error while processing {ResourceType}/{ResourceId}: {Reason} ({Kind}); the row is handed back")]
    private static partial void StoreErrorOnRow(ILogger logger, string resourceType, string resourceId, string reason, string kind);

    [LoggerMessage(Level = LogLevel.Error, Message = "Worker store unavailable: {Reason}")]
    private static partial void StoreFailed(ILogger logger, string reason);
}
