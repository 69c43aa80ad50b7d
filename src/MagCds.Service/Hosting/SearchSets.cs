using Hl7.Fhir.Model;

namespace MagCds.Service.Hosting;

/// <summary>What a FHIR server says about a search it answered (both the CDS Hooks door and the worker read searches).</summary>
public static class SearchSets
{
    /// <summary>
    /// Whether the server applied <c>_sort</c>: R4 lets a server skip a search parameter it does not support, and its
    /// self link lists the parameters it did apply. Without it, the newest results may be on any page.
    /// </summary>
    public static bool SaysSorted(Bundle? page) => page?.SelfLink?.OriginalString.Contains("_sort=", StringComparison.Ordinal) == true;
}
