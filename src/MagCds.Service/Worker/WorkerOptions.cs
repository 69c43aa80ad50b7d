using System.ComponentModel.DataAnnotations;

namespace MagCds.Service.Worker;

public enum OutboundAuth
{
    /// <summary>No Authorization header (a server on a trusted network, or behind a gateway that adds it).</summary>
    None,
    /// <summary>A static bearer token from configuration (<see cref="WorkerOptions.BearerToken"/>).</summary>
    Bearer,
    /// <summary>
    /// SMART Backend Services: an access token from the server's token endpoint (client_credentials grant, client
    /// authenticated with a private_key_jwt assertion), cached until shortly before it expires.
    /// </summary>
    SmartBackend,
}

/// <summary>SMART Backend Services client settings (MagCds:Worker:Smart).</summary>
public sealed class SmartBackendOptions
{
    /// <summary>The authorization server's token endpoint (from the FHIR server's .well-known/smart-configuration).</summary>
    public string? TokenUrl { get; set; }

    /// <summary>The client_id MagCds was registered with.</summary>
    public string? ClientId { get; set; }

    /// <summary>PEM file with MagCds's private key (RSA for RS384, P-384 EC for ES384); its public key is registered as a JWKS.</summary>
    public string? PrivateKeyFile { get; set; }

    /// <summary>The kid of the key, as in the registered JWKS.</summary>
    public string? KeyId { get; set; }

    /// <summary>RS384 or ES384, the two algorithms SMART Backend Services requires servers to accept.</summary>
    public string Algorithm { get; set; } = "RS384";

    /// <summary>
    /// The assertion's aud. Empty: the token endpoint, as SMART App Launch 2.x says. Authorization servers that follow
    /// draft-ietf-oauth-rfc7523bis (the fix for CVE-2025-27370/27371; e.g. OpenIddict 7) want their issuer instead.
    /// </summary>
    public string? AssertionAudience { get; set; }

    /// <summary>The assertion's typ header: "JWT" as SMART App Launch 2.x says, or "client-authentication+jwt" (rfc7523bis).</summary>
    public string AssertionType { get; set; } = "JWT";

    /// <summary>Scopes asked for: reading results, writing assessments, creating and updating (after a secret rotation, or to resume it) the Subscription.</summary>
    public string Scope { get; set; } = "system/Observation.rs system/RiskAssessment.cruds system/DetectedIssue.cruds system/Subscription.crus";
}

/// <summary>
/// The FHIR server door (section MagCds:Worker): a background worker that watches one FHIR server for anti-MAG
/// Observations, evaluates them and writes the RiskAssessment and DetectedIssue back. Off unless Enabled.
/// </summary>
public sealed class WorkerOptions
{
    public const string Section = "MagCds:Worker";

    public bool Enabled { get; set; }

    /// <summary>The FHIR server's base URL, e.g. https://fhir.hospital.example/r4. Required when Enabled.</summary>
    public string? FhirServerUrl { get; set; }

    /// <summary>
    /// The address this store knew the same FHIR server by before (http to https, a new ingress). At start-up everything
    /// kept under it (waiting work, dead letters, the versions assessed, the poll cursor, event numbers) is moved to
    /// <see cref="FhirServerUrl"/>; without it, that work would wait under the old address for ever. Never set it to
    /// another deployment's server in a shared store: its work would move here.
    /// </summary>
    public string? PreviousServerUrl { get; set; }

    /// <summary>Whether <paramref name="uri"/> is on the watched server (under <see cref="FhirServerUrl"/>), not a host its links name.</summary>
    public bool IsWatched(Uri? uri) =>
        uri is not null && Uri.TryCreate(FhirServerUrl, UriKind.Absolute, out var server) && Security.OutboundLinks.IsUnderServer(uri, server);

    public OutboundAuth Auth { get; set; } = OutboundAuth.None;

    /// <summary>The token for <see cref="OutboundAuth.Bearer"/>; keep it in a secret store or environment variable, not in a file.</summary>
    public string? BearerToken { get; set; }

    public SmartBackendOptions Smart { get; set; } = new();

    /// <summary>Seconds between polls (the fallback and catch-up path). 0 turns polling off: subscriptions only.</summary>
    [Range(0, 86_400)]
    public int PollIntervalSeconds { get; set; } = 30;

    /// <summary>Where a first poll starts (FHIR instant); empty means "from now on": results already there are not assessed.</summary>
    public string? PollFrom { get; set; }

    /// <summary>The poll search's page size (_count); the history search reads HistoryCount, the output searches 100.</summary>
    [Range(1, 1000)]
    public int PageSize { get; set; } = 50;

    /// <summary>
    /// How many earlier results of the same patient and code are read for the trend. The CDS Hooks door reads
    /// MaxResults − 1 (21 − 1): kept equal, both doors give a result the same trend and output ids.
    /// </summary>
    [Range(0, 100)]
    public int HistoryCount { get; set; } = 20;

    /// <summary>Resources processed at once.</summary>
    [Range(1, 64)]
    public int Concurrency { get; set; } = 4;

    /// <summary>How long a worker holds a queued row before another (or itself after a restart) may take it.</summary>
    [Range(1, 3600)]
    public int LeaseSeconds { get; set; } = 30;

    /// <summary>
    /// Attempts before a resource that keeps failing with retryable errors (a refused token, a changed earlier output)
    /// is moved to the dead letters. A server that is down, busy or timing out is waited for instead, up to
    /// <see cref="OutageToleranceHours"/>.
    /// </summary>
    [Range(1, 100)]
    public int MaxAttempts { get; set; } = 10;

    /// <summary>
    /// How long work waits for a FHIR server that is unreachable, times out, or answers 408, 429 or 5xx, retrying with
    /// backoff up to <see cref="RetryMaxDelaySeconds"/>, before it is dead-lettered (counted from when it was queued;
    /// such failures are not counted against <see cref="MaxAttempts"/>).
    /// </summary>
    [Range(0, 8760)]
    public double OutageToleranceHours { get; set; } = 72;

    /// <summary>First retry delay; doubled per attempt (with jitter) up to <see cref="RetryMaxDelaySeconds"/>.</summary>
    [Range(0.01, 3600)]
    public double RetryBaseDelaySeconds { get; set; } = 2;

    [Range(0.01, 86_400)]
    public double RetryMaxDelaySeconds { get; set; } = 300;

    /// <summary>Seconds one FHIR request may take, retries included.</summary>
    [Range(1, 600)]
    public int RequestTimeoutSeconds { get; set; } = 30;

    /// <summary>Days finished queue rows are kept (for the admin view and audits of what was processed); dead letters stay until replayed.</summary>
    [Range(1, 3650)]
    public int KeepDoneDays { get; set; } = 7;

    public SubscriptionOptions Subscription { get; set; } = new();
}

/// <summary>Receiving notifications, and optionally creating the Subscription at start-up.</summary>
public sealed class SubscriptionOptions
{
    /// <summary>
    /// The secret a notification must carry in the header <see cref="SecretHeader"/>. Notifications are refused
    /// while it is not set (anyone could otherwise make MagCds read the server).
    /// </summary>
    public string? Secret { get; set; }

    public string SecretHeader { get; set; } = "X-MagCds-Secret";

    /// <summary>Create (or reuse) a Subscription on the server at start-up: topic-based when <see cref="TopicUrl"/> is set, else classic rest-hook.</summary>
    public bool Create { get; set; }

    /// <summary>
    /// Canonical URL of a SubscriptionTopic on the server (R4 Subscriptions Backport IG) that fires on Observation
    /// changes, e.g. one the server defines for created and updated Observations. When set, the created Subscription
    /// is topic-based and filtered to the recognised codes; when not, it is a classic R4 rest-hook Subscription.
    /// </summary>
    public string? TopicUrl { get; set; }

    /// <summary>Payload of topic-based notifications: id-only (default: no clinical content in transit), full-resource or empty.</summary>
    public string PayloadContent { get; set; } = "id-only";

    /// <summary>Seconds between the server's heartbeats on a topic-based Subscription (a heartbeat also reveals missed events); 0 asks for none.</summary>
    public int HeartbeatSeconds { get; set; } = 120;

    /// <summary>
    /// How often the Subscription is looked at again once it is in place: a server may have set it to <c>error</c> or
    /// <c>off</c> (MagCds was unreachable too long) or someone deleted it; then a new one is made. 0: only at start-up.
    /// </summary>
    [Range(0, 86400)]
    public int RecheckSeconds { get; set; } = 600;

    /// <summary>The notification endpoint as the FHIR server reaches it, e.g. https://magcds.hospital.example/worker/notifications.</summary>
    public string? EndpointUrl { get; set; }
}
