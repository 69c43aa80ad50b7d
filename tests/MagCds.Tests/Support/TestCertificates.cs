using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MagCds.Tests.Support;

/// <summary>
/// A small PKI made for the mTLS tests with the framework's CertificateRequest: a hospital CA, the server's TLS
/// certificate, and client certificates (good, expired, from another CA, for server use only), each with its key.
/// </summary>
public sealed class TestCertificates : IDisposable
{
    public const string ServerPassword = "test-server-pfx";
    private readonly string _dir = Directory.CreateTempSubdirectory("magcds-pki-").FullName;

    public X509Certificate2 Ca { get; }
    public X509Certificate2 OtherCa { get; }
    public X509Certificate2 Server { get; }

    /// <summary>PEM file of <see cref="Ca"/>, for MagCds:Security:ClientCertificates:CaFile.</summary>
    public string CaFile { get; }

    /// <summary>PKCS#12 file of <see cref="Server"/> (password <see cref="ServerPassword"/>), for Kestrel.</summary>
    public string ServerPfx { get; }

    public TestCertificates()
    {
        Ca = MakeCa("CN=MagCds Test Hospital CA");
        OtherCa = MakeCa("CN=Somebody Else CA");
        Server = Issue(Ca, "CN=localhost", ServerAuth, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30), san: true);
        CaFile = Path.Combine(_dir, "ca.pem");
        File.WriteAllText(CaFile, Ca.ExportCertificatePem());
        ServerPfx = Path.Combine(_dir, "server.pfx");
        File.WriteAllBytes(ServerPfx, Server.Export(X509ContentType.Pfx, ServerPassword));
    }

    /// <summary>A client certificate with <paramref name="subject"/>, from <paramref name="issuer"/> (default the hospital CA).</summary>
    public X509Certificate2 Client(string subject, X509Certificate2? issuer = null, bool expired = false, bool serverUseOnly = false)
    {
        var now = DateTimeOffset.UtcNow;
        return expired
            ? Issue(issuer ?? Ca, subject, ClientAuth, now.AddDays(-30), now.AddDays(-1))
            : Issue(issuer ?? Ca, subject, serverUseOnly ? ServerAuth : ClientAuth, now.AddDays(-1), now.AddDays(30));
    }

    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");
    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");

    private static X509Certificate2 MakeCa(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        return req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-60), DateTimeOffset.UtcNow.AddYears(1));
    }

    private static X509Certificate2 Issue(X509Certificate2 ca, string subject, Oid use, DateTimeOffset from, DateTimeOffset until, bool san = false)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([use], false));
        if (san)
        {
            var names = new SubjectAlternativeNameBuilder();
            names.AddDnsName("localhost");
            names.AddIpAddress(System.Net.IPAddress.Loopback);
            req.CertificateExtensions.Add(names.Build());
        }
        byte[] serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7F;
        using var cert = req.Create(ca, from, until, serial);
        // Through PKCS#12 and back, so TLS on Linux can use the private key (an in-memory ephemeral key may not be).
        using var withKey = cert.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pfx, ""), "");
    }

    public void Dispose()
    {
        Ca.Dispose();
        OtherCa.Dispose();
        Server.Dispose();
        Directory.Delete(_dir, true);
    }
}
