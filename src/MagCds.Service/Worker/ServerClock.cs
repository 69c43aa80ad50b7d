using Microsoft.Extensions.Options;

namespace MagCds.Service.Worker;

/// <summary>
/// The watched server's time, read from the <c>Date</c> header of its answers (an origin server with a clock sends one,
/// RFC 9110 §6.6.1). Polling compares times with the server's <c>meta.lastUpdated</c> stamps (the first cursor, whether
/// the newest write has settled), so it reads them on the server's clock: with this machine's, a server whose clock
/// runs behind would have every result written after a first start fall before the cursor. The header has whole
/// seconds and is stamped before the answer arrives, so the offset it gives is never ahead of the server's clock: a
/// cursor from it may re-read a second or so (queueing is idempotent), never skip. Without any Date header, the
/// server's time is taken to be this machine's. It also keeps when the server asked to be left alone (a 429 or 503
/// with <c>Retry-After</c>): the worker sends it nothing before then (<see cref="ServerPauseGate"/>).
/// </summary>
public sealed class ServerClock(TimeProvider time)
{
    private long _offsetTicks; // the server's clock minus this machine's
    private int _known;
    private long _pausedUntilTicks; // this machine's clock (UTC ticks): no call to the server before then

    /// <summary>Whether the server has sent a Date header yet.</summary>
    public bool Known => Volatile.Read(ref _known) == 1;

    /// <summary>The server's time now.</summary>
    public DateTimeOffset Now => ToServer(time.GetUtcNow());

    /// <summary>An instant of this machine's clock (from <see cref="TimeProvider"/>) on the server's clock.</summary>
    public DateTimeOffset ToServer(DateTimeOffset local) => local + TimeSpan.FromTicks(Interlocked.Read(ref _offsetTicks));

    /// <summary>Records the Date of an answer that has just arrived (the latest one counts: clocks get corrected).</summary>
    public void Observe(DateTimeOffset serverDate)
    {
        Interlocked.Exchange(ref _offsetTicks, (serverDate - time.GetUtcNow()).Ticks);
        Volatile.Write(ref _known, 1);
    }

    /// <summary>Records that the server asked for no calls for <paramref name="wait"/> from now (the later of two asks counts).</summary>
    public void Pause(TimeSpan wait)
    {
        long until = (time.GetUtcNow() + wait).UtcTicks, seen;
        do seen = Interlocked.Read(ref _pausedUntilTicks);
        while (until > seen && Interlocked.CompareExchange(ref _pausedUntilTicks, until, seen) != seen);
    }

    /// <summary>Until when (this machine's clock) the server asked for no calls; null when it did not, or that has passed.</summary>
    public DateTimeOffset? PausedUntil
    {
        get
        {
            long until = Interlocked.Read(ref _pausedUntilTicks);
            return until > time.GetUtcNow().UtcTicks ? new DateTimeOffset(until, TimeSpan.Zero) : null;
        }
    }

    /// <summary>How much of the pause the server asked for is left (one reading of the clock); null when none is.</summary>
    public TimeSpan? PauseLeft()
    {
        long left = Interlocked.Read(ref _pausedUntilTicks) - time.GetUtcNow().UtcTicks;
        return left > 0 ? TimeSpan.FromTicks(left) : null;
    }
}

/// <summary>A call to the watched server not sent, because the server asked for a pause (Retry-After) that is not over.</summary>
public sealed class ServerPausedException() : HttpRequestException("The FHIR server asked for a pause (Retry-After) that is not over; the call was not sent.");

/// <summary>
/// Holds back every call to the watched server while it has asked for a pause (<see cref="ServerClock.PauseLeft"/>),
/// including the calls of rows already being assessed when the ask came: they fail at once as an outage
/// (<see cref="ServerPausedException"/>) and wait in the queue. It sits outside the retries, so a held-back call is
/// neither retried nor counted by the circuit breaker.
/// </summary>
public sealed class ServerPauseGate(ServerClock clock, IOptions<WorkerOptions> options) : DelegatingHandler
{
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
        clock.PauseLeft() is not null && options.Value.IsWatched(request.RequestUri)
            ? Task.FromException<HttpResponseMessage>(new ServerPausedException())
            : base.SendAsync(request, cancellationToken);
}

/// <summary>
/// Feeds <see cref="ServerClock"/> from every answer of the watched server (not of hosts its links name), each attempt
/// of a call included (it sits inside the retries): its Date, and the Retry-After of a 429 or 503, honoured up to
/// <see cref="WorkerOptions.RetryMaxDelaySeconds"/>, the longest MagCds is configured to wait between tries.
/// </summary>
public sealed class ServerClockHandler(ServerClock clock, IOptions<WorkerOptions> options) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken);
        if (!options.Value.IsWatched(request.RequestUri)) return response;
        if (response.Headers.Date is { } date) clock.Observe(date);
        if (response.StatusCode is System.Net.HttpStatusCode.TooManyRequests or System.Net.HttpStatusCode.ServiceUnavailable
            && response.Headers.RetryAfter is { } retryAfter)
        {
            // A date is on the server's clock: the wait is counted from its Date, else from now.
            var wait = retryAfter.Delta ?? retryAfter.Date - (response.Headers.Date ?? clock.Now) ?? TimeSpan.Zero;
            var most = TimeSpan.FromSeconds(options.Value.RetryMaxDelaySeconds);
            if (wait > TimeSpan.Zero) clock.Pause(wait < most ? wait : most);
        }
        return response;
    }
}
