using System.Security.Claims;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Certificate;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;

namespace MagCds.Service.Security;

/// <summary>
/// Client certificates (mTLS): Kestrel requests a certificate on its HTTPS endpoints, ASP.NET's certificate handler
/// checks it (chain to the configured CA only, validity period, client-authentication use, revocation), and its
/// subject must be one of the configured clients. The identity then works like an API key's: a name and a role.
/// </summary>
public static class ClientCertificateAuthentication
{
    public const string SchemeName = CertificateAuthenticationDefaults.AuthenticationScheme;

    /// <summary>Whether each configured client is complete and the CA file holds at least one certificate.</summary>
    public static bool IsValid(ClientCertificateOptions o)
    {
        if (!o.IsConfigured) return true;
        var subjects = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        if (o.Clients.Any(c => string.IsNullOrWhiteSpace(c.Name) || !TryNormalise(c.Subject, out string s) || !subjects.Add(s))) return false;
        try { return LoadCa(o.CaFile).Count > 0; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException) { return false; }
    }

    public static void Add(AuthenticationBuilder auth, IServiceCollection services, ClientCertificateOptions o)
    {
        if (!o.IsConfigured) return;
        // The TLS handshake already refuses a certificate that does not chain to the configured CA (not the machine's
        // store), is out of its validity period or is not for client authentication, building the chain without
        // fetching anything: a stranger's certificate can name any URL as its issuer's location or revocation list,
        // and MagCds must not go there for it. The handler below then checks revocation and the subject (and the rest
        // once more), for certificates of the CA only. A connection without a certificate is still accepted (it can
        // use a key or a token). The CA file is read when the server starts, after the start-up validation.
        var ca = new Lazy<X509Certificate2Collection>(() => LoadCa(o.CaFile));
        services.Configure<KestrelServerOptions>(k => k.ConfigureHttpsDefaults(https =>
        {
            https.ClientCertificateMode = ClientCertificateMode.AllowCertificate;
            https.OnAuthenticate = (_, ssl) =>
            {
                var policy = new X509ChainPolicy
                {
                    TrustMode = X509ChainTrustMode.CustomRootTrust,
                    RevocationMode = X509RevocationMode.NoCheck,
                    DisableCertificateDownloads = true,
                };
                policy.CustomTrustStore.AddRange(ca.Value);
                policy.ExtraStore.AddRange(ca.Value);
                ssl.CertificateChainPolicy = policy;
            };
            https.ClientCertificateValidation = (_, _, errors) => errors == System.Net.Security.SslPolicyErrors.None;
        }));
        auth.AddCertificate(SchemeName, c =>
        {
            // Built when the handler is first used, after the start-up validation has vouched for the subjects.
            var bySubject = o.Clients.ToDictionary(x => Normalise(x.Subject), StringComparer.OrdinalIgnoreCase);
            c.AllowedCertificateTypes = CertificateTypes.Chained;
            c.ChainTrustValidationMode = X509ChainTrustMode.CustomRootTrust;
            c.CustomTrustStore = ca.Value;
            c.AdditionalChainCertificates = ca.Value; // intermediates given in the CA file
            c.RevocationMode = o.RevocationMode;
            c.ValidateCertificateUse = true;
            c.ValidateValidityPeriod = true;
            c.Events = new CertificateAuthenticationEvents
            {
                OnCertificateValidated = ctx =>
                {
                    if (!bySubject.TryGetValue(ctx.ClientCertificate.SubjectName.Format(false), out var client))
                    {
                        ctx.Fail("certificate subject is not a configured client");
                        return Task.CompletedTask;
                    }
                    var identity = new ClaimsIdentity(
                        [new Claim(ClaimTypes.Name, client.Name), new Claim(ApiKeyAuthentication.RoleClaim, client.Admin ? "admin" : "client")], SchemeName);
                    ctx.Principal = new ClaimsPrincipal(identity);
                    ctx.Success();
                    return Task.CompletedTask;
                },
            };
        });
    }

    private static X509Certificate2Collection LoadCa(string? path)
    {
        var ca = new X509Certificate2Collection();
        ca.ImportFromPemFile(path ?? throw new ArgumentException("no CA file"));
        return ca;
    }

    /// <summary>One spelling of a distinguished name, so the setting and the certificate compare equal however written.</summary>
    private static string Normalise(string subject) => new X500DistinguishedName(subject).Format(false);

    private static bool TryNormalise(string subject, out string normalised)
    {
        try { normalised = Normalise(subject); return subject.Length > 0; }
        catch (System.Security.Cryptography.CryptographicException) { normalised = ""; return false; }
    }
}
