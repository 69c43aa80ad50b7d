namespace MagCds.Service.Security;

/// <summary>
/// Who may call the FHIR REST door and the admin endpoints (section MagCds:Security). With nothing configured the
/// service serves anyone, so it refuses to listen on anything but loopback. The CDS Hooks door keeps its own
/// spec-defined JWT check; health probes, metadata and the knowledge are public.
/// </summary>
public sealed class SecurityOptions
{
    public const string Section = "MagCds:Security";

    /// <summary>Static keys for engines that can only send a header (X-API-Key); opt-in.</summary>
    public List<ApiKeyClient> ApiKeys { get; set; } = [];

    /// <summary>OAuth 2.0 bearer JWTs (ASP.NET JwtBearer).</summary>
    public JwtOptions Jwt { get; set; } = new();

    /// <summary>Client certificates (mTLS) for engines that only do certificates; opt-in.</summary>
    public ClientCertificateOptions ClientCertificates { get; set; } = new();

    public bool AnyConfigured => ApiKeys.Count > 0 || Jwt.IsConfigured || ClientCertificates.IsConfigured;
}

/// <summary>One API key: who it is (logged, never the key), and whether it may use the admin endpoints.</summary>
public sealed class ApiKeyClient
{
    public string Name { get; set; } = "";
    public string Key { get; set; } = "";
    public bool Admin { get; set; }
}

public sealed class JwtOptions
{
    /// <summary>The authorization server (its /.well-known/openid-configuration gives issuer and keys).</summary>
    public string? Authority { get; set; }

    /// <summary>The aud the tokens must carry.</summary>
    public string? Audience { get; set; }

    /// <summary>Scope needed for $mag-evaluate.</summary>
    public string EvaluateScope { get; set; } = "magcds/evaluate";

    /// <summary>Scope needed for the admin endpoints.</summary>
    public string AdminScope { get; set; } = "magcds/admin";

    /// <summary>Tolerance for clock differences with the authorization server when checking exp and nbf (0–300, checked in Access).</summary>
    public int ClockSkewSeconds { get; set; } = 60;

    /// <summary>Only for tests and labs: allow an http:// authority.</summary>
    public bool RequireHttpsMetadata { get; set; } = true;

    public bool IsConfigured => !string.IsNullOrEmpty(Authority);
}

/// <summary>
/// Mutual TLS: Kestrel asks for a client certificate on its HTTPS endpoints; a certificate that chains to the
/// configured CA and whose subject is listed identifies its client.
/// </summary>
public sealed class ClientCertificateOptions
{
    /// <summary>PEM file with the CA certificate(s) that issue the clients' certificates (the only roots trusted).</summary>
    public string? CaFile { get; set; }

    /// <summary>The clients, each known by its certificate's subject.</summary>
    public List<CertificateClient> Clients { get; set; } = [];

    /// <summary>Revocation check of the client's chain: Online (default), Offline (cached lists only) or NoCheck.</summary>
    public System.Security.Cryptography.X509Certificates.X509RevocationMode RevocationMode { get; set; } =
        System.Security.Cryptography.X509Certificates.X509RevocationMode.Online;

    public bool IsConfigured => Clients.Count > 0;
}

/// <summary>One certificate client: its name (logged and audited), the subject its certificate carries, and admin rights.</summary>
public sealed class CertificateClient
{
    public string Name { get; set; } = "";

    /// <summary>Distinguished name as in the certificate, e.g. "CN=lab-engine, O=St Example Hospital".</summary>
    public string Subject { get; set; } = "";

    public bool Admin { get; set; }
}
