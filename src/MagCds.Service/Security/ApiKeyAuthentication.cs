using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Security;

/// <summary>
/// The X-API-Key scheme: a request with the header is authenticated as the key's client (compared in constant time);
/// without the header this scheme says nothing, so the caller is anonymous.
/// </summary>
public sealed class ApiKeyAuthentication(IOptionsMonitor<AuthenticationSchemeOptions> schemes, ILoggerFactory logger, UrlEncoder encoder,
    IOptions<SecurityOptions> security) : AuthenticationHandler<AuthenticationSchemeOptions>(schemes, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string Header = "X-API-Key";
    public const string RoleClaim = "magcds:role";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        if (!Request.Headers.TryGetValue(Header, out var value)) return Task.FromResult(AuthenticateResult.NoResult());
        string given = value.ToString();
        foreach (var client in security.Value.ApiKeys)
        {
            if (!Secrets.Same(given, client.Key)) continue;
            var identity = new ClaimsIdentity(
                [new Claim(ClaimTypes.Name, client.Name), new Claim(RoleClaim, client.Admin ? "admin" : "client")], SchemeName);
            return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
        }
        return Task.FromResult(AuthenticateResult.Fail("unknown API key"));
    }
}
