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

    public bool AnyConfigured => ApiKeys.Count > 0 || Jwt.IsConfigured;
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

    /// <summary>Only for tests and labs: allow an http:// authority.</summary>
    public bool RequireHttpsMetadata { get; set; } = true;

    public bool IsConfigured => !string.IsNullOrEmpty(Authority);
}
