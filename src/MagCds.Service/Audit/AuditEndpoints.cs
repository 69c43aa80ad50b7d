using MagCds.Service.Hosting;
using MagCds.Service.Security;

namespace MagCds.Service.Audit;

/// <summary><c>GET /admin/audit?door=&amp;max=</c>: the newest audit entries (admin access).</summary>
public static class AuditEndpoints
{
    public static IEndpointRouteBuilder MapAudit(this IEndpointRouteBuilder app)
    {
        app.MapGet("/admin/audit", async (AuditTrail audit, CancellationToken ct, string? door, int max = 100) =>
                Results.Json(await audit.QueryAsync(door, Math.Clamp(max, 1, 1000), ct)))
            .RequireAuthorization(Access.AdminPolicy)
            .RequireRateLimiting(RateLimits.Policy);
        return app;
    }

    /// <summary>Who is calling, for the audit: the JWT subject, the API key's name, or "anonymous".</summary>
    public static string Caller(HttpContext http) =>
        http.User.FindFirst("sub")?.Value ?? http.User.Identity?.Name ?? "anonymous";
}
