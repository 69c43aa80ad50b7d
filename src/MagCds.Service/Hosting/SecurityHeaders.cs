namespace MagCds.Service.Hosting;

/// <summary>
/// Headers on every response: answers carry clinical content, so nothing may be cached or sniffed, framed, or leak
/// a referrer; the API serves no active content. The console (/console) is the one page with scripts and styles, all
/// from the service itself. Answers over HTTPS (MagCds's own TLS, or a proxy's as forwarded headers tell) add HSTS,
/// so that a browser using the console never falls back to plain HTTP.
/// </summary>
public static class SecurityHeaders
{
    public static IApplicationBuilder UseSecurityHeaders(this IApplicationBuilder app) => app.Use(async (http, next) =>
    {
        http.Response.OnStarting(() =>
        {
            var h = http.Response.Headers;
            h["X-Content-Type-Options"] = "nosniff";
            h["X-Frame-Options"] = "DENY";
            h["Referrer-Policy"] = "no-referrer";
            h["Content-Security-Policy"] = http.Request.Path.StartsWithSegments("/console")
                ? "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
                : "default-src 'none'; frame-ancestors 'none'";
            h["Cache-Control"] = "no-store";
            if (http.Request.IsHttps) h["Strict-Transport-Security"] = "max-age=31536000";
            return Task.CompletedTask;
        });
        await next(http);
    });
}
