using System.Net;
using System.Security.Claims;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using OpenIddict.Server.AspNetCore;
using Microsoft.AspNetCore;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace MagCds.Tests.Support;

/// <summary>
/// A real OAuth 2.0 authorization server for the tests: OpenIddict (from NuGet) on a loopback Kestrel port, with the
/// client_credentials grant, private_key_jwt client authentication (a registered JWKS), and token introspection
/// (RFC 7662) for the FHIR test server to check the access tokens it receives.
/// </summary>
public sealed class AuthorizationServer : IAsyncDisposable
{
    public const string FhirServerClientId = "fhir-test-server";
    public const string FhirServerSecret = "fhir-test-server-secret";
    /// <summary>A second client, with a secret, for the tests' own calls to the FHIR server (seeding, reading back).</summary>
    public const string TestClientId = "test-client";
    public const string TestClientSecret = "test-client-secret";
    private readonly WebApplication _app;

    private AuthorizationServer(WebApplication app, string baseUrl)
    {
        _app = app;
        BaseUrl = baseUrl;
    }

    public string BaseUrl { get; }
    public string TokenUrl => BaseUrl + "/connect/token";
    public string IntrospectionUrl => BaseUrl + "/connect/introspect";

    /// <summary>How many access tokens were issued (so a test can see caching at work).</summary>
    public int TokensIssued => _issued;
    private int _issued;

    /// <summary>Settings for the FHIR test server so that it accepts only tokens this server issued and still deems active.</summary>
    public IReadOnlyDictionary<string, string> FhirServerEnvironment => new Dictionary<string, string>
    {
        ["FHIR_INTROSPECT_URL"] = IntrospectionUrl,
        ["FHIR_INTROSPECT_CLIENT"] = $"{FhirServerClientId}:{FhirServerSecret}",
    };

    /// <summary>
    /// Starts the server with a backend client authenticated by the public key(s) in <paramref name="clientJwks"/>
    /// (none when null), plus the tests' own client with a secret.
    /// </summary>
    /// <param name="resource">The audience of the access tokens issued (the API that accepts them).</param>
    public static async Task<AuthorizationServer> StartAsync(string clientId, JsonWebKeySet? clientJwks, IReadOnlyList<string> scopes,
        TimeSpan? accessTokenLifetime = null, string resource = FhirServerClientId)
    {
        int port = WorkerHarness.FreePort();
        string baseUrl = $"http://127.0.0.1:{port}";
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls(baseUrl);
        builder.Logging.ClearProviders();
        string db = Guid.NewGuid().ToString("N");
        builder.Services.AddDbContext<DbContext>(o => { o.UseInMemoryDatabase(db); o.UseOpenIddict(); });
        builder.Services.AddOpenIddict()
            .AddCore(o => o.UseEntityFrameworkCore().UseDbContext<DbContext>())
            .AddServer(o =>
            {
                o.SetIssuer(new Uri(baseUrl + "/"));
                o.SetTokenEndpointUris("connect/token").SetIntrospectionEndpointUris("connect/introspect");
                o.AllowClientCredentialsFlow();
                o.RegisterScopes([.. scopes]);
                o.SetAccessTokenLifetime(accessTokenLifetime ?? TimeSpan.FromMinutes(5));
                o.AddEphemeralEncryptionKey().AddEphemeralSigningKey();
                o.DisableAccessTokenEncryption();
                o.UseAspNetCore().EnableTokenEndpointPassthrough().DisableTransportSecurityRequirement();
            });
        var app = builder.Build();
        var server = new AuthorizationServer(app, baseUrl);

        // The grant itself: the client (already authenticated by OpenIddict from its assertion) gets the scopes it
        // asked for, for the FHIR server as audience (which lets the FHIR server introspect the token).
        app.MapPost("/connect/token", (HttpContext http) =>
        {
            var request = http.GetOpenIddictServerRequest() ?? throw new InvalidOperationException("Not an OpenID request.");
            if (!request.IsClientCredentialsGrantType()) return Results.BadRequest();
            var identity = new ClaimsIdentity(TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);
            identity.SetClaim(Claims.Subject, request.ClientId);
            identity.SetScopes(request.GetScopes());
            identity.SetResources(resource);
            identity.SetDestinations(_ => [Destinations.AccessToken]);
            Interlocked.Increment(ref server._issued);
            return Results.SignIn(new ClaimsPrincipal(identity), authenticationScheme: OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        });

        await using (var scope = app.Services.CreateAsyncScope())
        {
            var apps = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
            var client = new OpenIddictApplicationDescriptor
            {
                ClientId = clientId,
                ClientType = ClientTypes.Confidential,
                JsonWebKeySet = clientJwks,
                Permissions = { Permissions.Endpoints.Token, Permissions.GrantTypes.ClientCredentials },
            };
            foreach (var s in scopes) client.Permissions.Add(Permissions.Prefixes.Scope + s);
            if (clientJwks is not null) await apps.CreateAsync(client);
            var tester = new OpenIddictApplicationDescriptor
            {
                ClientId = TestClientId,
                ClientSecret = TestClientSecret,
                ClientType = ClientTypes.Confidential,
                Permissions = { Permissions.Endpoints.Token, Permissions.GrantTypes.ClientCredentials },
            };
            foreach (var s in scopes) tester.Permissions.Add(Permissions.Prefixes.Scope + s);
            await apps.CreateAsync(tester);
            await apps.CreateAsync(new OpenIddictApplicationDescriptor
            {
                ClientId = FhirServerClientId,
                ClientSecret = FhirServerSecret,
                ClientType = ClientTypes.Confidential,
                Permissions = { Permissions.Endpoints.Introspection },
            });
        }
        await app.StartAsync();
        return server;
    }

    /// <summary>An access token for the tests' own client (client_secret_post), valid for the configured lifetime.</summary>
    public async Task<string> TestClientTokenAsync(string scope)
    {
        using var http = new HttpClient();
        using var resp = await http.PostAsync(TokenUrl, new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials", ["client_id"] = TestClientId, ["client_secret"] = TestClientSecret, ["scope"] = scope,
        }));
        string body = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), body);
        return System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("access_token").GetString()!;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
