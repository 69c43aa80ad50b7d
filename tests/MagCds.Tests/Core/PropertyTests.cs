using FsCheck;
using FsCheck.Fluent;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Core.Evaluation;
using MagCds.Tests.Support;

namespace MagCds.Tests.Core;

/// <summary>
/// Properties of the evaluation core over generated Observations (FsCheck): it never throws, it is deterministic to
/// the byte, within one assay profile a higher value never gets a lower category, every output is valid R4 and
/// conforms to its MagCds profile, and every card satisfies the CDS Hooks card rules.
/// </summary>
public sealed class PropertyTests
{
    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(500);

    private static readonly Gen<decimal> Values = Gen.OneOf(
        Gen.Choose(-1000, 200_000).Select(i => (decimal)i),
        Gen.Choose(0, 10_000).Select(i => i / 100m),
        Gen.Elements(0m, -0m, 0.1m, 10m, 999m, 1000m, 9999m, 10_000m, 69_999m, 70_000m, 1e12m, -1e12m, decimal.MaxValue, decimal.MinValue));

    private static readonly Gen<Observation> Observations =
        from value in Values
        from kind in Gen.Choose(0, 6)
        from unit in Gen.Elements<string?>("BTU", "Units", "U/mL", "", null, "mg", "titre")
        from comparator in Gen.Elements<Quantity.QuantityComparator?>(null, Quantity.QuantityComparator.LessThan, Quantity.QuantityComparator.GreaterOrEqual)
        from status in Gen.Elements(ObservationStatus.Final, ObservationStatus.Amended, ObservationStatus.Preliminary, ObservationStatus.Registered,
            ObservationStatus.EnteredInError, ObservationStatus.Cancelled, ObservationStatus.Unknown)
        from withRange in Gen.Elements(true, false)
        from low in Gen.Choose(-5, 50)
        from high in Gen.Choose(-5, 2000)
        from flag in Gen.Elements<string?>(null, "H", "N", "L", "POS", "NEG", "A", "zz")
        from text in Gen.Elements("positive", "negative", "detected", "not detected", "weird", "", "1:1600", "POSITIVE ")
        from withSubject in Gen.Elements(true, true, true, false)
        select Build(value, kind, unit, comparator, status, withRange, low, high, flag, text, withSubject);

    private static Observation Build(decimal value, int kind, string? unit, Quantity.QuantityComparator? comparator, ObservationStatus status,
        bool withRange, int low, int high, string? flag, string text, bool withSubject)
    {
        var obs = new Observation
        {
            Id = "gen",
            Status = status,
            Code = new CodeableConcept("http://loinc.org", "39087-2"),
            Subject = withSubject ? new ResourceReference("Patient/gen") : null,
            Effective = new FhirDateTime(2026, 3, 2),
            Value = kind switch
            {
                0 or 1 or 2 => new Quantity { Value = value, Unit = unit, Comparator = comparator },
                3 => new Integer((int)Math.Clamp(value, int.MinValue, int.MaxValue)),
                4 => new FhirString(text),
                5 => new Ratio { Numerator = new Quantity { Value = 1 }, Denominator = new Quantity { Value = value } },
                _ => null,
            },
        };
        if (obs.Value is null) obs.DataAbsentReason = new CodeableConcept("http://terminology.hl7.org/CodeSystem/data-absent-reason", "error");
        if (withRange) obs.ReferenceRange.Add(new Observation.ReferenceRangeComponent { Low = new Quantity { Value = low, Unit = unit }, High = new Quantity { Value = high, Unit = unit } });
        if (flag is not null) obs.Interpretation.Add(new CodeableConcept("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", flag));
        return obs;
    }

    private static EvaluationResponse Evaluate(Observation obs) =>
        CoreUnderTest.Evaluator.Evaluate(EvaluationRequest.Of(new EvaluationInput(obs, "Observation/gen", "Observation")));

    [Test]
    public void Evaluation_never_throws_and_answers_each_input() =>
        Prop.ForAll(Observations.ToArbitrary(), obs => Evaluate(obs).Results.Count == 1).Check(Runs);

    [Test]
    public void The_same_input_gives_byte_identical_outputs() =>
        Prop.ForAll(Observations.ToArbitrary(), obs =>
        {
            string first = string.Join("\n", Evaluate(obs).Outputs.Select(o => o.ToJson()));
            string again = string.Join("\n", Evaluate((Observation)obs.DeepCopy()).Outputs.Select(o => o.ToJson()));
            return first == again;
        }).Check(Runs);

    [TestCase("BTU")]
    [TestCase("Units")]
    public void Within_one_profile_a_higher_value_never_gets_a_lower_category(string unit)
    {
        var pairs = from a in Gen.Choose(0, 150_000) from b in Gen.Choose(0, 150_000) select (Math.Min(a, b), Math.Max(a, b));
        Prop.ForAll(pairs.ToArbitrary(), p =>
        {
            decimal scale = unit == "Units" ? 1000m : 1m; // Units values around the 0.1–10 interval
            var lower = Category(p.Item1 / scale, unit);
            var higher = Category(p.Item2 / scale, unit);
            // Every value in this range is one the profile interprets: a profile that stopped matching (everything
            // "cannot interpret") fails here instead of passing for want of anything to compare.
            return lower != global::MagCds.Core.Evaluation.Category.CannotInterpret && higher != global::MagCds.Core.Evaluation.Category.CannotInterpret
                   && Rank(higher) >= Rank(lower);
        }).Check(Runs);
    }

    private static Category Category(decimal value, string unit)
    {
        var obs = Build(value, 0, unit, null, ObservationStatus.Final, withRange: false, 0, 0, flag: null, "", withSubject: true);
        return Evaluate(obs).Results[0].Interpretation?.Category ?? global::MagCds.Core.Evaluation.Category.CannotInterpret;
    }

    private static int Rank(Category c) => c == global::MagCds.Core.Evaluation.Category.Elevated ? 1 : 0;

    /// <summary>Validation costs about a millisecond per output once warm, so fewer runs than the cheap properties.</summary>
    private static readonly Config ValidationRuns = Config.QuickThrowOnFailure.WithMaxTest(200);

    [Test]
    public void Every_output_is_valid_R4_and_conforms_to_its_MagCds_profile() =>
        Prop.ForAll(Observations.ToArbitrary(), obs => Evaluate(obs).Outputs.All(o =>
        {
            var problems = FhirValidation.Problems(o);
            return problems.Count == 0 ? true : throw new AssertionException($"{o.TypeName} for {obs.ToJson()}:\n{FhirValidation.Describe(problems)}");
        })).Check(ValidationRuns);

    [Test]
    public void Every_card_satisfies_the_CDS_Hooks_card_rules()
    {
        var cards = new MagCds.Service.CdsHooks.CardBuilder(CoreUnderTest.Evaluator);
        Prop.ForAll(Observations.ToArbitrary(), obs =>
        {
            var call = new MagCds.Service.CdsHooks.CdsCall("magcds-patient-view", "patient-view", "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", null, null, "gen", [], null,
                new Dictionary<string, MagCds.Service.CdsHooks.PrefetchSlot>());
            var list = Evaluate(obs).Results.Where(r => r is { Outcome: InputOutcome.Evaluated, Interpretation.NeedsAttention: true })
                .SelectMany(r => new[] { cards.ResultCard(call, r, "https://magcds.example/knowledge", forOrder: false), cards.ResultCard(call, r, "https://magcds.example/knowledge", forOrder: true) })
                .ToList();
            using var json = System.Text.Json.JsonDocument.Parse(System.Text.Json.JsonSerializer.Serialize(new MagCds.Service.CdsHooks.CdsResponse(list), MagCds.Service.CdsHooks.CdsJson.Options));
            var violations = CardRules.Violations(json.RootElement);
            return violations.Count == 0 ? true : throw new AssertionException(string.Join("; ", violations));
        }).Check(Runs);
    }
}
