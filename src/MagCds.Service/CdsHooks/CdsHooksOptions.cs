using System.ComponentModel.DataAnnotations;

namespace MagCds.Service.CdsHooks;

/// <summary>Options of the CDS Hooks door (section MagCds:CdsHooks). The defaults are secure: no issuer is trusted.</summary>
public sealed class CdsHooksOptions
{
    public const string Section = "MagCds:CdsHooks";

    /// <summary>
    /// The public base URL EHRs call (e.g. https://magcds.hospital.org). JWT <c>aud</c> must equal this plus the
    /// endpoint path. Required once an issuer is trusted (never taken from the request's Host header); without one
    /// (development mode) the URL of the incoming request is used for links.
    /// </summary>
    public string? PublicBaseUrl { get; set; }

    /// <summary>EHRs whose JWTs are accepted, each with where its keys come from.</summary>
    public List<TrustedIssuer> TrustedIssuers { get; set; } = [];

    /// <summary>
    /// Accepted JWT signature algorithms (CDS Hooks 2.0 recommends ES384 and RS384; none and HMAC are never accepted).
    /// Empty until bound, because configuration adds to a list that has items instead of replacing them (so it could
    /// never be narrowed); <see cref="DefaultAlgorithms"/> apply when none are configured.
    /// </summary>
    public List<string> Algorithms { get; set; } = [];

    public static readonly IReadOnlyList<string> DefaultAlgorithms = ["ES384", "RS384"];

    /// <summary>Tolerated clock difference for exp, iat and nbf.</summary>
    [Range(0, 600)]
    public int ClockSkewSeconds { get; set; } = 60;

    /// <summary>Longest accepted token lifetime (exp - now); bounds the jti replay cache (best practice: at most an hour).</summary>
    [Range(1, 60)]
    public int MaxTokenLifetimeMinutes { get; set; } = 60;

    /// <summary>DEVELOPMENT ONLY: accept calls without a valid JWT. The service logs a warning at start-up when on.</summary>
    public bool AllowUnsignedCalls { get; set; }

    /// <summary>Browser origins allowed by CORS (e.g. https://sandbox.cds-hooks.org); empty means no cross-origin access.</summary>
    public List<string> AllowedOrigins { get; set; } = [];

    /// <summary>Allow a plain-http <c>fhirServer</c> (test servers only; production FHIR servers use https).</summary>
    public bool AllowInsecureFhirServer { get; set; }

    /// <summary>Total time allowed for FHIR queries of one hook call (retries included) before answering 412.</summary>
    [Range(1, 30)]
    public int FhirQueryTimeoutSeconds { get; set; } = 4;

    /// <summary>Largest accepted hook request or feedback body in bytes (prefetch included).</summary>
    [Range(1024, 1L << 30)]
    public long MaxRequestBodyBytes { get; set; } = 4 * 1024 * 1024;

    /// <summary>
    /// How many of the patient's anti-MAG results are read (prefetch _count and query limit): the latest and, for its
    /// trend, at most MaxResults − 1 results dated before it, also from a prefetch that holds more. The default is the
    /// worker's HistoryCount (20) + 1, so that both doors give a patient's latest result the same trend and output ids.
    /// </summary>
    [Range(1, 101)]
    public int MaxResults { get; set; } = 21;
}

/// <summary>An EHR trusted to call: its <c>iss</c>, and its JWKS by URL, by local file, or by allow-listed <c>jku</c> URLs.</summary>
public sealed class TrustedIssuer
{
    [Required] public string Issuer { get; set; } = "";
    /// <summary>JWKS URL configured for this issuer; used instead of any (allow-listed) jku the token names, as is <see cref="JwksFile"/>.</summary>
    public string? JwksUrl { get; set; }
    /// <summary>JWKS as a local file, for EHRs whose key URL this service cannot reach.</summary>
    public string? JwksFile { get; set; }
    /// <summary>jku header values accepted for this issuer (exact match); a token with any other jku is refused.</summary>
    public List<string> AllowedJku { get; set; } = [];
    /// <summary>
    /// Base URLs of the FHIR servers this EHR may name as <c>fhirServer</c> (same scheme, host, port and base path).
    /// Set, MagCds queries (and sends the call's access token to) no other server; empty, any https server.
    /// </summary>
    public List<string> FhirServers { get; set; } = [];

    /// <summary>Whether MagCds may read <paramref name="fhirServer"/> (and send this EHR's access token there).</summary>
    public bool MayQuery(Uri fhirServer) => FhirServers.Count == 0
        || FhirServers.Any(s => Uri.TryCreate(s, UriKind.Absolute, out var allowed) && Security.OutboundLinks.IsUnderServer(fhirServer, allowed));
}
