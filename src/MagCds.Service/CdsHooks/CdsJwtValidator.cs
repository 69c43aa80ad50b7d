using System.Collections.Concurrent;
using MagCds.Service.Storage;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MagCds.Service.CdsHooks;

/// <summary>
/// Checks the JWT an EHR sends with every CDS Hooks call (CDS Hooks 2.0 "Trusting CDS Clients" and the
/// best-practice list): issuer allow-listed; key found by kid in that issuer's JWKS (configured URL or file, or an
/// allow-listed jku); signature ES384/RS384 only (never none or HMAC); aud equal to the exact endpoint URL; exp and
/// iat within the clock skew and lifetime bound; jti never seen before within the token's lifetime.
/// Parsing and cryptography are Microsoft.IdentityModel's. The token itself is never logged.
/// </summary>
public sealed partial class CdsJwtValidator(
    IOptionsMonitor<CdsHooksOptions> options, JwksProvider jwks, ReplayGuard replay, TimeProvider time, ILogger<CdsJwtValidator> logger)
{
    private readonly JsonWebTokenHandler _handler = new();

    /// <summary>The trusted issuer whose valid token for <paramref name="audiences"/> (any one of them) the request carries; null when it carries none.</summary>
    public async Task<TrustedIssuer?> ValidateAsync(HttpRequest request, IReadOnlyList<string> audiences, CancellationToken ct)
    {
        var o = options.CurrentValue;
        string header = request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return Reject("no-bearer-token");
        string token = header["Bearer ".Length..].Trim();
        if (!_handler.CanReadToken(token)) return Reject("unreadable");

        JsonWebToken jwt;
        try { jwt = _handler.ReadJsonWebToken(token); }
        catch (ArgumentException) { return Reject("unreadable"); }

        // Cheap checks first, before any key is fetched.
        if (!o.Algorithms.Contains(jwt.Alg, StringComparer.Ordinal)) return Reject("algorithm-not-allowed");
        // CDS Hooks 2.0: typ is REQUIRED, fixed "JWT".
        if (!jwt.TryGetHeaderValue<string>("typ", out var typ) || !string.Equals(typ, "JWT", StringComparison.OrdinalIgnoreCase)) return Reject("typ");
        // RFC 7515 4.1.11: a recipient that does not understand a header listed in crit must refuse the token, and
        // MagCds defines no extension headers (the token handler does not check crit itself).
        if (jwt.TryGetHeaderValue<object>("crit", out _)) return Reject("crit");
        var issuer = o.TrustedIssuers.FirstOrDefault(i => i.Issuer == jwt.Issuer);
        if (issuer is null) return Reject("untrusted-issuer");
        if (string.IsNullOrEmpty(jwt.Kid)) return Reject("no-kid");
        if (string.IsNullOrEmpty(jwt.Id)) return Reject("no-jti");

        // A jku must be allow-listed. Keys come from the issuer's configured JWKS when there is one (a file serves EHRs
        // whose key URL this service cannot reach), otherwise from the allow-listed jku.
        string? jku = jwt.TryGetHeaderValue<string>("jku", out var j) && !string.IsNullOrEmpty(j) ? j : null;
        if (jku is not null && !issuer.AllowedJku.Contains(jku, StringComparer.Ordinal)) return Reject("jku-not-allowed");
        string? keySource = issuer.JwksFile is not null ? "file:" + issuer.JwksFile : issuer.JwksUrl ?? jku;
        if (keySource is null) return Reject("no-key-source");

        var key = await jwks.FindKeyAsync(keySource, jwt.Kid, ct);
        if (key is null) return Reject("unknown-kid");

        var skew = TimeSpan.FromSeconds(o.ClockSkewSeconds);
        var now = time.GetUtcNow();
        var parameters = new TokenValidationParameters
        {
            ValidIssuer = issuer.Issuer,
            ValidAudiences = audiences,
            IgnoreTrailingSlashWhenValidatingAudience = false, // aud is this service's URL exactly
            IssuerSigningKey = key,
            ValidAlgorithms = o.Algorithms,
            RequireSignedTokens = true,
            RequireExpirationTime = true,
            ValidateLifetime = true,
            ClockSkew = skew,
            // The injected clock decides, so tests and replicas agree on "now".
            LifetimeValidator = (nbf, exp, _, _) => exp is { } e && e.ToUniversalTime() + skew >= now.UtcDateTime && (nbf is null || nbf.Value.ToUniversalTime() - skew <= now.UtcDateTime),
        };
        // The token as read above: its claims were already parsed once, for the checks before the key was fetched.
        var result = await _handler.ValidateTokenAsync(jwt, parameters);
        if (!result.IsValid) return Reject(result.Exception?.GetType().Name ?? "invalid");

        var iat = jwt.IssuedAt == DateTime.MinValue ? (DateTimeOffset?)null : new DateTimeOffset(jwt.IssuedAt, TimeSpan.Zero);
        var exp = new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero);
        if (iat is null) return Reject("no-iat");
        if (iat > now + skew) return Reject("iat-in-future");
        if (exp - now > TimeSpan.FromMinutes(o.MaxTokenLifetimeMinutes)) return Reject("lifetime-too-long");

        // Replay: a jti is remembered in the store until its token expires, so it is accepted once across replicas.
        if (!await replay.FirstUseAsync($"cds-jti|{issuer.Issuer}|{jwt.Id}", exp + skew, ct)) return Reject("replayed-jti");
        return issuer;
    }

    private TrustedIssuer? Reject(string reason)
    {
        Rejected(logger, reason);
        return null;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "CDS Hooks JWT rejected: {Reason}")]
    private static partial void Rejected(ILogger logger, string reason);
}

/// <summary>
/// JWKS of trusted EHRs, by URL (fetched with a resilient HttpClient) or local file ("file:" + path), cached for ten
/// minutes; an unknown kid triggers at most one refresh per source every 30 seconds (key rotation without hammering).
/// A known kid never waits for the key URL: past the ten minutes its keys are fetched again beside the call, so a
/// slow or failing key URL does not hold up (or, with an EHR that gives up after a few seconds, fail) its calls.
/// </summary>
public sealed class JwksProvider(IHttpClientFactory http, TimeProvider time)
{
    public const string HttpClientName = "cds-hooks-jwks";

    /// <summary>A source's keys (null until a fetch succeeded), when they were fetched, and when a fetch was last tried.</summary>
    private sealed record Entry(JsonWebKeySet? Keys, DateTimeOffset Fetched, DateTimeOffset Attempted);

    private readonly ConcurrentDictionary<string, Entry> _cache = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _gates = new(StringComparer.Ordinal);
    private static readonly TimeSpan CacheFor = TimeSpan.FromMinutes(10), RetryAfter = TimeSpan.FromSeconds(30);

    public async Task<SecurityKey?> FindKeyAsync(string source, string kid, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        if (_cache.TryGetValue(source, out var hit))
        {
            var key = hit.Keys is null ? null : Find(hit.Keys, kid);
            if (key is not null)
            {
                // Stale keys are fetched again in the background (at most one fetch per 30 s); this call goes on with
                // the key it knows. A key the EHR has withdrawn stops working once that fetch is in.
                if (now - hit.Fetched >= CacheFor && now - hit.Attempted >= RetryAfter)
                {
                    // Not on the call's execution context: the refresh outlives the request.
                    using (ExecutionContext.SuppressFlow()) _ = Task.Run(() => RefreshAsync(source, now));
                }
                return key;
            }
            // Tried within the last 30 s (an unknown kid, or a JWKS endpoint that is down): one fetch per 30 s, not one per call.
            if (now - hit.Attempted < RetryAfter) return null;
        }
        // An unknown kid (or a first call): only a fetch can tell. One gate per source: one EHR's slow JWKS endpoint
        // never holds up the calls of another.
        var gate = Gate(source);
        await gate.WaitAsync(ct);
        try
        {
            // Calls that waited here while another tried the same source use its outcome instead of fetching again.
            if (_cache.TryGetValue(source, out var fresh) && fresh.Attempted >= now) return fresh.Keys is null ? null : Find(fresh.Keys, kid);
            var entry = await FetchAsync(source, ct);
            return entry.Keys is null ? null : Find(entry.Keys, kid);
        }
        finally { gate.Release(); }
    }

    private SemaphoreSlim Gate(string source) => _gates.GetOrAdd(source, _ => new SemaphoreSlim(1, 1));

    /// <summary>Fetches a source's keys and records the outcome; a failed fetch keeps the keys already known.</summary>
    private async Task<Entry> FetchAsync(string source, CancellationToken ct)
    {
        _cache.TryGetValue(source, out var known);
        var keys = await LoadAsync(source, ct);
        var at = time.GetUtcNow();
        // An EHR's JWKS endpoint being down does not lock it out: its known keys stay in use.
        var entry = keys is null ? new Entry(known?.Keys, known?.Fetched ?? DateTimeOffset.MinValue, at) : new Entry(keys, at, at);
        _cache[source] = entry;
        return entry;
    }

    /// <summary>
    /// A refresh beside the calls: skipped while another fetch of the source is under way or one was tried since
    /// <paramref name="staleAt"/>; bounded by the key client's own time-outs. Nothing may escape an unobserved task,
    /// and every attempt is recorded, so a failing refresh is tried again after 30 s, not on every call.
    /// </summary>
    private async Task RefreshAsync(string source, DateTimeOffset staleAt)
    {
        var gate = Gate(source);
        if (!await gate.WaitAsync(0)) return;
        try
        {
            if (_cache.TryGetValue(source, out var current) && current.Attempted >= staleAt) return;
            await FetchAsync(source, CancellationToken.None);
        }
        catch (Exception)
        {
            // LoadAsync already records the failures it knows; anything else still counts as an attempt.
            if (_cache.TryGetValue(source, out var known)) _cache[source] = known with { Attempted = time.GetUtcNow() };
        }
        finally { gate.Release(); }
    }

    private static SecurityKey? Find(JsonWebKeySet set, string kid) =>
        set.Keys.FirstOrDefault(k => k.Kid == kid && (k.Use is null || k.Use == "sig"));

    private async Task<JsonWebKeySet?> LoadAsync(string source, CancellationToken ct)
    {
        try
        {
            string json = source.StartsWith("file:", StringComparison.Ordinal)
                ? await File.ReadAllTextAsync(source["file:".Length..], ct)
                : await http.CreateClient(HttpClientName).GetStringAsync(source, ct);
            return new JsonWebKeySet(json);
        }
        // A caller that hung up cancels only its own call: that is no verdict on the key URL, so nothing is recorded
        // (the exception propagates) and the next call fetches.
        catch (Exception e) when (!ct.IsCancellationRequested && (e is IOException or HttpRequestException or ArgumentException or UnauthorizedAccessException
                                      or TaskCanceledException or System.Text.Json.JsonException or Polly.ExecutionRejectedException))
        {
            return null;
        }
    }
}
