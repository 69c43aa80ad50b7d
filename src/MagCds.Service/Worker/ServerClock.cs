using Microsoft.Extensions.Options;

namespace MagCds.Service.Worker;

/// <summary>
/// The watched server's time, read from the <c>Date</c> header of its answers (an origin server with a clock sends one,
/// RFC 9110 §6.6.1). Polling compares times with the server's <c>meta.lastUpdated</c> stamps (the first cursor, whether
/// the newest write has settled), so it reads them on the server's clock: with this machine's, a server whose clock
/// runs behind would have every result written after a first start fall before the cursor. The header has whole
/// seconds and is stamped before the answer arrives, so the offset it gives is never ahead of the server's clock: a
/// cursor from it may re-read a second or so (queueing is idempotent), never skip. Without any Date header, the
/// server's time is taken to be this machine's.
/// </summary>
public sealed class ServerClock(TimeProvider time)
{
    private long _offsetTicks; // the server's clock minus this machine's
    private int _known;

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
}

/// <summary>Feeds <see cref="ServerClock"/> from the answers of the watched server (not of hosts its links name).</summary>
public sealed class ServerClockHandler(ServerClock clock, IOptions<WorkerOptions> options) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken);
        if (response.Headers.Date is { } date && request.RequestUri is { } uri
            && Uri.TryCreate(options.Value.FhirServerUrl, UriKind.Absolute, out var server) && Security.OutboundLinks.IsUnderServer(uri, server))
            clock.Observe(date);
        return response;
    }
}
