using MagCds.Core.Outputs;
using Hl7.Fhir.Model;
using MagCds.Core.Knowledge;

namespace MagCds.Core.Evaluation;

/// <summary>
/// Decides the category of one result. Order of precedence for the interval (patient safety, product.md):
/// the Observation's own referenceRange, then the lab's own interpretation flag, then a configured assay
/// profile matched on unit/code/method/performer, else "cannot interpret" with the reason. Values of one assay
/// are never judged against another assay's interval.
/// </summary>
public sealed class Interpreter(KnowledgeBase knowledge)
{
    private const string V3Interpretation = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
    private static readonly HashSet<string> RaisedFlags = ["H", "HH", "HU", "A", "AA", "POS", "DET"];
    private static readonly HashSet<string> NotRaisedFlags = ["N", "NEG", "ND", "L", "LL", "LU"];

    public Interpretation Interpret(Observation obs, ReadValue value)
    {
        bool preliminary = obs.Status == ObservationStatus.Preliminary;
        bool? labFlag = LabFlag(obs);
        var profile = MatchProfile(obs, value);
        var i = value switch
        {
            { Positive: bool pos } => Qualitative(pos),
            { Number: decimal n } => Numeric(obs, value, n, labFlag, profile),
            _ when labFlag is bool flag => FromLabFlag(flag, obs),
            _ => Cannot(obs.Value is Ratio ? CannotInterpretReason.UnreadableRatio : CannotInterpretReason.UnreadableQualitative,
                $"The value '{value.Display}' is not a number, a 1:n titre or a recognised qualitative result, and the laboratory gave no interpretation flag."),
        };

        // A lab flag that contradicts our reading of the lab's own range is not resolved by guessing.
        if (labFlag is bool f && i.Category != Category.CannotInterpret && i.Basis?.Origin != IntervalOrigin.ObservationInterpretation
            && f != (i.Category == Category.Elevated))
        {
            i = Cannot(CannotInterpretReason.InterpretationConflict,
                $"The laboratory flagged the result as {(f ? "raised" : "not raised")}, but the value {value.Display} read against {i.Basis?.Display ?? "its interval"} says {(f ? "not raised" : "raised")}.");
        }

        string? unitReading = i.Basis?.Profile?.UnitReading;
        IReadOnlyList<string> notes = value.ReadingNote is { } reading
            ? unitReading is null ? [reading] : [reading, unitReading]
            : unitReading is null ? [] : [unitReading];

        return i with { Value = value, Preliminary = preliminary, Notes = notes, Stratum = i.Category == Category.Elevated ? StratumFor(profile, value) : null };

        Interpretation Cannot(CannotInterpretReason reason, string why) => new()
        {
            Category = Category.CannotInterpret, Value = value, Reason = reason, RuleId = Vocabulary.Rules.CannotInterpret.Code,
            Rule = why + " MagCds does not guess: the result needs review against the performing laboratory's own reference interval.",
        };

        Interpretation Qualitative(bool pos) => new()
        {
            Category = pos ? Category.Elevated : Category.NotElevated, Value = value, RuleId = Vocabulary.Rules.Qualitative.Code,
            Basis = new IntervalBasis(IntervalOrigin.QualitativeResult, null, null, true, "qualitative result",
                "the qualitative result reported by the laboratory", null),
            Rule = "The laboratory reported a qualitative result: positive or detected is reported as raised, negative or not detected as not raised.",
        };

        Interpretation FromLabFlag(bool raised, Observation o) => new()
        {
            Category = raised ? Category.Elevated : Category.NotElevated, Value = value, RuleId = Vocabulary.Rules.ObservationInterpretation.Code,
            Basis = new IntervalBasis(IntervalOrigin.ObservationInterpretation, null, null, true,
                $"laboratory flag {string.Join(", ", FlagCodes(o))}", "the interpretation flag set by the performing laboratory", null),
            Rule = "The Observation has no usable reference range, so the performing laboratory's own interpretation flag is used: a high, abnormal, positive or detected flag is reported as raised; normal, negative or not detected as not raised.",
        };

        Interpretation Numeric(Observation o, ReadValue v, decimal n, bool? flag, AssayProfile? matched)
        {
            if (n < 0)
                return Cannot(CannotInterpretReason.NegativeValue, $"The value {v.Display} is negative; MagCds does not interpret a negative result.");
            if (n > knowledge.ImplausibleAbove)
                return Cannot(CannotInterpretReason.ImplausibleValue,
                    $"The value {v.Display} is larger than any assay reports (data-quality limit {ValueReader.Format(knowledge.ImplausibleAbove)}); it is read as a unit or transcription error.");

            IntervalBasis? basis = null;
            string rule;
            string ruleId;
            var range = o.ReferenceRange.FirstOrDefault(r => r.High?.Value is not null && r.AppliesTo.Count == 0 && r.Age is null);
            if (range?.High is { Value: decimal high } rangeHigh)
            {
                if (!UnitsAgree(v, rangeHigh))
                    return Cannot(CannotInterpretReason.UnitMismatch,
                        $"The value is in '{v.UnitText ?? v.UnitCode}' but the Observation's reference range is in '{rangeHigh.Unit ?? rangeHigh.Code}'; MagCds does not convert between units.");
                decimal? low = range.Low?.Value;
                string unit = rangeHigh.Unit ?? rangeHigh.Code ?? v.UnitText ?? "";
                // FHIR's range includes its high value, but a lab that writes the range as "<1500 BTU" with high 1500
                // (or "<1:10" with high 10) says the limit itself is outside it: then a result at the limit is raised,
                // as the lab's text says. "<1000 BTU" with high 999 agrees with FHIR's reading and changes nothing.
                bool inclusive = !ExcludesHigh(range.Text, high);
                string limit = $"{ValueReader.Format(high)} {unit}".TrimEnd();
                basis = new IntervalBasis(IntervalOrigin.ObservationReferenceRange, low, high, inclusive,
                    inclusive ? (low is { } l ? $"{ValueReader.Format(l)}-" : "up to ") + limit
                              : (low is { } l2 ? $"{ValueReader.Format(l2)} to " : "") + "below " + limit,
                    "the reference range the performing laboratory sent with the Observation", null);
                ruleId = Vocabulary.Rules.ObservationReferenceRange.Code;
                rule = $"The value is compared with the upper limit of the laboratory's own reference range ({limit}): "
                       + (inclusive
                           ? "above it is reported as raised, at or below it as not raised."
                           : $"the laboratory writes the range as '{range.Text!.Trim()}', so at or above the limit is reported as raised, below it as not raised.");
                if (!v.HasUnit) rule += " The value carries no unit; the range sent with it in the same Observation is taken to be in the same unit.";
            }
            else if (flag is bool raisedFlag)
            {
                return FromLabFlag(raisedFlag, o);
            }
            else if (o.ReferenceRange.Count > 0)
            {
                // The lab sent a range MagCds cannot use (text only, no upper limit, or for a particular age or
                // population). Its own interval may differ from any assay profile's, so no profile stands in for it.
                return Cannot(CannotInterpretReason.UnusableRange,
                    "The Observation carries a reference range MagCds cannot use (no upper limit as a number, or a range for a particular age or population), and no interpretation flag. " +
                    "An assay profile's interval is not used in place of the laboratory's own.");
            }
            else if (matched is not null)
            {
                basis = ProfileBasis(matched);
                ruleId = matched.Id;
                rule = matched.Rule;
            }
            else
            {
                return Cannot(CannotInterpretReason.NoInterval,
                    v.HasUnit
                        ? $"The unit '{v.UnitText ?? v.UnitCode}' belongs to no assay MagCds knows, and the Observation carries no reference range or interpretation flag."
                        : "The value carries no unit, and the Observation carries no reference range or interpretation flag.");
            }

            return Classify(v, basis) switch
            {
                bool raised => new Interpretation
                {
                    Category = raised ? Category.Elevated : Category.NotElevated, Value = v, Basis = basis, Rule = rule, RuleId = ruleId,
                },
                null => Cannot(CannotInterpretReason.CensoredAcrossLimit,
                    $"The reported value {v.Display} is censored: the true value may lie on either side of the limit of {basis.Display}."),
            };
        }
    }

    /// <summary>
    /// True when the range's text states a strict upper limit at the range's own high value: "&lt;1500 BTU" or
    /// "&lt; 1,500" with high 1500, "&lt;1:10" with high 10. Not "&lt;=", and not a text whose number differs.
    /// </summary>
    private static bool ExcludesHigh(string? text, decimal high)
    {
        if (text?.TrimStart() is not ['<', .. var rest] || rest.StartsWith('=')) return false;
        rest = rest.TrimStart();
        if (rest.StartsWith("1:", StringComparison.Ordinal)) rest = rest[2..].TrimStart();
        int n = 0;
        while (n < rest.Length && (char.IsAsciiDigit(rest[n]) || rest[n] is '.' or ',')) n++;
        return decimal.TryParse(rest.AsSpan(0, n).ToString().Replace(",", ""), System.Globalization.NumberStyles.AllowDecimalPoint,
                   System.Globalization.CultureInfo.InvariantCulture, out var limit)
               && limit == high;
    }

    /// <summary>The interval of an assay profile, as shown in outputs; the same for every result, so built once.</summary>
    private IntervalBasis ProfileBasis(AssayProfile p) => _profileBases.GetOrAdd(p, profile =>
    {
        var ri = profile.ReferenceInterval;
        return new IntervalBasis(IntervalOrigin.AssayProfile, ri.Low, ri.High, ri.HighInclusive,
            ri.Low is { } l ? $"{ValueReader.Format(l)}-{ValueReader.Format(ri.High)} {ri.Unit}" : $"below {ValueReader.Format(ri.High)} {ri.Unit}",
            $"the MagCds assay profile '{profile.Name}' (knowledge {knowledge.Version}), source: {knowledge.Citation(ri.Citation).Label}", profile);
    });

    private readonly System.Collections.Concurrent.ConcurrentDictionary<AssayProfile, IntervalBasis> _profileBases = new(ReferenceEqualityComparer.Instance);

    /// <summary>True raised, false not raised, null when a censored value (&lt;, &gt;) straddles the limit.</summary>
    public static bool? Classify(ReadValue v, IntervalBasis basis)
    {
        decimal x = v.Number!.Value, h = basis.High!.Value;
        bool incl = basis.HighInclusive;
        bool RaisedAt(decimal y) => incl ? y > h : y >= h;
        return v.Comparator switch
        {
            null => RaisedAt(x),
            Quantity.QuantityComparator.LessThan => x <= h ? false : null,
            Quantity.QuantityComparator.LessOrEqual => (incl ? x <= h : x < h) ? false : null,
            Quantity.QuantityComparator.GreaterThan => x >= h ? true : null,
            Quantity.QuantityComparator.GreaterOrEqual => RaisedAt(x) ? true : null,
            _ => null,
        };
    }

    /// <summary>The Svahn-style group of a raised value; null when the profile has none or a censored value spans groups.</summary>
    private static Stratum? StratumFor(AssayProfile? profile, ReadValue v)
    {
        if (profile is null || v.Number is not decimal x) return null;
        foreach (var s in profile.Strata)
        {
            bool inside = x >= s.Low && (s.High is null || x < s.High);
            if (!inside) continue;
            return v.Comparator switch
            {
                null => s,
                // ">x" or ">=x" lies in this group only when the group is open-ended.
                Quantity.QuantityComparator.GreaterThan or Quantity.QuantityComparator.GreaterOrEqual => s.High is null ? s : null,
                // "<x" (or "<=x") lies in this group only when nothing below its start is possible, which a raised value excludes only at the start.
                _ => null,
            };
        }
        return null;
    }

    public AssayProfile? MatchProfile(Observation obs, ReadValue v)
    {
        foreach (var p in knowledge.AssayProfiles)
        {
            var m = p.Match;
            if (!AnyUnitMatches(m.Units, v)) continue;
            if (m.Codes.Count > 0 && !obs.Code.Coding.Any(c => m.Codes.Contains($"{c.System}|{c.Code}"))) continue;
            if (m.Methods.Count > 0 && !ContainsAny(MethodWords(obs), m.Methods)) continue;
            if (m.Performers.Count > 0 && !ContainsAny(obs.Performer.SelectMany(r => new[] { r.Display, r.Identifier?.Value }), m.Performers)) continue;
            return p;
        }
        return null;
    }

    private static bool AnyUnitMatches(IReadOnlyList<UnitPattern> patterns, ReadValue v)
    {
        foreach (var p in patterns) if (UnitMatches(p, v)) return true;
        return false;
    }

    private static bool UnitMatches(UnitPattern p, ReadValue v) =>
        (p.Unit is null || string.Equals(p.Unit, v.UnitText?.Trim(), StringComparison.OrdinalIgnoreCase))
        && (p.System is null || p.System == v.UnitSystem)
        && (p.Code is null || p.Code == v.UnitCode);

    /// <summary>A range without a unit shares the value's; a unit-less value takes the range sent with it; otherwise the units must be the same.</summary>
    private static bool UnitsAgree(ReadValue v, Quantity rangeLimit)
    {
        bool rangeHasUnit = !string.IsNullOrWhiteSpace(rangeLimit.Unit) || !string.IsNullOrWhiteSpace(rangeLimit.Code);
        if (!rangeHasUnit || !v.HasUnit) return true;
        if (v.UnitText == "titre")
            return $"{rangeLimit.Unit} {rangeLimit.Code}".Contains("tit", StringComparison.OrdinalIgnoreCase);
        if (v.UnitCode is not null && rangeLimit.Code is not null)
            return v.UnitCode == rangeLimit.Code && (v.UnitSystem ?? "") == (rangeLimit.System ?? "");
        return string.Equals((v.UnitText ?? v.UnitCode)?.Trim(), (rangeLimit.Unit ?? rangeLimit.Code)?.Trim(), StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The v3 interpretation codes the laboratory set, in order.</summary>
    private static List<string> FlagCodes(Observation obs)
    {
        // Loops, not LINQ: every evaluation asks for the lab's flag, and most results carry none.
        var codes = new List<string>(0);
        foreach (var i in obs.Interpretation)
            foreach (var c in i.Coding)
                if (c.System == V3Interpretation && c.Code is { } code) codes.Add(code);
        return codes;
    }

    /// <summary>The lab's own verdict from Observation.interpretation: true raised, false not raised, null none or contradictory.</summary>
    private static bool? LabFlag(Observation obs)
    {
        if (obs.Interpretation.Count == 0) return null;
        bool raised = false, notRaised = false;
        foreach (var code in FlagCodes(obs))
        {
            raised |= RaisedFlags.Contains(code);
            notRaised |= NotRaisedFlags.Contains(code);
        }
        return raised == notRaised ? null : raised;
    }

    private static IEnumerable<string?> MethodWords(Observation obs) =>
        obs.Method is null ? [] : obs.Method.Coding.SelectMany(c => new[] { c.Display, c.Code }).Append(obs.Method.Text);

    private static bool ContainsAny(IEnumerable<string?> haystack, IReadOnlyList<string> words) =>
        haystack.Any(h => h is not null && words.Any(w => h.Contains(w, StringComparison.OrdinalIgnoreCase)));
}
