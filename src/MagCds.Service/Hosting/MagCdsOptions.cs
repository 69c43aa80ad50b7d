namespace MagCds.Service.Hosting;

/// <summary>Options of the evaluation core (section MagCds).</summary>
public sealed class MagCdsOptions
{
    public const string Section = "MagCds";

    /// <summary>Path of a knowledge file to use instead of the embedded one (keep its version in step with its content).</summary>
    public string? KnowledgeFile { get; set; }

    /// <summary>Local lab codes recognised as anti-MAG IgM in addition to LOINC 39087-2, as "system|code".</summary>
    public List<string> AdditionalCodes { get; set; } = [];

    /// <summary>
    /// Canonical base of everything MagCds mints: code systems, identifier systems, profiles and the served package.
    /// Choose it once: the worker finds its earlier outputs in the EHR by identifiers under this base.
    /// </summary>
    public string CanonicalBase { get; set; } = MagCds.Core.CanonicalUrls.DefaultBase;
}
