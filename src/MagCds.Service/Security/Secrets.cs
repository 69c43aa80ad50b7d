using System.Security.Cryptography;
using System.Text;

namespace MagCds.Service.Security;

/// <summary>Comparing a presented secret (API key, notification secret) with a configured one.</summary>
public static class Secrets
{
    /// <summary>Constant-time on hashes, so the time taken says nothing about how much of a guess was right, nor its length.</summary>
    public static bool Same(string given, string expected) =>
        CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(given)), SHA256.HashData(Encoding.UTF8.GetBytes(expected)));
}
