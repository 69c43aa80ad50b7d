using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MagCds.Service.Worker;

/// <summary>
/// SMART Backend Services (client_credentials with a private_key_jwt client assertion, SMART App Launch 2.x): gets
/// an access token from the token endpoint and keeps it until shortly before it expires, or until the FHIR
/// server refuses it. Neither the assertion nor the token is ever logged.
/// </summary>
public sealed class SmartBackendTokens(IHttpClientFactory http, IOptions<WorkerOptions> options, TimeProvider time) : IDisposable
{
    public const string HttpClientName = "worker-token";
    private readonly SemaphoreSlim _gate = new(1, 1);
    // Checked at start-up (CanLoad); a read that fails later (the file replaced while it is written) is tried again on
    // the next token request instead of being kept as the answer for good.
    private readonly Lazy<SigningCredentials> _credentials = new(() => LoadCredentials(options.Value.Smart), LazyThreadSafetyMode.PublicationOnly);
    private string? _token;
    private DateTimeOffset _renewAt;

    public async Task<string> GetAsync(CancellationToken ct)
    {
        if (_token is { } cached && time.GetUtcNow() < _renewAt) return cached;
        await _gate.WaitAsync(ct);
        try
        {
            if (_token is { } again && time.GetUtcNow() < _renewAt) return again;
            (_token, _renewAt) = await RequestAsync(ct);
            return _token;
        }
        finally { _gate.Release(); }
    }

    /// <summary>Drops the cached token (the FHIR server answered 401), so the next call gets a new one.</summary>
    public void Invalidate() => _renewAt = DateTimeOffset.MinValue;

    private async Task<(string, DateTimeOffset)> RequestAsync(CancellationToken ct)
    {
        var s = options.Value.Smart;
        var now = time.GetUtcNow();
        string assertion = new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = s.ClientId,
            Audience = string.IsNullOrEmpty(s.AssertionAudience) ? s.TokenUrl : s.AssertionAudience,
            IssuedAt = now.UtcDateTime,
            Expires = now.AddMinutes(5).UtcDateTime, // SMART: no more than five minutes
            Claims = new Dictionary<string, object> { ["sub"] = s.ClientId!, ["jti"] = Guid.NewGuid().ToString("N") },
            SigningCredentials = _credentials.Value,
            TokenType = s.AssertionType,
        });
        using var form = new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["grant_type"] = "client_credentials",
            ["scope"] = s.Scope,
            ["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ["client_assertion"] = assertion,
        });
        using var resp = await http.CreateClient(HttpClientName).PostAsync(s.TokenUrl, form, ct);
        if (!resp.IsSuccessStatusCode)
            throw new WorkFailure("token-endpoint-" + (int)resp.StatusCode, retryable: (int)resp.StatusCode is 408 or 429 or >= 500 or 400 or 401);
        using var body = JsonDocument.Parse(await resp.Content.ReadAsStreamAsync(ct));
        if (!body.RootElement.TryGetProperty("access_token", out var token) || token.GetString() is not { Length: > 0 } accessToken)
            throw new WorkFailure("token-endpoint-no-token", retryable: true);
        int lifetime = body.RootElement.TryGetProperty("expires_in", out var e) && e.TryGetInt32(out int sec) ? sec : 300;
        // Renewed 30 s before expiry (or at half its life when it is short), so no request carries an expiring token.
        return (accessToken, now.AddSeconds(Math.Max(lifetime / 2.0, lifetime - 30)));
    }

    /// <summary>Whether the key file reads as a private key for the configured algorithm (checked at start-up).</summary>
    public static bool CanLoad(SmartBackendOptions s)
    {
        try
        {
            LoadCredentials(s);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or CryptographicException or ArgumentException)
        {
            return false;
        }
    }

    private static SigningCredentials LoadCredentials(SmartBackendOptions s)
    {
        string pem = File.ReadAllText(s.PrivateKeyFile!);
        SecurityKey key;
        if (s.Algorithm == SecurityAlgorithms.EcdsaSha384)
        {
            var ec = ECDsa.Create();
            ec.ImportFromPem(pem);
            key = new ECDsaSecurityKey(ec) { KeyId = s.KeyId };
        }
        else
        {
            var rsa = RSA.Create();
            rsa.ImportFromPem(pem);
            key = new RsaSecurityKey(rsa) { KeyId = s.KeyId };
        }
        return new SigningCredentials(key, s.Algorithm);
    }

    public void Dispose() => _gate.Dispose();
}
