using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Hl7.Fhir.Model;

namespace MagCds.Tests.Support;

/// <summary>
/// The PHI of the whole suite's test data (every test file, plus what test helpers make up, such as the worker's
/// patients and accession numbers) and a search of log lines for it. Every <see cref="MagCdsFactory"/> searches its
/// captured logs when it is disposed, so every scenario of the suite is a log-PHI test, not only the dedicated one.
/// </summary>
public static class PhiScan
{
    private static readonly ConcurrentDictionary<string, byte> Registered = new(StringComparer.Ordinal);
    private static readonly Lazy<IReadOnlyList<string>> FromFiles = new(() =>
        TestFiles.AllFiles().SelectMany(f => In(TestFiles.Resource(f))).Distinct(StringComparer.Ordinal).ToList());

    /// <summary>Every PHI value known so far: the test files' and those registered by helpers.</summary>
    public static IReadOnlyList<string> Values => [.. FromFiles.Value.Concat(Registered.Keys).Distinct(StringComparer.Ordinal)];

    /// <summary>Adds the PHI of a resource a test made up (its names, identifiers, references, dates and values).</summary>
    public static void Register(Resource r)
    {
        foreach (var v in In(r)) Registered.TryAdd(v, 0);
    }

    /// <summary>
    /// What is left out of the search: the service's measurements of its own work (time stamps, durations, status
    /// codes, attempt numbers and counts), whose numbers can equal a result value by chance ("LagMs":640 and a 640 BTU
    /// result). Search lines with the message template (CompactJsonFormatter) rather than the rendered message, so
    /// such numbers are properties here and not part of a message text. The formatter also writes "@r", the
    /// renderings of properties that have a format ("{LagMs:0}" gives "@r":["640"]); it is left out too, as every
    /// property it renders is in the line itself and searched there.
    /// </summary>
    private const string Operational = "\"(@t|@i|Elapsed\\w*|\\w*Ms|\\w*Seconds|StatusCode|Attempt|\\w*Count)\":(\"(\\\\.|[^\"\\\\])*\"|[^,}]*)"
                                       + "|\"@r\":\\[(\"(\\\\.|[^\"\\\\])*\",?)*\\]";

    /// <summary>Log lines that contain a PHI value, as "value in line" (at most <paramref name="max"/>).</summary>
    public static IReadOnlyList<string> Hits(IEnumerable<string> lines, int max = 10)
    {
        var phi = Values;
        return (from line in lines
                let scanned = Regex.Replace(line, Operational, "")
                from value in phi
                where Regex.IsMatch(scanned, $@"(?<![\w.-]){Regex.Escape(value)}(?![\w-])")
                select $"{value} in {line}").Take(max).ToList();
    }

    /// <summary>
    /// The sensitive strings of a resource: names, identifier values, ids of and references to patients and other
    /// non-Observation resources, dates of birth, and result values. Observation ids are not in it: MagCds logs them
    /// (resource ids are how an operator traces a result; the rule is no names, identifiers, values or tokens), nor are
    /// references to Subscriptions (the worker's channel, configuration rather than anyone's data).
    /// </summary>
    public static IEnumerable<string> In(Resource r)
    {
        foreach (var node in r.ToPocoNode().Descendants())
        {
            switch (node.Poco)
            {
                case HumanName n:
                    foreach (var s in n.Given.Append(n.Family)) if (s is { Length: > 2 }) yield return s;
                    break;
                case Identifier { Value.Length: > 2 } i:
                    yield return i.Value;
                    break;
                case ResourceReference { Reference: { } reference } when !reference.StartsWith("Observation/", StringComparison.Ordinal)
                                                                      && !reference.StartsWith("Subscription/", StringComparison.Ordinal)
                                                                      && reference.Split('/').Last() is { Length: > 2 } id:
                    yield return id;
                    break;
                case Observation o:
                    foreach (var v in ResultValues(o)) yield return v;
                    break;
                case Resource { Id.Length: > 2 } res:
                    yield return res.Id;
                    break;
                case Date d when d.Value is not null:
                    yield return d.Value;
                    break;
            }
        }
    }

    /// <summary>The result's numbers as text; "1" or "10" would match unrelated numbers, so only three characters and more.</summary>
    private static IEnumerable<string> ResultValues(Observation o)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        string? text = o.Value switch
        {
            Quantity { Value: decimal v } => v.ToString(inv),
            Integer { Value: int v } => v.ToString(inv),
            Ratio { Numerator.Value: decimal v } => v.ToString(inv),
            _ => null,
        };
        if (text is { Length: >= 3 }) yield return text;
    }
}
