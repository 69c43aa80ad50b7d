namespace MagCds.Service.Security;

/// <summary>Where a credential for a FHIR server may go: that server only, never to a host one of its links names.</summary>
public static class OutboundLinks
{
    /// <summary>
    /// True when <paramref name="link"/> is on the same scheme, host and port as the server, under its base path. A
    /// path with an encoded slash or backslash is not: a server or proxy that decodes it after this check could take
    /// "/fhir/..%2F..%2Fsecret" out of the base path (.NET's Uri keeps those escaped, so its dot-segment removal cannot).
    /// </summary>
    public static bool IsUnderServer(Uri link, Uri server)
    {
        if (!link.IsAbsoluteUri) return true; // relative to the server
        string basePath = server.AbsolutePath.TrimEnd('/') + "/";
        return link.Scheme == server.Scheme && string.Equals(link.Host, server.Host, StringComparison.OrdinalIgnoreCase) && link.Port == server.Port
               && (link.AbsolutePath + "/").StartsWith(basePath, StringComparison.Ordinal)
               && !link.AbsolutePath.Contains("%2F", StringComparison.OrdinalIgnoreCase)
               && !link.AbsolutePath.Contains("%5C", StringComparison.OrdinalIgnoreCase);
    }
}
