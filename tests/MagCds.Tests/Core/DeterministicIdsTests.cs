using Hl7.Fhir.Model;
using MagCds.Core.Evaluation;
using MagCds.Core.Outputs;

namespace MagCds.Tests.Core;

/// <summary>
/// The output ids and identifiers are a contract with every system that stored earlier outputs: the worker's
/// conditional creates and an engine's retries match on them. These values were computed by the release that first
/// shipped them; a change to how ids are derived (a faster hash, a different join) must not change them. A new
/// knowledge version changes ids by design, so the knowledge version is fixed here.
/// </summary>
public class DeterministicIdsTests
{
    private const string KnowledgeVersion = "2026.11.1";

    private static Observation Result() => new()
    {
        Status = ObservationStatus.Final,
        Code = new CodeableConcept("http://loinc.org", "39087-2"),
        Subject = new ResourceReference("Patient/p1"),
        Value = new Quantity(25000, "BTU"),
        Issued = new DateTimeOffset(2026, 3, 2, 8, 0, 0, TimeSpan.Zero),
    };

    private static IEnumerable<TestCaseData> Inputs()
    {
        var byIdentifier = Result();
        byIdentifier.Identifier.Add(new Identifier("urn:oid:1.2.3", "LAB-1"));
        byIdentifier.Meta = new Meta { VersionId = "3" };
        yield return new TestCaseData(new EvaluationInput(byIdentifier, "Observation/x", "Observation"),
            "c895f573645ff12e14e2024035fa51cc", "ra-6dc0503aefd550ba751cad557b48d639ca17b9c4", "urn:uuid:6dc0503a-efd5-80ba-b51c-ad557b48d639",
            "di-7b48d639ca17b9c499f7ebde7f43468df191b770", "urn:uuid:ca17b9c4-99f7-8bde-bf43-468df191b770", "ra-88d3524425f52dd7942d261d59a156263c75af39")
            .SetName("business identifier and meta.versionId");

        var byId = Result();
        byId.Id = "obs-1";
        yield return new TestCaseData(new EvaluationInput(byId, null, "Observation"),
            "5f1daf37a8a97e28d3c1d8facb5121a7", "ra-d13e0ceb865beba9e89f53f5fb3179e474fcd12a", "urn:uuid:d13e0ceb-865b-8ba9-a89f-53f5fb3179e4",
            "di-fb3179e474fcd12a0de0a858c078763e6beed7f2", "urn:uuid:74fcd12a-0de0-8858-8078-763e6beed7f2", "ra-09518a0745d8f4dbc08fe45cd2e10e97b7ec1720")
            .SetName("logical id, version from the content");

        var byReference = Result();
        byReference.Subject = new ResourceReference { Identifier = new Identifier("urn:mrn", "M1") };
        yield return new TestCaseData(new EvaluationInput(byReference, "urn:uuid:0b7e6c4a-2f55-4d7e-9d7c-1f6f0f3f9a10", "Bundle.entry[0].resource"),
            "06974ac6d6147620b68657f7590e3a96", "ra-a74dd26003e773853c1da5d17dbe3f5d6114ac87", "urn:uuid:a74dd260-03e7-8385-bc1d-a5d17dbe3f5d",
            "di-7dbe3f5d6114ac87bd964bdbe90e8991d94c2141", "urn:uuid:6114ac87-bd96-8bdb-a90e-8991d94c2141", "ra-c93d70b42cd47ae3b61cff33e6af507467c6baf7")
            .SetName("Bundle fullUrl, subject by identifier");

        var byContent = Result();
        byContent.Subject = null;
        byContent.ReferenceRange.Add(new Observation.ReferenceRangeComponent { High = new Quantity(1000, "BTU") });
        yield return new TestCaseData(new EvaluationInput(byContent, null, "Observation"),
            "841924f805aea750823701c7c8288e85", "ra-224061781c17557588756a5c8c42cc0a1366234e", "urn:uuid:22406178-1c17-8575-8875-6a5c8c42cc0a",
            "di-8c42cc0a1366234e64034a6222181450fb276ec9", "urn:uuid:1366234e-6403-8a62-a218-1450fb276ec9", "ra-7d1038d3bd712cbd3c37ccebba1e448bd93567b3")
            .SetName("no id, identifier or reference: content fingerprint");

        // Without identity or meta.versionId both keys come from the content fingerprint: one case per value form and time.
        var byComparator = Result();
        byComparator.Issued = null;
        byComparator.Value = new Quantity { Value = 0.50m, Comparator = Quantity.QuantityComparator.LessThan, Unit = "Units", System = "http://unitsofmeasure.org", Code = "[U]" };
        byComparator.Effective = new FhirDateTime("2026-03-02T08:00:00Z");
        byComparator.Interpretation.Add(new CodeableConcept("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "N"));
        yield return new TestCaseData(new EvaluationInput(byComparator, null, "Observation"),
            "751ff82038401dbf542960a0c152ff9a", "ra-65c249365fbcd13ed660ed99440217adc7860a64", "urn:uuid:65c24936-5fbc-813e-9660-ed99440217ad",
            "di-440217adc7860a6430f9bf5b909b53a3f3bc44e7", "urn:uuid:c7860a64-30f9-8f5b-909b-53a3f3bc44e7", "ra-5943b764802843e49d1845ab70eee85c303b7255")
            .SetName("content fingerprint: quantity with comparator, dateTime, interpretation");

        var byRatio = Result();
        byRatio.Value = new Ratio(new Quantity { Value = 1 }, new Quantity { Value = 1600, Comparator = Quantity.QuantityComparator.GreaterOrEqual });
        byRatio.Effective = new Period { Start = "2026-01-05" };
        yield return new TestCaseData(new EvaluationInput(byRatio, null, "Observation"),
            "673d80e938139014eb3f4a2cc3ca2bf0", "ra-410dd6dd85dafcf5f5fdecbdcb06fb5b7780633a", "urn:uuid:410dd6dd-85da-8cf5-b5fd-ecbdcb06fb5b",
            "di-cb06fb5b7780633a35fc999da7065478e881245c", "urn:uuid:7780633a-35fc-899d-a706-5478e881245c", "ra-5919a580c29d64f44f19ec8123f9c1273fa7987c")
            .SetName("content fingerprint: ratio titre, period");

        var byInteger = Result();
        byInteger.Value = new Integer(800);
        byInteger.Effective = new Instant(new DateTimeOffset(2026, 2, 1, 10, 30, 0, TimeSpan.FromHours(2)));
        yield return new TestCaseData(new EvaluationInput(byInteger, null, "Observation"),
            "758a131955b482310f3ed3879e856f7a", "ra-edcfa95920af1e83dc939b946f2b1c8cfa20400d", "urn:uuid:edcfa959-20af-8e83-9c93-9b946f2b1c8c",
            "di-6f2b1c8cfa20400d3ecfb8f4d6ee4dc1fd18f4f9", "urn:uuid:fa20400d-3ecf-88f4-96ee-4dc1fd18f4f9", "ra-1fce4067bb4c14a8c1f53b8593a2e6413c08168a")
            .SetName("content fingerprint: integer, instant");

        var byCode = Result();
        byCode.Value = new CodeableConcept("http://snomed.info/sct", "10828004", "Positive", "positive");
        yield return new TestCaseData(new EvaluationInput(byCode, null, "Observation"),
            "ba5e34a45b314b7789c2a1e53bb0249f", "ra-8e778b76c18272ba24ce165d56726aff63a49af7", "urn:uuid:8e778b76-c182-82ba-a4ce-165d56726aff",
            "di-56726aff63a49af77ebeed6dba584a433a4c4d98", "urn:uuid:63a49af7-7ebe-8d6d-ba58-4a433a4c4d98", "ra-769956eda37567c58421d734ceab140259a49f53")
            .SetName("content fingerprint: coded value");

        var byAbsence = Result();
        byAbsence.Status = ObservationStatus.Preliminary;
        byAbsence.Value = null;
        byAbsence.DataAbsentReason = new CodeableConcept("http://terminology.hl7.org/CodeSystem/data-absent-reason", "not-performed");
        yield return new TestCaseData(new EvaluationInput(byAbsence, null, "Observation"),
            "e2de4819df2978cb08a88980e668accb", "ra-21d1c9ff6741288a482a286e5db41aa1cc3c3ab8", "urn:uuid:21d1c9ff-6741-888a-882a-286e5db41aa1",
            "di-5db41aa1cc3c3ab85295c24908d9c448bd2c3f10", "urn:uuid:cc3c3ab8-5295-8249-88d9-c448bd2c3f10", "ra-6c2bfdedb0da9de05aebd3c3c9574277e80c6ce4")
            .SetName("content fingerprint: no value, data absent reason, preliminary");

        var byText = Result();
        byText.Value = new FhirString("positive");
        byText.ReferenceRange.Add(new Observation.ReferenceRangeComponent { Low = new Quantity(-1.5m, "U"), High = new Quantity(10.00m, "U") });
        yield return new TestCaseData(new EvaluationInput(byText, null, "Observation"),
            "b41b746305c90ac3e82583548372bdec", "ra-e3f97a513f84f840dd9c1e4a3b62e11852187708", "urn:uuid:e3f97a51-3f84-8840-9d9c-1e4a3b62e118",
            "di-3b62e118521877084fa2e8b46b89a8432fa1563a", "urn:uuid:52187708-4fa2-88b4-ab89-a8432fa1563a", "ra-dc45518e90d483c0a7a19b654568dba4d0d2e474")
            .SetName("content fingerprint: string value, negative and scaled range");
    }

    [TestCaseSource(nameof(Inputs))]
    public void Ids_stay_what_earlier_releases_made(EvaluationInput input, string series, string raId, string raUrn, string diId, string diUrn, string retractionId)
    {
        var keys = DeterministicIds.Keys(input);
        var ids = DeterministicIds.For(keys, KnowledgeVersion);
        Assert.Multiple(() =>
        {
            Assert.That(keys.Series, Is.EqualTo(series));
            Assert.That(ids.RiskAssessmentId, Is.EqualTo(raId));
            Assert.That(ids.RiskAssessmentUrn, Is.EqualTo(raUrn));
            Assert.That(ids.DetectedIssueId, Is.EqualTo(diId));
            Assert.That(ids.DetectedIssueUrn, Is.EqualTo(diUrn));
            Assert.That(DeterministicIds.For(keys, KnowledgeVersion, "retraction").RiskAssessmentId, Is.EqualTo(retractionId));
        });
    }

    [Test]
    public void Ids_are_the_same_on_every_thread()
    {
        // The hash object is reused per thread; results must not depend on which thread, or what it hashed before.
        var (input, expected) = (Inputs().Select(c => (EvaluationInput)c.Arguments[0]!).ToList(), Inputs().Select(c => (string)c.Arguments[2]!).ToList());
        var seen = new System.Collections.Concurrent.ConcurrentBag<(int, string)>();
        Parallel.For(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 4 }, n =>
        {
            int k = n % input.Count;
            seen.Add((k, DeterministicIds.For(DeterministicIds.Keys(input[k]), KnowledgeVersion).RiskAssessmentId));
        });
        Assert.That(seen.Where(s => s.Item2 != expected[s.Item1]), Is.Empty);
        Assert.That(seen, Has.Count.EqualTo(400));
    }

    private static Observation WithOrderNumber(string code, string? id = null)
    {
        var obs = Result();
        obs.Id = id;
        obs.Code = new CodeableConcept(code == "39087-2" ? "http://loinc.org" : "urn:oid:1.2.3.lab", code);
        obs.Identifier.Add(new Identifier("urn:oid:1.2.3.accession", "A-77")
        {
            Type = new CodeableConcept("http://terminology.hl7.org/CodeSystem/v2-0203", "ACSN"),
        });
        return obs;
    }

    private static string Series(Observation obs) => DeterministicIds.Keys(new EvaluationInput(obs, null, "Observation")).Series;

    [Test]
    public void Two_results_of_one_order_are_two_Observations()
    {
        // An accession number is shared by every result of the specimen: alone it would make a BTU value and a titre of
        // one order the same Observation, each superseding the other's assessment.
        Assert.That(Series(WithOrderNumber("39087-2")), Is.Not.EqualTo(Series(WithOrderNumber("MAGT"))), "different tests of one order");
        Assert.That(Series(WithOrderNumber("39087-2", "o1")), Is.Not.EqualTo(Series(WithOrderNumber("39087-2", "o2"))), "different Observation ids");

        // A corrected version of one result (same order number, same test, new value) stays the same Observation.
        var corrected = WithOrderNumber("39087-2");
        corrected.Value = new Quantity(32000, "BTU");
        Assert.That(Series(corrected), Is.EqualTo(Series(WithOrderNumber("39087-2"))));

        // The Observation's own identifier wins over an order number, wherever it is in the list.
        var own = WithOrderNumber("39087-2");
        own.Identifier.Add(new Identifier("urn:oid:1.2.3", "LAB-1"));
        var ownOnly = Result();
        ownOnly.Identifier.Add(new Identifier("urn:oid:1.2.3", "LAB-1"));
        Assert.That(Series(own), Is.EqualTo(Series(ownOnly)));
    }

    [Test]
    public void Every_field_the_interpretation_reads_changes_the_version_of_a_result_without_versionId()
    {
        static string Version(Action<Observation> change)
        {
            var obs = Result();
            obs.ReferenceRange.Add(new Observation.ReferenceRangeComponent { High = new Quantity(1500, "BTU") });
            change(obs);
            return DeterministicIds.VersionKey(obs);
        }
        string plain = Version(_ => { });
        Assert.Multiple(() =>
        {
            // "<1500 BTU" makes 1500 raised where the bare high limit does not.
            Assert.That(Version(o => o.ReferenceRange[0].Text = "<1500 BTU"), Is.Not.EqualTo(plain), "range text");
            Assert.That(Version(o => o.ReferenceRange[0].Age = new Hl7.Fhir.Model.Range { Low = new Quantity(18, "a") }), Is.Not.EqualTo(plain), "range for an age group");
            Assert.That(Version(o => o.Interpretation.Add(new CodeableConcept("urn:oid:1.2.3.local-flags", "H"))),
                Is.Not.EqualTo(Version(o => o.Interpretation.Add(new CodeableConcept("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "H")))), "flag system");
            Assert.That(Version(o => o.Interpretation.Add(new CodeableConcept { Coding = [new Coding { Code = "H" }] })),
                Is.Not.EqualTo(Version(o => o.Interpretation.Add(new CodeableConcept("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "H")))), "flag without a system");
            Assert.That(Version(o => o.Method = new CodeableConcept { Text = "ELISA" }), Is.Not.EqualTo(plain), "method");
            Assert.That(Version(o => o.Performer.Add(new ResourceReference { Display = "Central lab" })), Is.Not.EqualTo(plain), "performer");
            // A range coded in another unit than the value does not apply to it; one coded as the value does.
            Assert.That(Version(o => o.ReferenceRange[0].High!.Code = "U/mL"), Is.Not.EqualTo(Version(o => o.ReferenceRange[0].High!.Code = ((Quantity)o.Value!).Code)), "range unit code");
            Assert.That(Version(o => o.ReferenceRange[0].High!.System = "urn:oid:1.2.3.local-units"), Is.Not.EqualTo(plain), "range unit system");
            Assert.That(Version(o => o.ReferenceRange[0].High!.Code = null), Is.EqualTo(plain), "without a unit code, the range's unit text (already read) decides");
            Assert.That(Version(o => o.ReferenceRange[0].Type = new CodeableConcept("http://terminology.hl7.org/CodeSystem/referencerange-meaning", "treatment")),
                Is.Not.EqualTo(plain), "range type");
            Assert.That(Version(o => o.Interpretation.Add(new CodeableConcept { Text = "Negative" })), Is.Not.EqualTo(Version(o => o.Interpretation.Add(new CodeableConcept { Text = "Positive" }))),
                "interpretation text");
            Assert.That(Version(o => o.Interpretation.Add(new CodeableConcept { Coding = [new Coding("urn:oid:1.2.3.local-flags", "1", "Normal")] })),
                Is.Not.EqualTo(Version(o => o.Interpretation.Add(new CodeableConcept { Coding = [new Coding("urn:oid:1.2.3.local-flags", "1", "High")] }))), "display of a local flag");
            Assert.That(Version(o => o.Value = new Ratio { Numerator = new Quantity { Value = 1, Comparator = Quantity.QuantityComparator.LessThan }, Denominator = new Quantity { Value = 10 } }),
                Is.Not.EqualTo(Version(o => o.Value = new Ratio { Numerator = new Quantity { Value = 1 }, Denominator = new Quantity { Value = 10 } })), "comparator on a titre's numerator");
            // The code for positive shown as "Negative" is not read; shown as "Positive" it is.
            Assert.That(Version(o => o.Value = new CodeableConcept { Coding = [new Coding("http://snomed.info/sct", "10828004", "Negative")] }),
                Is.Not.EqualTo(Version(o => o.Value = new CodeableConcept { Coding = [new Coding("http://snomed.info/sct", "10828004", "Positive")] })), "display that contradicts a value's code");
            Assert.That(Version(o => o.Value = new CodeableConcept { Coding = [new Coding("http://snomed.info/sct", "10828004", "Positive")] }),
                Is.EqualTo(Version(o => o.Value = new CodeableConcept { Coding = [new Coding("http://snomed.info/sct", "10828004")] })), "a display that agrees changes nothing (ids as before)");
        });
    }

    private static Observation Earlier(string id, string version, decimal value, string unit = "BTU")
    {
        var obs = Result();
        obs.Id = id;
        obs.Meta = new Meta { VersionId = version };
        obs.Value = new Quantity(value, unit);
        obs.Issued = new DateTimeOffset(2025, 9, 1, 8, 0, 0, TimeSpan.Zero);
        return obs;
    }

    private static (string Ra, string? Di, string Series) Assess(params Observation[] history)
    {
        var current = Result();
        current.Id = "now";
        current.Meta = new Meta { VersionId = "1" };
        var r = Support.CoreUnderTest.Evaluator.Evaluate(new EvaluationRequest([new EvaluationInput(current, "Observation/now", "Observation")],
            history.Select((h, i) => new EvaluationInput(h, "Observation/" + h.Id, $"history[{i}]")).ToList())).Results[0];
        Assert.That(r.Outcome, Is.EqualTo(InputOutcome.Evaluated));
        return (r.RiskAssessment!.Id!, r.DetectedIssue?.Id, r.RiskAssessment.Identifier.Single(i => i.System == Support.CoreUnderTest.Evaluator.Canonical.ObservationSeriesSystem).Value!);
    }

    [Test]
    public void A_trend_computed_from_other_earlier_results_gets_other_ids()
    {
        // A later result's trend shows its earlier results: when one of those is amended, withdrawn or deleted, the
        // later result's outputs say something else, and a conditional create on unchanged ids would keep the old text.
        var alone = Assess();
        var withEarlier = Assess(Earlier("e1", "1", 12000));
        Assert.Multiple(() =>
        {
            Assert.That(withEarlier.Ra, Is.Not.EqualTo(alone.Ra), "a trend enters the ids");
            Assert.That(withEarlier.Di, Is.Not.EqualTo(alone.Di));
            Assert.That(withEarlier.Series, Is.EqualTo(alone.Series), "one result, one series: the worker supersedes by it");
            Assert.That(Assess(Earlier("e1", "1", 12000)), Is.EqualTo(withEarlier), "the same input gives the same ids");
            Assert.That(Assess(Earlier("e1", "2", 9000)).Ra, Is.Not.EqualTo(withEarlier.Ra), "the earlier result amended");
            var annotated = Earlier("e1", "2", 12000);
            annotated.Note.Add(new Annotation { Text = new Markdown("Sample re-checked.") });
            Assert.That(Assess(annotated), Is.EqualTo(withEarlier), "a new version of the earlier result that the trend shows the same: no new outputs, no new alert");
            var withdrawn = Earlier("e1", "2", 12000);
            withdrawn.Status = ObservationStatus.EnteredInError;
            Assert.That(Assess(withdrawn), Is.EqualTo(alone), "the earlier result withdrawn: no trend, the ids of the result alone");
            // Another assay's result: no trend, but a note that says it was not compared (since knowledge 2026.11.7), so ids of their own.
            var otherAssay = Assess(Earlier("e9", "1", 8, "Units"));
            Assert.That(otherAssay.Ra, Is.Not.EqualTo(alone.Ra), "another assay's result is named in a note");
            Assert.That(Assess(Earlier("e9", "1", 8, "Units")), Is.EqualTo(otherAssay), "the same input gives the same ids");
            Assert.That(Assess(Earlier("e1", "1", 12000), Earlier("e2", "1", 15000)).Ra, Is.Not.EqualTo(withEarlier.Ra), "another earlier result");
        });
    }

    [Test]
    public void Ids_with_a_trend_stay_what_this_release_made()
    {
        // Pinned like the ids above, for outputs that show a trend: the hash adds what the trend shows of each earlier
        // result (identity, date, value, reference, category) and how many it leaves out.
        var keys = DeterministicIds.Keys((EvaluationInput)Inputs().First().Arguments[0]!);
        Assert.That(DeterministicIds.For(keys, KnowledgeVersion, trendBasis: "0123abcd|2025-09-01|12000 BTU|Observation/e1|Elevated;omitted 0").RiskAssessmentId,
            Is.EqualTo("ra-8865af66ce9730088e41ce9ede16ed34d2161be4"));

        // And the trend's side of it, from a real evaluation.
        var current = Result();
        current.Id = "now";
        var earlier = Earlier("e1", "1", 12000);
        var r = Support.CoreUnderTest.Evaluator.Evaluate(new EvaluationRequest([new EvaluationInput(current, "Observation/now", "Observation")],
            [new EvaluationInput(earlier, "Observation/e1", "history[0]")])).Results[0];
        string identity = DeterministicIds.Keys(new EvaluationInput(earlier, "Observation/e1", "history[0]")).Observation;
        Assert.That(r.Interpretation!.Trend!.Basis, Is.EqualTo(identity + "|2025-09-01|12000 BTU|Observation/e1|Elevated;omitted 0"));
        Assert.That(r.RiskAssessment!.Id, Is.EqualTo(DeterministicIds.For(DeterministicIds.Keys(new EvaluationInput(current, "Observation/now", "Observation")),
            Support.CoreUnderTest.Evaluator.Knowledge.Version, trendBasis: r.Interpretation.Trend.Basis).RiskAssessmentId));
    }

    [Test]
    public void The_series_an_earlier_release_gave_an_order_numbered_result_is_still_known()
    {
        // The earlier release ignored the identifier's type: its series is that of the same result without the type.
        var typed = WithOrderNumber("39087-2", "o1");
        var untyped = WithOrderNumber("39087-2", "o1");
        untyped.Identifier[0].Type = null;
        Assert.That(DeterministicIds.EarlierReleaseSeries(new EvaluationInput(typed, null, "Observation")), Is.EqualTo(Series(untyped)));
        Assert.That(Series(typed), Is.Not.EqualTo(Series(untyped)), "the current series differs, hence the search for both");
        Assert.That(DeterministicIds.EarlierReleaseSeries(new EvaluationInput(untyped, null, "Observation")), Is.Null, "unchanged identity: nothing extra to search");
    }
}
