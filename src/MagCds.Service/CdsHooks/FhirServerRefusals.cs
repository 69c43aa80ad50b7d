using System.Collections.Concurrent;

namespace MagCds.Service.CdsHooks;

/// <summary>
/// Calls whose fhirServer their issuer's <c>FhirServers</c> do not list (MagCds does not query it). Each one is counted
/// (metric <c>magcds.cdshooks.fhirserver_not_allowed</c>, by service and issuer); the warning is logged for an issuer's
/// first such call and then at most once a minute, with the number of calls since. An EHR configured against another
/// address makes every call such a call, and a warning per call would bury everything else in the log.
/// Issuers are the configured trusted ones only (a call gets here with a valid token), so the state stays small.
/// </summary>
public sealed partial class FhirServerRefusals(CdsHooksMetrics metrics, TimeProvider time, ILogger<FhirServerRefusals> logger)
{
    private static readonly TimeSpan Quiet = TimeSpan.FromMinutes(1);
    private readonly ConcurrentDictionary<string, Window> _byIssuer = new(StringComparer.Ordinal);

    private sealed class Window
    {
        public DateTimeOffset NextLine = DateTimeOffset.MinValue;
        public long NotLogged;
    }

    public void Refused(string serviceId, string issuer)
    {
        metrics.FhirServerNotAllowed(serviceId, issuer);
        var window = _byIssuer.GetOrAdd(issuer, _ => new Window());
        long since;
        lock (window)
        {
            var now = time.GetUtcNow();
            if (now < window.NextLine)
            {
                window.NotLogged++;
                return;
            }
            since = window.NotLogged;
            window.NotLogged = 0;
            window.NextLine = now + Quiet;
        }
        FhirServerNotAllowed(logger, issuer, since);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "CDS Hooks call from {Issuer} names a fhirServer outside that issuer's FhirServers; it is not queried (the call is answered from its prefetch, or 412). Such calls from this issuer since the last line: {NotLogged} more (one line a minute at most; the metric magcds.cdshooks.fhirserver_not_allowed counts every call)")]
    private static partial void FhirServerNotAllowed(ILogger logger, string issuer, long notLogged);
}
