using Hl7.Fhir.Model;
using Microsoft.AspNetCore.WebUtilities;

namespace MagCds.Service.Hosting;

/// <summary>What a FHIR server says about a search it answered (both the CDS Hooks door and the worker read searches).</summary>
public static class SearchSets
{
    /// <summary>
    /// Whether the server sorted the results newest first, as MagCds asks (<c>_sort=-date</c>): R4 lets a server skip
    /// a search parameter it does not support, and its self link lists the parameters it did apply. Only a first sort
    /// key of descending date counts; any other order (ascending, by another element) leaves the newest results on any
    /// page.
    /// </summary>
    public static bool SaysSorted(Bundle? page)
    {
        if (page?.SelfLink?.OriginalString is not { } self || self.IndexOf('?') is not (>= 0 and var q)) return false;
        foreach (var (name, values) in QueryHelpers.ParseQuery(self[q..]))
        {
            foreach (var value in values)
            {
                string first = (value ?? "").Split(',')[0].Trim();
                // "_sort=-date" (R4), or the DSTU2 form "_sort:desc=date" that some servers still echo.
                if ((name == "_sort" && first == "-date") || (name == "_sort:desc" && first == "date")) return true;
            }
        }
        return false;
    }
}
