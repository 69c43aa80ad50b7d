using System.Globalization;
using Hl7.Fhir.Model;

namespace MagCds.Core.Evaluation;

/// <summary>
/// Reads every value form a lab sends (Quantity with comparator, Ratio titre, Integer, qualitative
/// CodeableConcept or string) into a <see cref="ReadValue"/>. Never throws: an unreadable value comes back
/// as a <see cref="ReadValue"/> with neither a number nor a qualitative reading, and the classifier says why.
/// </summary>
public static class ValueReader
{
    /// <summary>The unit MagCds gives every dilution titre (a lab's "titer", "ratio" or none): MagCds's own word.</summary>
    public const string Titre = "titre";

    // Words and codes labs use for qualitative anti-MAG results (v3-ObservationInterpretation and SNOMED CT).
    private static readonly Dictionary<string, bool> QualitativeWords = new(StringComparer.OrdinalIgnoreCase)
    {
        ["positive"] = true, ["pos"] = true, ["detected"] = true, ["reactive"] = true, ["present"] = true,
        ["negative"] = false, ["neg"] = false, ["not detected"] = false, ["undetected"] = false,
        ["non-reactive"] = false, ["nonreactive"] = false, ["absent"] = false,
    };

    private static readonly Dictionary<(string System, string Code), bool> QualitativeCodes = new()
    {
        [("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "POS")] = true,
        [("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "DET")] = true,
        [("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "NEG")] = false,
        [("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "ND")] = false,
        [("http://snomed.info/sct", "10828004")] = true,   // Positive
        [("http://snomed.info/sct", "260373001")] = true,  // Detected
        [("http://snomed.info/sct", "260385009")] = false, // Negative
        [("http://snomed.info/sct", "260415000")] = false, // Not detected
    };

    private static readonly Dictionary<string, string> QualitativeCodeWords = new(StringComparer.Ordinal)
    {
        ["POS"] = "Positive", ["DET"] = "Detected", ["NEG"] = "Negative", ["ND"] = "Not detected",
        ["10828004"] = "Positive", ["260373001"] = "Detected", ["260385009"] = "Negative", ["260415000"] = "Not detected",
    };

    /// <summary>Null when the Observation has no value at all (the caller reports missing-value).</summary>
    public static ReadValue? Read(Observation obs) => obs.Value switch
    {
        Quantity q => FromQuantity(q),
        Ratio r => FromRatio(r),
        Integer i when i.Value is int v => new ReadValue { Number = v, Display = v.ToString(CultureInfo.InvariantCulture) },
        CodeableConcept cc => FromConcept(cc),
        FhirString s when !string.IsNullOrWhiteSpace(s.Value) => FromString(s.Value),
        null => null,
        // Other types (boolean, time, period, sampled data...) are not a form labs use for this test.
        DataType other => new ReadValue { Display = $"a value of type {other.TypeName}" },
    };

    private static ReadValue FromQuantity(Quantity q)
    {
        if (q.Value is not decimal v)
            return new ReadValue { Display = "a quantity without a number", UnitText = q.Unit, UnitSystem = q.System, UnitCode = q.Code };
        string unit = q.Unit ?? q.Code ?? "";
        // A comparator R4 does not define (R5's "ad", "sufficient to achieve this total") is shown as sent and not
        // read as a number: whether the value is censored, and which way, is not guessed.
        if (q.Comparator is not null && ComparatorText(q.Comparator).Length == 0)
            return new ReadValue { Display = $"{q.ComparatorElement?.JsonValue} {Format(v)}{(unit.Length > 0 ? " " + unit : "")}", UnitText = q.Unit, UnitSystem = q.System, UnitCode = q.Code };
        return new ReadValue
        {
            Number = v,
            Comparator = q.Comparator,
            UnitText = q.Unit,
            UnitSystem = q.System,
            UnitCode = q.Code,
            Display = $"{ComparatorText(q.Comparator)}{Format(v)}{(unit.Length > 0 ? " " + unit : "")}",
        };
    }

    /// <summary>A titre 1:1600 is read as 1600 (the dilution); any other ratio is not a titre and is not guessed at.</summary>
    private static ReadValue FromRatio(Ratio r)
    {
        decimal? n = r.Numerator?.Value, d = r.Denominator?.Value;
        string display = $"{(n is { } nn ? Format(nn) : "?")}:{(d is { } dd ? Format(dd) : "?")}";
        // "<1:10" arrives with its comparator on the numerator (HL7 v2 SN mapped to FHIR) or on the denominator; either
        // way it bounds the titre, so the dilution. Two comparators say two things at once and are not read.
        var numeratorComparator = r.Numerator?.Comparator;
        var denominatorComparator = r.Denominator?.Comparator;
        if (numeratorComparator is not null && denominatorComparator is not null)
            return new ReadValue { Display = $"{ComparatorText(numeratorComparator)}{(n is { } n2 ? Format(n2) : "?")}:{ComparatorText(denominatorComparator)}{(d is { } d2 ? Format(d2) : "?")}", UnitText = Titre };
        var comparator = numeratorComparator ?? denominatorComparator;
        // A comparator R4 does not define (R5's "ad") is shown as sent and the titre not read, as for a quantity.
        if (comparator is not null && ComparatorText(comparator).Length == 0)
            return new ReadValue { Display = $"{(r.Numerator?.Comparator is not null ? r.Numerator.ComparatorElement?.JsonValue : r.Denominator!.ComparatorElement?.JsonValue)} {display}", UnitText = Titre };
        // A dilution is a whole number of at least 1; "1:0" or "1:2.5" is not a titre and is not read as one.
        if (n == 1 && d is { } den && den >= 1 && den == decimal.Truncate(den))
        {
            return new ReadValue
            {
                Number = den,
                Comparator = comparator,
                UnitText = Titre,
                Display = $"{ComparatorText(comparator)}{display}",
                ReadingNote = $"The titre {display} is read as the dilution {Format(den)}.",
            };
        }
        return new ReadValue { Display = ComparatorText(comparator) + display, UnitText = Titre };
    }

    /// <summary>
    /// A coded qualitative result. Its codings are translations of one result and its text is that result as the lab
    /// showed it, so every code and every word MagCds reads must say the same: "positive" coded beside "negative", or
    /// the code for positive with the text "Negative", is not read at all, whichever comes first.
    /// </summary>
    private static ReadValue FromConcept(CodeableConcept cc)
    {
        bool? byCode = null, any = null;
        bool disagree = false;
        string? display = null;
        foreach (var c in cc.Coding)
        {
            if (c.System is { } s && c.Code is { } code && QualitativeCodes.TryGetValue((s, code), out bool pos))
            {
                Read(pos);
                byCode ??= pos;
                // A bare code is shown with what it means, so the basis a clinician reads is not "Result: 10828004".
                display ??= c.Display ?? cc.Text ?? $"{QualitativeCodeWords.GetValueOrDefault(code, pos ? "Positive" : "Negative")} (code {code})";
            }
            if (c.Display is { } d && QualitativeWords.TryGetValue(d.Trim(), out bool byDisplay)) Read(byDisplay);
        }
        if (cc.Text is { } t && QualitativeWords.TryGetValue(t.Trim(), out bool byText)) Read(byText);
        if (disagree)
        {
            string shown = string.Join(" / ", cc.Coding.Select(c => c.Display ?? c.Code).Append(cc.Text).OfType<string>().Distinct());
            return new ReadValue { Display = shown.Length > 60 ? Cut(shown, 60) + "…" : shown, Contradictory = true };
        }
        if (byCode is bool positive) return new ReadValue { Positive = positive, Display = display! };
        // No code MagCds knows: the text as the lab showed it, else a coding's display, read as words.
        string? text = cc.Text ?? cc.Coding.Select(c => c.Display).FirstOrDefault(d => d is not null);
        return text is null ? new ReadValue { Display = "a coded value MagCds does not know" } : FromString(text);

        void Read(bool positive)
        {
            if (any is bool earlier && earlier != positive) disagree = true;
            any ??= positive;
        }
    }

    private static ReadValue FromString(string text)
    {
        string t = text.Trim();
        return QualitativeWords.TryGetValue(t, out bool pos)
            ? new ReadValue { Positive = pos, Display = t }
            : new ReadValue { Display = t.Length > 60 ? Cut(t, 60) + "…" : t };
    }

    public static string ComparatorText(Quantity.QuantityComparator? c) => c switch
    {
        Quantity.QuantityComparator.LessThan => "<",
        Quantity.QuantityComparator.LessOrEqual => "<=",
        Quantity.QuantityComparator.GreaterThan => ">",
        Quantity.QuantityComparator.GreaterOrEqual => ">=",
        _ => "",
    };

    /// <summary>Invariant formatting that keeps the lab's precision (a decimal keeps its scale: 0.50 stays 0.50).</summary>
    public static string Format(decimal v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// The longest start of <paramref name="s"/> of at most <paramref name="max"/> UTF-16 units that ends where a
    /// reader sees a character end: never inside a surrogate pair (an emoji cut in half is written as U+FFFD) or a
    /// combined character.
    /// </summary>
    public static string Cut(string s, int max)
    {
        if (s.Length <= max) return s;
        int end = 0;
        while (end < s.Length)
        {
            int next = end + StringInfo.GetNextTextElementLength(s, end);
            if (next > max) break;
            end = next;
        }
        return s[..end];
    }
}
