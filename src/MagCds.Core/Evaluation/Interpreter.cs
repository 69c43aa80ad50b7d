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
    private const string V2Interpretation = "http://terminology.hl7.org/CodeSystem/v2-0078";
    private const string RangeMeaning = "http://terminology.hl7.org/CodeSystem/referencerange-meaning";
    // The abnormal flags of HL7 v3 (ObservationInterpretation) and v2 (table 0078), which share these codes.
    private static readonly HashSet<string> RaisedFlags = ["H", "HH", "HU", "A", "AA", "POS", "DET", "RR"];
    private static readonly HashSet<string> NotRaisedFlags = ["N", "NEG", "ND", "L", "LL", "LU", "NR"];
    private static readonly HashSet<string> EquivocalFlags = ["E", "IND", "IE", "WR"];
    // The same meanings in words, for a flag sent as text only or in a code system MagCds does not know.
    private static readonly Dictionary<string, FlagReading> FlagWords = new(StringComparer.OrdinalIgnoreCase)
    {
        ["high"] = FlagReading.Raised, ["abnormal"] = FlagReading.Raised, ["positive"] = FlagReading.Raised, ["detected"] = FlagReading.Raised,
        ["reactive"] = FlagReading.Raised,
        ["normal"] = FlagReading.NotRaised, ["low"] = FlagReading.NotRaised, ["negative"] = FlagReading.NotRaised,
        ["not detected"] = FlagReading.NotRaised, ["non-reactive"] = FlagReading.NotRaised, ["nonreactive"] = FlagReading.NotRaised,
        ["equivocal"] = FlagReading.Equivocal, ["indeterminate"] = FlagReading.Equivocal, ["borderline"] = FlagReading.Equivocal,
        ["inconclusive"] = FlagReading.Equivocal, ["weakly positive"] = FlagReading.Equivocal, ["weakly reactive"] = FlagReading.Equivocal,
    };

    private static readonly string[] EquivocalWords = ["borderline", "equivocal", "indeterminate", "grey zone", "gray zone"];

    public Interpretation Interpret(Observation obs, ReadValue value)
    {
        bool preliminary = obs.Status == ObservationStatus.Preliminary;
        var flags = ReadFlags(obs);
        bool? labFlag = flags.Reading switch { FlagReading.Raised => true, FlagReading.NotRaised => false, _ => null };
        var profile = MatchProfile(obs, value, out string? unitConflict);
        var i = (value, flags.Reading) switch
        {
            // FHIR obs-6: a reason for an absent value only when there is none. Both at once: the value may be a
            // placeholder the lab's system filled in ("error", "not performed"), so it is not read as a result.
            _ when obs.DataAbsentReason is not null => Cannot(CannotInterpretReason.ValueWithAbsentReason,
                $"The Observation carries a value ({value.Display}) and also a reason why its value is absent ({obs.DataAbsentReason.Coding.FirstOrDefault()?.Code ?? obs.DataAbsentReason.Text ?? "none given"}); FHIR allows the reason only without a value, and the value may be a placeholder."),
            // The laboratory's own verdict comes before any reading of ours; one MagCds cannot take as raised or not
            // raised is never replaced by an interval of ours.
            (_, FlagReading.Equivocal) => Cannot(CannotInterpretReason.EquivocalFlag,
                $"The laboratory flagged the result as equivocal or indeterminate ({flags.Shown})."),
            (_, FlagReading.Contradictory) => Cannot(CannotInterpretReason.InterpretationConflict,
                $"The laboratory's interpretation flags contradict each other ({flags.Shown})."),
            ({ Contradictory: true }, _) => Cannot(CannotInterpretReason.UnreadableQualitative,
                $"The value's codes and words say both positive and negative ({value.Display})."),
            // The lab's qualitative result is its verdict: a flag beside it that MagCds cannot read may say otherwise.
            ({ Positive: bool }, _) when flags.Unread is { } unreadFlag => Cannot(CannotInterpretReason.UnreadableFlag,
                $"The laboratory's interpretation '{unreadFlag}' is not one MagCds reads, and a qualitative result has no interval of MagCds's to judge it by."),
            ({ Positive: bool pos }, _) => Qualitative(pos),
            ({ Number: decimal n }, _) => Numeric(obs, value, n, labFlag, profile),
            // A value MagCds cannot read is not replaced by the lab's flag: the words may say what the flag does not
            // ("equivocal", "weakly positive", "trace" flagged H), and the output could not show the value it judged.
            _ => Cannot(obs.Value is Ratio ? CannotInterpretReason.UnreadableRatio : CannotInterpretReason.UnreadableQualitative,
                // Text that is a number ("25000") is still text: a result sent without its quantity carries no unit.
                (obs.Value is FhirString ? $"The value is text ('{value.Display}'); MagCds reads text only as a 1:n titre or a recognised qualitative result, and a number sent as text carries no unit to judge it by"
                                         : $"The value '{value.Display}' is not a number, a 1:n titre or a recognised qualitative result")
                + (labFlag is bool flag ? $"; the laboratory's flag ({flags.Shown}, read as {(flag ? "raised" : "not raised")}) is not taken in place of a value MagCds cannot read." : ".")),
        };

        // A lab flag that contradicts our reading of the lab's own range is not resolved by guessing.
        if (labFlag is bool f && i.Category != Category.CannotInterpret && i.Basis?.Origin != IntervalOrigin.ObservationInterpretation
            && f != (i.Category == Category.Elevated))
        {
            i = Cannot(CannotInterpretReason.InterpretationConflict,
                $"The laboratory flagged the result as {(f ? "raised" : "not raised")}, but the value {value.Display} read against {i.Basis?.Display ?? "its interval"} says {(f ? "not raised" : "raised")}.");
        }

        string? unitReading = i.Basis?.Profile?.UnitReading;
        string? flagNote = flags.Unread is { } unread && i.Category != Category.CannotInterpret
            ? $"The laboratory's interpretation '{unread}' is not one MagCds reads; the result was judged as stated above." : null;
        IReadOnlyList<string> notes = value.ReadingNote is null && unitReading is null && flagNote is null
            ? []
            : new[] { value.ReadingNote, unitReading, flagNote }.OfType<string>().ToList();

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

        Interpretation FromLabFlag(bool raised) => new()
        {
            Category = raised ? Category.Elevated : Category.NotElevated, Value = value, RuleId = Vocabulary.Rules.ObservationInterpretation.Code,
            Basis = new IntervalBasis(IntervalOrigin.ObservationInterpretation, null, null, true,
                $"laboratory flag {flags.Shown}", "the interpretation flag set by the performing laboratory", null),
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
            var range = UsableRange(o, out bool disagree);
            if (disagree)
                return Cannot(CannotInterpretReason.UnusableRange,
                    "The Observation carries several reference ranges with different limits; MagCds does not choose between them.");
            // A range no antibody level has is a mapping or transcription error at the lab's end: like any range
            // MagCds cannot use, it is set aside, and the lab's flag decides, else the result cannot be interpreted.
            if (range?.High is { Value: decimal faultyHigh } && RangeFault(range, faultyHigh) is { } fault)
            {
                if (flag is null) return Cannot(CannotInterpretReason.UnusableRange, fault);
                range = null;
            }
            if (range?.High is { Value: decimal high } rangeHigh)
            {
                if (!UnitsAgree(v, rangeHigh))
                    return Cannot(CannotInterpretReason.UnitMismatch,
                        $"The value is in '{v.UnitText ?? v.UnitCode}' but the Observation's reference range is in '{rangeHigh.Unit ?? rangeHigh.Code}'; MagCds does not convert between units.");
                decimal? low = range.Low?.Value;
                // The units agree (checked above), so the value's own unit is shown: how the range spells it (text,
                // code, or not at all) does not change what the output says.
                string unit = v.HasUnit ? v.UnitText ?? v.UnitCode ?? "" : rangeHigh.Unit ?? rangeHigh.Code ?? "";
                if (TextLimitDisagrees(range.Text, high))
                    return Cannot(CannotInterpretReason.UnusableRange,
                        $"The laboratory's range gives {ValueReader.Format(high)} {unit} as its upper limit but its text says '{range.Text!.Trim()}'; MagCds does not choose between the two.");
                // FHIR's range includes its high value, but a lab that writes the range as "<1500 BTU" with high 1500
                // (or "<1:10" with high 10) says the limit itself is outside it: then a result at the limit is raised,
                // as the lab's text says. "<1000 BTU" with high 999 agrees with FHIR's reading and changes nothing.
                // A high limit sent with "<" (invalid in FHIR, sqty-1, but the lab's meaning is plain; HL7 v2 ranges
                // arrive this way) says the same as the text "<1500 BTU".
                bool inclusive = !ExcludesHigh(range.Text, high) && rangeHigh.Comparator != Quantity.QuantityComparator.LessThan;
                // A range text that names a borderline or equivocal zone leaves a result at the limit to the lab.
                if (n == high && range.Text is { } rangeText && EquivocalWords.Any(w => rangeText.Contains(w, StringComparison.OrdinalIgnoreCase)))
                    return Cannot(CannotInterpretReason.UnusableRange,
                        $"The value {v.Display} is at the limit of the laboratory's range, whose text ('{rangeText.Trim()}') names a borderline or equivocal zone; MagCds does not decide which side such a result is on.");
                // A titre's limits are dilutions too: "1:10", not "10 titer".
                string limit = v.IsTitre ? "1:" + ValueReader.Format(high) : $"{ValueReader.Format(high)} {unit}".TrimEnd();
                string LowText(decimal l) => v.IsTitre ? "1:" + ValueReader.Format(l) : ValueReader.Format(l);
                // A range that arrives as only a number, with no text, may have been "<1000" at the lab (an HL7 v2 OBX-7
                // mapped to high = 1000 loses the "<"). When the assay's own published cut-off is that very number and
                // excludes it, a result exactly at the limit is raised by one reading and not by the other (FHIR's:
                // the high value is inside the range); MagCds does not choose between them. Not for a censored value
                // ("<1000" is below the limit on either reading), nor when the lab's flag says which it is.
                // Also any range of an upper limit alone (no low, no text, no comparator on the limit), not only one at
                // a profile's cut-off: a laboratory's "<1500 BTU" arrives the same way (found in a laboratory
                // director's review). A range with a low limit ("0.1-10") was not a "<" range.
                if (n == high && v.Comparator is null && flag is null && range.Text is null && rangeHigh.Comparator is null)
                {
                    if (matched?.ReferenceInterval is { HighInclusive: false } cutOff && cutOff.High == high)
                        return Cannot(CannotInterpretReason.UnusableRange,
                            $"The value {v.Display} equals the upper limit of the laboratory's reference range ({limit}). FHIR reads that limit as inside the range (not raised), but the range carries no text saying so, and the cut-off of MagCds's assay profile '{matched.Name}' ({ProfileBasis(matched).Display}, {matched.ReferenceInterval.Label}) reads the same number as raised; a range written '<{limit}' often arrives this way. MagCds does not choose between the two readings.");
                    if (low is null)
                        return Cannot(CannotInterpretReason.UnusableRange,
                            $"The value {v.Display} equals the upper limit of the laboratory's reference range ({limit}), which has no lower limit and no text. FHIR reads that limit as inside the range (not raised), but a range written '<{limit}' often arrives this way (converted from HL7 v2, the '<' is lost), and then the value is raised. MagCds does not choose between the two readings.");
                }
                basis = new IntervalBasis(IntervalOrigin.ObservationReferenceRange, low, high, inclusive,
                    inclusive ? (low is { } l ? $"{LowText(l)}-" : "up to ") + limit
                              : (low is { } l2 ? $"{LowText(l2)} to " : "") + "below " + limit,
                    "the reference range the performing laboratory sent with the Observation", null);
                ruleId = Vocabulary.Rules.ObservationReferenceRange.Code;
                rule = $"The value is compared with the upper limit of the laboratory's own reference range ({limit}): "
                       + (inclusive
                           ? "above it is reported as raised, at or below it as not raised."
                           : $"the laboratory writes the range as '{range.Text?.Trim() ?? "<" + limit}', so at or above the limit is reported as raised, below it as not raised.");
                if (!v.HasUnit) rule += " The value carries no unit; the range sent with it in the same Observation is taken to be in the same unit.";
                else if (rangeHigh is { Unit: null, Code: null } && !v.IsTitre) rule += " The range carries no unit; it is taken to be in the value's unit.";
            }
            else if (flag is bool raisedFlag)
            {
                // With no range, the lab's flag is its verdict; an assay profile that reads the value the other way
                // (25000 BTU flagged normal or low) is a contradiction, not something to settle by choosing one.
                if (matched is not null && Classify(v, ProfileBasis(matched)) is bool byProfile && byProfile != raisedFlag)
                    return Cannot(CannotInterpretReason.InterpretationConflict,
                        $"The laboratory flagged the result as {(raisedFlag ? "raised" : "not raised")}, but the value {v.Display} read against {ProfileBasis(matched).Display} ({matched.Name}) says {(byProfile ? "raised" : "not raised")}.");
                return FromLabFlag(raisedFlag);
            }
            else if (o.ReferenceRange.Count > 0)
            {
                // The lab sent a range MagCds cannot use (text only, no upper limit, for a particular age or
                // population, or not a normal range). Its own interval may differ from any assay profile's, so no
                // profile stands in for it.
                return Cannot(CannotInterpretReason.UnusableRange,
                    "The Observation carries a reference range MagCds cannot use (no upper limit as a number, a range for a particular age or population, or a range that is not a normal range), and no interpretation flag MagCds reads. " +
                    "An assay profile's interval is not used in place of the laboratory's own.");
            }
            else if (flags.Unread is { } unread)
            {
                // The laboratory said something about the result that MagCds cannot read: no profile overrides it.
                return Cannot(CannotInterpretReason.UnreadableFlag,
                    $"The laboratory's interpretation '{unread}' is not one MagCds reads, and the Observation carries no reference range. An assay profile's interval is not used in place of the laboratory's own verdict.");
            }
            else if (unitConflict is not null)
            {
                return Cannot(CannotInterpretReason.UnitConflict, unitConflict);
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
    /// True when the range's text states a strict upper limit at the range's own high value, anywhere in it:
    /// "&lt;1500 BTU", "Negative: &lt; 1,500" with high 1500, "Negative &lt;1:10" with high 10. Not "&lt;=", and not
    /// a limit whose number differs.
    /// </summary>
    private static bool ExcludesHigh(string? text, decimal high) => TextLimits(text).Any(l => !l.Inclusive && l.Limit == high);

    /// <summary>
    /// Whether the range's text states an upper limit ("&lt;1500 BTU", "&lt;=1:10") and none of them is its numeric high
    /// limit, or the next step above it at the high limit's precision ("&lt;1000" with high 999, "&lt;10" with 9.9): the
    /// laboratory then says two different things about the same range.
    /// </summary>
    private static bool TextLimitDisagrees(string? text, decimal high)
    {
        var limits = TextLimits(text);
        decimal step = 1m / (decimal)Math.Pow(10, high.Scale);
        return limits.Count > 0 && !limits.Any(l => l.Limit == high || (l.Limit > high && l.Limit - high <= step));
    }

    /// <summary>The upper limits a range's text states with "&lt;" or "&lt;=" (a titre "&lt;1:10" as 10).</summary>
    private static List<(decimal Limit, bool Inclusive)> TextLimits(string? text)
    {
        var limits = new List<(decimal, bool)>();
        if (text is null) return limits;
        for (int at = text.IndexOf('<'); at >= 0; at = text.IndexOf('<', at + 1))
        {
            var rest = text.AsSpan(at + 1);
            bool inclusive = rest.StartsWith("=");
            if (inclusive) rest = rest[1..];
            rest = rest.TrimStart();
            if (rest.StartsWith("1:")) rest = rest[2..].TrimStart();
            int n = 0;
            while (n < rest.Length && (char.IsAsciiDigit(rest[n]) || rest[n] is '.' or ',')) n++;
            if (decimal.TryParse(rest[..n].ToString().Replace(",", ""), System.Globalization.NumberStyles.AllowDecimalPoint,
                    System.Globalization.CultureInfo.InvariantCulture, out var limit))
                limits.Add((limit, inclusive));
        }
        return limits;
    }

    /// <summary>
    /// The laboratory's reference range a value is judged against: one with a numeric upper limit, for everyone (no
    /// age or population) and of no type or the type "normal" (a treatment or therapeutic range is not a reference
    /// interval). FHIR reads several ranges as alternatives: when usable ones have different limits,
    /// <paramref name="disagree"/> is set and none is chosen.
    /// </summary>
    private static Observation.ReferenceRangeComponent? UsableRange(Observation o, out bool disagree)
    {
        disagree = false;
        Observation.ReferenceRangeComponent? first = null;
        foreach (var r in o.ReferenceRange)
        {
            if (r.High?.Value is null || r.AppliesTo.Count > 0 || r.Age is not null || !IsNormalRange(r)) continue;
            if (first is null) { first = r; continue; }
            if (r.Low?.Value != first.Low?.Value || r.High.Value != first.High!.Value || r.High.Unit != first.High.Unit || r.High.Code != first.High.Code
                || ExcludesHigh(r.Text, r.High.Value.Value) != ExcludesHigh(first.Text, first.High.Value!.Value))
                disagree = true;
        }
        return disagree ? null : first;
    }

    /// <summary>
    /// A range with no type, or typed as the normal (reference) range: referencerange-meaning "normal", or in another
    /// code system or text, words naming a normal or reference range ("Normal range", "Reference range").
    /// </summary>
    private static bool IsNormalRange(Observation.ReferenceRangeComponent r)
    {
        if (r.Type is null) return true;
        foreach (var c in r.Type.Coding) if (c.System == RangeMeaning) return c.Code == "normal";
        foreach (var words in r.Type.Coding.Select(c => c.Display).Append(r.Type.Text))
            if (words is not null && (words.Contains("normal", StringComparison.OrdinalIgnoreCase) || words.Contains("reference", StringComparison.OrdinalIgnoreCase)))
                return true;
        return false;
    }

    /// <summary>
    /// Why a lab range cannot be a reference interval of an antibody level, if it cannot: an upper limit at zero or
    /// below, a lower limit above the upper, or an upper limit with a comparator other than "&lt;" and "&lt;=" ("&gt;1500"
    /// is no upper limit).
    /// </summary>
    private static string? RangeFault(Observation.ReferenceRangeComponent range, decimal high)
    {
        string limits = (range.Low?.Value is { } l ? ValueReader.Format(l) + "-" : "up to ") + ValueReader.Format(high);
        if (high <= 0) return $"The laboratory's range ({limits}) ends at zero or below, which no reference interval of an antibody level does.";
        if (range.Low?.Value > high) return $"The laboratory's range ({limits}) has its lower limit above its upper limit, which no reference interval does.";
        if (range.High!.Comparator is not (null or Quantity.QuantityComparator.LessThan or Quantity.QuantityComparator.LessOrEqual))
            return $"The laboratory's range gives its upper limit as '{range.High.ComparatorElement?.JsonValue}{ValueReader.Format(high)}', which is no upper limit.";
        return null;
    }

    /// <summary>The interval of an assay profile, as shown in outputs; the same for every result, so built once.</summary>
    private IntervalBasis ProfileBasis(AssayProfile p) => _profileBases.GetOrAdd(p, profile =>
    {
        var ri = profile.ReferenceInterval;
        return new IntervalBasis(IntervalOrigin.AssayProfile, ri.Low, ri.High, ri.HighInclusive,
            ri.Text(),
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

    /// <summary>
    /// The assay profile of a value. The unit the laboratory wrote decides: a value with a unit text is matched on
    /// it, and its unit code may not point at another profile (UCUM "U" with the text "BTU" is a mislabelled BTU
    /// result, not one on the 0.1-10 Units scale); a code no profile knows (such as the generic [arb'U]) leaves the
    /// text to decide. Only a value without unit text is matched on its code. <paramref name="conflict"/> says why
    /// no profile was chosen when text and code disagree.
    /// </summary>
    public AssayProfile? MatchProfile(Observation obs, ReadValue v, out string? conflict)
    {
        conflict = null;
        string? text = string.IsNullOrWhiteSpace(v.UnitText) ? null : v.UnitText.Trim();
        AssayProfile? byText = null, byCode = null;
        foreach (var p in knowledge.AssayProfiles)
        {
            var m = p.Match;
            if (m.Codes.Count > 0 && !obs.Code.Coding.Any(c => m.Codes.Contains($"{c.System}|{c.Code}"))) continue;
            if (m.Methods.Count > 0 && !ContainsAny(MethodWords(obs), m.Methods)) continue;
            if (m.Performers.Count > 0 && !ContainsAny(obs.Performer.SelectMany(r => new[] { r.Display, r.Identifier?.Value }), m.Performers)) continue;
            foreach (var u in m.Units)
            {
                if ((u.System is not null && u.System != v.UnitSystem) || (u.Code is not null && u.Code != v.UnitCode)) continue;
                if (u.Unit is null) { if (u.Code is not null) byCode ??= p; }
                else if (string.Equals(u.Unit, text, StringComparison.OrdinalIgnoreCase)) byText ??= p;
            }
        }
        // No unit text, or text that only repeats the code ("{BTU}" as both): the code decides.
        if (text is null || (byText is null && string.Equals(text, v.UnitCode, StringComparison.OrdinalIgnoreCase))) return byCode;
        // UCUM's enzyme unit (U, U/mL) beside an assay's text names something else than that assay's units. (Until
        // knowledge 2026.11.7 the Units profile claimed the code U, which made it a conflict that way.)
        bool enzymeUnit = byText is not null && byCode is null && v.UnitSystem == "http://unitsofmeasure.org"
                          && v.UnitCode is { } code && (code == "U" || code.StartsWith("U/", StringComparison.Ordinal));
        if ((byCode is not null && byCode != byText) || enzymeUnit)
        {
            conflict = $"The value's unit text '{text}' and its unit code '{v.UnitCode}' do not name the same assay; MagCds does not choose between them.";
            return null;
        }
        return byText;
    }

    /// <summary>A range without a unit shares the value's; a unit-less value takes the range sent with it; otherwise the units must be the same.</summary>
    private static bool UnitsAgree(ReadValue v, Quantity rangeLimit)
    {
        bool rangeHasUnit = !string.IsNullOrWhiteSpace(rangeLimit.Unit) || !string.IsNullOrWhiteSpace(rangeLimit.Code);
        if (!rangeHasUnit || !v.HasUnit) return true;
        if (v.IsTitre)
            return $"{rangeLimit.Unit} {rangeLimit.Code}".Contains("tit", StringComparison.OrdinalIgnoreCase);
        if (v.UnitCode is not null && rangeLimit.Code is not null)
            return v.UnitCode == rangeLimit.Code && (v.UnitSystem ?? "") == (rangeLimit.System ?? "");
        return string.Equals((v.UnitText ?? v.UnitCode)?.Trim(), (rangeLimit.Unit ?? rangeLimit.Code)?.Trim(), StringComparison.OrdinalIgnoreCase);
    }

    private enum FlagReading { None, Raised, NotRaised, Equivocal, Contradictory, Unread }

    /// <summary>What the laboratory's interpretation says, the flags as shown in outputs, and any it said that MagCds cannot read.</summary>
    private readonly record struct Flags(FlagReading Reading, string Shown, string? Unread);

    private static readonly Flags NoFlags = new(FlagReading.None, "", null);

    /// <summary>
    /// Reads Observation.interpretation: v3 and v2 abnormal-flag codes, else the words of its text or display. An
    /// equivocal flag, or flags that contradict each other, decide; one MagCds cannot read is reported as such.
    /// </summary>
    private static Flags ReadFlags(Observation obs)
    {
        if (obs.Interpretation.Count == 0) return NoFlags;
        bool raised = false, notRaised = false, equivocal = false;
        List<string> shown = [], unread = [];
        foreach (var concept in obs.Interpretation)
        {
            if (concept.Coding.Count == 0 && string.IsNullOrWhiteSpace(concept.Text)) continue; // says nothing
            var reading = FlagReading.None;
            string? label = null;
            bool standard = false;
            // The codings of one concept are translations of one flag, so every verdict among them counts: "N" coded
            // beside "H" contradicts it whichever comes first.
            foreach (var c in concept.Coding)
            {
                if (c.System is not (V3Interpretation or V2Interpretation) || c.Code is not { } code) continue;
                standard = true;
                label ??= code;
                var byCode = ByCode(code);
                if (byCode == FlagReading.None) continue;
                if (reading == FlagReading.None) { reading = byCode; label = code; }
                else if (byCode != reading) Count(byCode, code);
            }
            // Words that give a verdict of their own (the text as the lab showed it) must agree with the codes.
            if (reading != FlagReading.None && concept.Text?.Trim() is { Length: > 0 } shownText
                && ByWords(shownText) is var byText && byText != FlagReading.None && byText != reading)
                Count(byText, shownText);
            if (reading == FlagReading.None)
            {
                string? words = concept.Text ?? concept.Coding.Select(c => c.Display ?? c.Code).FirstOrDefault(d => d is not null);
                label ??= words;
                // Words ("Negative"), or the flag letters sent as text or without a code system ("H", "Pos").
                if (words?.Trim() is { Length: > 0 } w) reading = ByWords(w);
                // A v3/v2 code that gives no verdict (a delta flag such as U, off-scale <, >) says nothing about
                // raised or not: it neither decides nor blocks.
                if (reading == FlagReading.None && standard) continue;
            }
            Count(reading, label);
        }
        if (shown.Count == 0) return NoFlags;
        var result = equivocal ? FlagReading.Equivocal
            : raised && notRaised ? FlagReading.Contradictory
            : raised ? FlagReading.Raised
            : notRaised ? FlagReading.NotRaised
            : FlagReading.Unread;
        return new Flags(result, string.Join(", ", shown), unread.Count > 0 ? string.Join(", ", unread) : null);

        void Count(FlagReading reading, string? label)
        {
            string display = label is null ? "(empty)" : label.Length > 40 ? label[..40] + "…" : label;
            shown.Add(display);
            switch (reading)
            {
                case FlagReading.Raised: raised = true; break;
                case FlagReading.NotRaised: notRaised = true; break;
                case FlagReading.Equivocal: equivocal = true; break;
                default: unread.Add(display); break;
            }
        }
    }

    /// <summary>Whether a v3/v2 interpretation code gives a verdict MagCds reads (else its display is read as words).</summary>
    internal static bool IsVerdictCode(string? code) => code is not null && ByCode(code) != FlagReading.None;

    /// <summary>Words ("Negative"), or flag letters sent as text ("H", "Pos").</summary>
    private static FlagReading ByWords(string words) => FlagWords.TryGetValue(words, out var reading) ? reading : ByCode(words.ToUpperInvariant());

    private static FlagReading ByCode(string code) =>
        RaisedFlags.Contains(code) ? FlagReading.Raised
        : NotRaisedFlags.Contains(code) ? FlagReading.NotRaised
        : EquivocalFlags.Contains(code) ? FlagReading.Equivocal
        : FlagReading.None;

    private static IEnumerable<string?> MethodWords(Observation obs) =>
        obs.Method is null ? [] : obs.Method.Coding.SelectMany(c => new[] { c.Display, c.Code }).Append(obs.Method.Text);

    private static bool ContainsAny(IEnumerable<string?> haystack, IReadOnlyList<string> words) =>
        haystack.Any(h => h is not null && words.Any(w => h.Contains(w, StringComparison.OrdinalIgnoreCase)));
}
