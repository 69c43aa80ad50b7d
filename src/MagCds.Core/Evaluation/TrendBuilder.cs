using Hl7.Fhir.Model;

namespace MagCds.Core.Evaluation;

/// <summary>
/// Monitoring: the earlier results of the same patient with the same assay (same code, unit, method and reference
/// range; values of different assays, and values without a unit, are never compared), oldest first, with the percent
/// change from the previous and the first (not for titres, whose steps are dilutions).
/// </summary>
internal static class TrendBuilder
{
    /// <summary>
    /// Earlier results listed at most: the first (the change from it is reported) and the most recent. As many as the
    /// other doors read (the worker's HistoryCount, the CDS Hooks prefetch), so that every output stays bounded
    /// however many results of one patient a request holds: each output lists the trend, so listing them all would
    /// make the answer grow with the square of their number.
    /// </summary>
    public const int MaxListed = 20;

    /// <param name="classify">The category of an earlier result by the same rules as the current one.</param>
    /// <param name="pool">Each patient's anti-MAG results in the request, current one included.</param>
    /// <param name="notCompared">How many of the patient's results dated before this one are of another assay (code,
    /// unit, method or reference range, or no unit), so not compared with it. A qualitative result is never trended.</param>
    public static Trend? Build(Prepared current, Category currentCategory, TrendPool pool, Func<Prepared, Category> classify, out int notCompared)
    {
        notCompared = 0;
        if (current.Patient is null || current.When is not DateTimeOffset now || current.Value?.Number is null
            || pool.SeriesOf(current.Patient) is not { } series) return null;

        var assay = AssayKey.Of(current);
        // The series is oldest first, so the earlier results are a prefix of it.
        var earlier = new List<Prepared>();
        foreach (var (p, key) in series)
        {
            if (p.When >= now) break;
            if (p.Keys.Observation == current.Keys.Observation) continue;
            if (assay.SameAs(key)) earlier.Add(p);
            else notCompared++;
        }
        if (earlier.Count == 0) return null;

        var listed = earlier.Count <= MaxListed ? earlier : [earlier[0], .. earlier[^(MaxListed - 1)..]];
        var points = listed.Select(p => Point(p, false, classify(p))).Append(Point(current, true, currentCategory)).ToList();
        var prev = earlier[^1].Value!;
        var first = earlier[0].Value!;
        var cur = current.Value;
        // A titre is a dilution: 1:1600 to 1:800 is one two-fold step, and a percentage would claim a precision that
        // serial dilution does not have.
        bool titre = cur.IsTitre;
        string? notComputed = titre ? "Titres are serial dilutions, so percent changes between them are not computed."
            : earlier.Any(p => p.Value!.Comparator is not null) || cur.Comparator is not null
                ? "Percent changes are not computed against censored values (reported with <, <=, > or >=)." : null;
        string? preliminary = earlier.Any(IsPreliminary) || IsPreliminary(current)
            ? "Preliminary results are marked: a change measured against one may not hold for the final result." : null;
        return new Trend(points, titre ? null : Percent(prev, cur), titre ? null : Percent(first, cur),
            notComputed is null ? preliminary : preliminary is null ? notComputed : notComputed + " " + preliminary, earlier.Count - listed.Count,
            Basis(listed, points, earlier.Count - listed.Count));
    }

    /// <summary>
    /// What the trend shows of each earlier result (identity, date, value, reference, category) and how many are not
    /// listed: a new version of an earlier result that shows the same (a note added, a resend) leaves the later
    /// results' output ids, and so their outputs and alerts, as they are; one whose value or status shows otherwise
    /// changes them. The percent changes follow from the listed values.
    /// </summary>
    private static string Basis(List<Prepared> listed, List<TrendPoint> points, int omitted)
    {
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < listed.Count; i++)
        {
            var t = points[i];
            sb.Append(listed[i].Keys.Observation).Append('|').Append(t.Date).Append('|').Append(t.Display).Append('|')
              .Append(t.Reference).Append('|').Append(t.Category).Append(';');
        }
        return sb.Append("omitted ").Append(omitted).ToString();
    }

    private static bool IsPreliminary(Prepared p) => p.Input.Observation.Status == ObservationStatus.Preliminary;

    private static TrendPoint Point(Prepared p, bool isCurrent, Category category) =>
        new(DateText(p.Input.Observation, p.When), IsPreliminary(p) ? p.Value!.Display + " (preliminary)" : p.Value!.Display, p.Value.Number, p.Input.Reference, isCurrent, category);

    private static decimal? Percent(ReadValue from, ReadValue to)
    {
        if (from.Comparator is not null || to.Comparator is not null || from.Number is not > 0 || to.Number is not decimal t) return null;
        try
        {
            return Math.Round((t - from.Number.Value) / from.Number.Value * 100m, 1, MidpointRounding.AwayFromZero);
        }
        catch (OverflowException)
        {
            // Values far apart (1e27 after 1e-27) exceed decimal's range; such a change is not computed, never a crash.
            return null;
        }
    }

    /// <summary>When the result applies: effective time, else issued.</summary>
    public static DateTimeOffset? When(Observation obs)
    {
        string? text;
        switch (obs.Effective)
        {
            case Instant { Value: DateTimeOffset instant }: return instant;
            case FhirDateTime dt: text = dt.Value; break;
            case Period p: text = p.Start; break;
            default: return obs.IssuedElement?.Value;
        }
        if (text is null) return obs.IssuedElement?.Value;
        // A full date-time (the usual case) parses directly; partial dates ("2025-05", "2025-05-01") are common in
        // lab feeds and count from their start, in UTC.
        if (text.Length > 10 && DateTimeOffset.TryParse(text, System.Globalization.CultureInfo.InvariantCulture,
                System.Globalization.DateTimeStyles.AssumeUniversal, out var full)) return full;
        return Hl7.Fhir.ElementModel.Types.DateTime.TryParse(text, out var parsed) ? parsed.ToDateTimeOffset(TimeSpan.Zero) : null;
    }

    /// <summary>Whether <see cref="When"/> took the report time (issued): the result gives no usable effective time.</summary>
    public static bool DatedByReport(Observation obs) => obs.IssuedElement?.Value is not null && obs.Effective switch
    {
        Instant { Value: not null } => false,
        FhirDateTime { Value: not null } => false,
        Period { Start: not null } => false,
        _ => true,
    };

    /// <summary>The date a result is shown with: a partial date ("2026", "2026-05") as given, not as the day it counts from.</summary>
    public static string DateText(Observation obs, DateTimeOffset? when)
    {
        string? given = obs.Effective switch { FhirDateTime dt => dt.Value, Period p => p.Start, _ => null };
        if (when is null) return "date unknown";
        if (given is { Length: < 10 }) return given;
        // DateOnly's round-trip format is yyyy-MM-dd without parsing a custom pattern (this runs for every output).
        return DateOnly.FromDateTime(when.Value.DateTime).ToString("O", System.Globalization.CultureInfo.InvariantCulture);
    }
}

/// <summary>
/// Each patient's usable anti-MAG results in a request (Evaluator.Start adds them: the newest version of each, not
/// withdrawn), put in order once for every trend that lists them. Sorting them again for each result made a request
/// of thousands of one patient's results take time growing with the square of their number (minutes at 5,000).
/// </summary>
internal sealed class TrendPool
{
    private static readonly HashSet<ObservationStatus?> Usable =
        [ObservationStatus.Final, ObservationStatus.Amended, ObservationStatus.Corrected, ObservationStatus.Preliminary];

    private readonly Dictionary<string, List<Prepared>> _results = new(StringComparer.Ordinal);
    private Dictionary<string, List<(Prepared Result, AssayKey Assay)>>? _series;

    public void Add(Prepared p)
    {
        if (_results.TryGetValue(p.Patient!, out var results)) results.Add(p);
        else _results[p.Patient!] = [p];
    }

    /// <summary>
    /// The results a trend of <paramref name="patient"/> may list, oldest first (results of the same time by identity,
    /// not by where they sat in the request), each with its assay; null when the patient has fewer than two results.
    /// The same result sent again under another version key (a copy without meta.versionId) counts once: its newest.
    /// </summary>
    public List<(Prepared Result, AssayKey Assay)>? SeriesOf(string patient)
    {
        if (!_results.TryGetValue(patient, out var results) || results.Count < 2) return null;
        _series ??= new(StringComparer.Ordinal);
        if (_series.TryGetValue(patient, out var series)) return series;

        var newest = new Dictionary<string, Prepared>(results.Count, StringComparer.Ordinal);
        foreach (var p in results)
            if (!newest.TryGetValue(p.Keys.Observation, out var seen) || Versions.Wins(p, seen)) newest[p.Keys.Observation] = p;
        series = newest.Values
            .Where(p => p.When is not null && p.Value?.Number is not null && Usable.Contains(p.Input.Observation.Status))
            .OrderBy(p => p.When).ThenBy(p => p.Keys.Observation, StringComparer.Ordinal)
            .Select(p => (p, AssayKey.Of(p)))
            .ToList();
        return _series[patient] = series;
    }
}

/// <summary>
/// What tells a result's assay, read once per result: its unit (normalised), its method and first reference range,
/// and its codes. Values are compared only between results of one assay.
/// </summary>
internal sealed record AssayKey(bool HasUnit, string Unit, string Method, string Range, IReadOnlyList<Coding> Codes)
{
    public static AssayKey Of(Prepared p)
    {
        var v = p.Value!;
        var o = p.Input.Observation;
        return new(v.HasUnit, $"{Norm(v.UnitText)}|{Norm(v.UnitCode)}|{Norm(v.UnitSystem)}", Norm(MethodKey(o)), RangeKey(o), o.Code.Coding);
    }

    public bool SameAs(AssayKey other) =>
        // Two results without a unit may come from any two assays (8 on one scale, 12,000 on another): never trended.
        HasUnit && other.HasUnit
        // A unit names no assay by itself ("U", "TU", "index" and every titre's "titre" are used by several): results
        // whose laboratories name different methods, or send different reference ranges, come from different assays
        // (or an assay re-standardised), and their values are not comparable. Both unnamed counts as the same.
        && Unit == other.Unit && Method == other.Method && Range == other.Range
        && Codes.Any(ca => other.Codes.Any(cb => ca.System == cb.System && ca.Code == cb.Code));

    private static string Norm(string? s) => s?.Trim().ToLowerInvariant() ?? "";

    /// <summary>The limits of the first reference range, by value (1000 and 1000.0 are one limit) and unit; "" for none.</summary>
    private static string RangeKey(Observation o)
    {
        if (o.ReferenceRange.Count == 0) return "";
        var r = o.ReferenceRange[0];
        static string Limit(Quantity? q) => q?.Value is not decimal v ? ""
            : $"{v.ToString("G29", System.Globalization.CultureInfo.InvariantCulture)}|{q.Unit?.Trim().ToLowerInvariant()}|{q.Code?.Trim().ToLowerInvariant()}";
        return Limit(r.Low) + "/" + Limit(r.High);
    }

    private static string? MethodKey(Observation o) => o.Method is null ? null
        : o.Method.Coding.FirstOrDefault(c => c.Code is not null) is { } c ? c.System + "|" + c.Code : o.Method.Text;
}
