using MagCds.Service.Hosting;
using MagCds.Service.Security;

namespace MagCds.Service.Audit;

/// <summary><c>GET /admin/audit?door=&amp;max=</c>: the newest audit entries (admin access).</summary>
public static class AuditEndpoints
{
    public static IEndpointRouteBuilder MapAudit(this IEndpointRouteBuilder app)
    {
        app.MapRead("/admin/audit", async (AuditTrail audit, CancellationToken ct, string? door, int max = 100) =>
                Results.Json(await audit.QueryAsync(door, Math.Clamp(max, 1, 1000), ct)))
            .RequireAuthorization(Access.AdminPolicy)
            .RequireRateLimiting(RateLimits.Policy)
            .Audited();
        return app;
    }

    /// <summary>What an endpoint adds to its "done" (how many it replayed or queued), set in HttpContext.Items; no PHI.</summary>
    public const string DetailItem = "magcds.audit-detail";

    /// <summary>
    /// Every call of these admin endpoints (reading the audit trail, the queue or its dead letters; replaying them) is
    /// itself an audit entry of door "admin": who, when, which route with its id, and whether it was done or refused.
    /// </summary>
    public static TBuilder Audited<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter(async (ctx, next) =>
        {
            var http = ctx.HttpContext;
            var audit = http.RequestServices.GetRequiredService<AuditTrail>();
            string route = $"{http.Request.Method} {RequestLogLine.RouteOf(http)}";
            string? id = http.Request.RouteValues.TryGetValue("id", out var v) ? v?.ToString() : null;
            void Record(string outcome) => audit.Record(new AuditEntry(audit.Now, "admin", Caller(http), http.TraceIdentifier, route, id, "", outcome, []));
            try
            {
                var result = await next(ctx);
                Record(http.Items[DetailItem] is string detail ? $"done ({detail})" : "done");
                return result;
            }
            catch (Exception e) when (!http.RequestAborted.IsCancellationRequested)
            {
                // The code the error handler answers with. Kept in memory until the store is back, like every entry.
                Record(Hosting.FhirErrorHandler.CodeOf(e).Code);
                throw;
            }
        });

    /// <summary>Who is calling, for the audit: the JWT subject, the API key's name, or "anonymous".</summary>
    public static string Caller(HttpContext http) =>
        http.User.FindFirst("sub")?.Value ?? http.User.Identity?.Name ?? "anonymous";
}
