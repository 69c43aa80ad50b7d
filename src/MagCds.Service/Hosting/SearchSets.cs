using Hl7.Fhir.Model;
using Microsoft.AspNetCore.WebUtilities;

namespace MagCds.Service.Hosting;

/// <summary>What a FHIR server says about a search it answered (both the CDS Hooks door and the worker read searches).</summary>
public static class SearchSets
{
    /// <summary>
    /// Whether the server sorted the results as MagCds asked (<paramref name="firstKey"/>, by default <c>-date</c>:
    /// newest first): R4 lets a server skip a search parameter it does not support, and its self link lists the
    /// parameters it did apply. Only that first sort key counts; any other order (ascending instead of descending, by
    /// another element) leaves the results MagCds looks for on any page.
    /// </summary>
    public static bool SaysSorted(Bundle? page, string firstKey = "-date")
    {
        bool descending = firstKey.StartsWith('-');
        string element = descending ? firstKey[1..] : firstKey;
        if (page?.SelfLink?.OriginalString is not { } self || self.IndexOf('?') is not (>= 0 and var q)) return false;
        foreach (var (name, values) in QueryHelpers.ParseQuery(self[q..]))
        {
            foreach (var value in values)
            {
                string first = (value ?? "").Split(',')[0].Trim();
                // "_sort=-date" (R4), or the DSTU2 forms "_sort:desc=date" / "_sort:asc=date" that some servers still echo.
                if ((name == "_sort" && first == firstKey) || (name == (descending ? "_sort:desc" : "_sort:asc") && first == element)) return true;
            }
        }
        return false;
    }

    /// <summary>
    /// Whether there is a page after <paramref name="page"/> that has not been read: not when there is no next link,
    /// nor when its next link is one already followed (a server that links a page to itself or back would otherwise be
    /// read for ever). <paramref name="followed"/> keeps the links of one walk through the pages.
    /// </summary>
    public static bool HasUnreadNext(Bundle page, HashSet<string> followed) =>
        page.NextLink is { } next && followed.Add(next.OriginalString);
}
