namespace MagCds.Service.Worker;

/// <summary>Admin endpoints (section MagCds:Admin).</summary>
public sealed class AdminOptions
{
    public const string Section = "MagCds:Admin";
    public const string ApiKeyHeader = "X-API-Key";

    /// <summary>The key admin calls send in <see cref="ApiKeyHeader"/>; the admin endpoints refuse every call while it is not set.</summary>
    public string? ApiKey { get; set; }
}
