using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Core.Evaluation;
using MagCds.Tests.Support;

namespace MagCds.Tests.Core;

/// <summary>
/// Several versions of one result in one request (a server's history Bundle, a resent message, a withdrawal sent as
/// history): only the newest is assessed or trended, whatever changed between versions and whatever their order.
/// </summary>
public class VersionsInOneRequestTests
{
    private const string Lab = "https://lab.example/fhir";

    private static Observation Version(string id, int? version, decimal value, ObservationStatus status = ObservationStatus.Final,
        string subject = "Patient/1", string accession = "ACC-1", DateTimeOffset? lastUpdated = null, string effective = "2026-03-02T09:15:00Z")
    {
        var o = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        o.Id = id;
        o.Meta = version is null && lastUpdated is null ? null : new Meta { VersionId = version?.ToString(System.Globalization.CultureInfo.InvariantCulture), LastUpdated = lastUpdated };
        o.Status = status;
        o.Subject = new ResourceReference(subject);
        o.Identifier[0].Value = accession;
        o.Effective = new FhirDateTime(effective);
        o.Value = new Quantity { Value = value, Unit = "BTU", System = "http://unitsofmeasure.org", Code = "[arb'U]" };
        return o;
    }

    private static EvaluationInput Entry(Observation o, int i, string server = Lab) =>
        new(o, "Observation/" + o.Id, $"Bundle.entry[{i}].resource", $"{server}/Observation/{o.Id}");

    private static EvaluationResponse Evaluate(params EvaluationInput[] inputs) => CoreUnderTest.Evaluator.Evaluate(new EvaluationRequest(inputs, []));

    private static string Outcome(InputResult r) => r.Outcome switch
    {
        InputOutcome.Evaluated => "evaluated " + r.RiskAssessment!.Prediction[0].Rationale!.Split(',')[0],
        InputOutcome.Retracted => r.Issues[0].Code.Code,
        _ => string.Join(" ", r.Issues.Select(i => i.Code.Code)),
    };

    [Test]
    public void A_correction_that_changed_the_patient_supersedes_the_first_version()
    {
        // The laboratory moved the result to the right patient: the first version's patient must not keep an assessment.
        var r = Evaluate(Entry(Version("x", 2, 800, ObservationStatus.Corrected, subject: "Patient/2"), 0), Entry(Version("x", 1, 50000), 1));
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "evaluated Result: 800 BTU", "superseded-in-request" }));
    }

    [Test]
    public void A_withdrawal_that_changed_the_patient_leaves_no_assessment_of_the_withdrawn_result()
    {
        var r = Evaluate(Entry(Version("x", 2, 50000, ObservationStatus.EnteredInError, subject: "Patient/2"), 0), Entry(Version("x", 1, 50000), 1));
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "retracted", "superseded-in-request" }));
    }

    [Test]
    public void A_correction_that_changed_the_accession_number_supersedes_the_first_version()
    {
        var r = Evaluate(Entry(Version("x", 2, 5000, ObservationStatus.Amended, accession: "ACC-2"), 0), Entry(Version("x", 1, 50000), 1));
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "evaluated Result: 5000 BTU", "superseded-in-request" }));
    }

    [Test]
    public void A_version_recoded_to_another_test_is_what_the_result_now_is()
    {
        var recoded = Version("x", 2, 50000);
        recoded.Code = new CodeableConcept("http://loinc.org", "2345-7");
        var r = Evaluate(Entry(recoded, 0), Entry(Version("x", 1, 50000), 1));
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "not-anti-mag", "superseded-in-request" }));
    }

    [Test]
    public void A_withdrawal_sent_as_history_stops_the_input_being_assessed()
    {
        var old = Version("x", 1, 50000);
        var request = new EvaluationRequest([new EvaluationInput(old, "Observation/x", "Parameters.parameter[0].resource")],
            [new EvaluationInput(Version("x", 2, 50000, ObservationStatus.EnteredInError), "Observation/x", "Parameters.parameter[1].resource")]);
        var r = CoreUnderTest.Evaluator.Evaluate(request);
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "superseded-in-request" }));
        Assert.That(r.Outputs, Is.Empty);
    }

    /// <summary>
    /// An engine that searched the patient's results for the history sends the current result there too: the input
    /// is assessed (with the other results as its trend), not dropped as a copy of its own history entry, which left
    /// nothing evaluated (422) for a raised result (found by a black-box probe).
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void The_result_asked_about_is_assessed_when_its_history_holds_it_too(bool copyFromServer)
    {
        var current = Version("cur", 1, 25000);
        var copy = (Observation)current.DeepCopy();
        // The server's copy of the same version carries what the server stamps on it.
        if (copyFromServer) copy.Meta!.LastUpdated = new DateTimeOffset(2026, 3, 3, 12, 0, 0, TimeSpan.Zero);
        var older = Version("old", 1, 40000, accession: "ACC-0", effective: "2025-09-01T08:00:00Z");
        var request = new EvaluationRequest([new EvaluationInput(current, "Observation/cur", "Parameters.parameter[0].resource")],
            [new EvaluationInput(older, "Observation/old", "Parameters.parameter[1].resource"), new EvaluationInput(copy, "Observation/cur", "Parameters.parameter[2].resource")]);
        var r = CoreUnderTest.Evaluator.Evaluate(request);
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "evaluated Result: 25000 BTU" }));
        Assert.That(r.Results[0].Interpretation!.Trend!.Points.Select(p => p.Reference), Is.EqualTo(new[] { "Observation/old", "Observation/cur" }));
    }

    /// <summary>
    /// A result about its focus (a donor's, a fetus's) is not the subject's: not assessed, not in the subject's trend,
    /// and not taken as the subject's latest result by a door that looks for one (found by a black-box probe).
    /// </summary>
    [Test]
    public void A_result_about_its_focus_is_never_the_subjects()
    {
        var donors = Version("donor", 1, 90000, accession: "ACC-D", effective: "2026-05-01T08:00:00Z");
        donors.Focus.Add(new ResourceReference("Patient/donor-1"));
        var own = Version("own", 1, 4000, accession: "ACC-O", effective: "2026-01-01T08:00:00Z");
        var later = Version("later", 1, 24000, accession: "ACC-L", effective: "2026-06-01T08:00:00Z");
        var r = Evaluate(Entry(donors, 0), Entry(later, 1), Entry(own, 2));
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "about-focus", "evaluated Result: 24000 BTU", "evaluated Result: 4000 BTU" }));
        Assert.That(r.Results[1].Interpretation!.Trend!.Points.Select(p => p.Reference), Is.EqualTo(new[] { "Observation/own", "Observation/later" }));
        var latest = CoreUnderTest.Evaluator.LatestWithHistory([Entry(own, 0), Entry(donors, 1)]);
        Assert.That(latest.Inputs.Single().Observation.Id, Is.EqualTo("own"), "the donor's newer result is not the patient's latest");
    }

    /// <summary>A focus on the subject's own Condition, or on the subject, leaves the result the subject's (FHIR allows both).</summary>
    [TestCase("Condition/neuropathy-1", "evaluated Result: 24000 BTU")]
    [TestCase("Patient/1", "evaluated Result: 24000 BTU")]
    [TestCase("RelatedPerson/mother", "about-focus")]
    [TestCase(null, "about-focus")]
    public void A_focus_on_the_subjects_own_record_keeps_the_result_the_subjects(string? focus, string expected)
    {
        var obs = Version("cur", 1, 24000);
        obs.Focus.Add(focus is null ? new ResourceReference { Display = "the donor" } : new ResourceReference(focus));
        Assert.That(Evaluate(Entry(obs, 0)).Results.Select(Outcome), Is.EqualTo(new[] { expected }));
    }

    /// <summary>
    /// Conflicting metadata (the input's own copy in the history stamped later than an older version, itself stamped
    /// after the input): the input is assessed whatever the order of the history (found by a review: in one order the
    /// input was superseded by its own copy).
    /// </summary>
    [Test]
    public void The_result_asked_about_wins_over_its_history_copy_in_every_order()
    {
        var t = new DateTimeOffset(2026, 3, 3, 10, 0, 0, TimeSpan.Zero);
        var input = Version("x", 2, 25000, lastUpdated: t);
        var copy = Version("x", 2, 25000, lastUpdated: t.AddHours(2));
        var older = Version("x", 1, 800, lastUpdated: t.AddHours(1));
        foreach (var history in new[] { new[] { copy, older }, [older, copy] })
        {
            var request = new EvaluationRequest([Entry(input, 0)], [.. history.Select((h, i) => Entry(h, i + 1))]);
            Assert.That(CoreUnderTest.Evaluator.Evaluate(request).Results.Select(Outcome), Is.EqualTo(new[] { "evaluated Result: 25000 BTU" }));
        }
    }

    [Test]
    public void A_withdrawn_earlier_result_is_not_trended_even_when_its_withdrawal_carries_a_modifier()
    {
        var withdrawal = Version("old", 2, 50000, ObservationStatus.EnteredInError, effective: "2025-06-10T08:00:00Z");
        withdrawal.ModifierExtension.Add(new Extension("http://example.org/fhir/StructureDefinition/some-modifier", new FhirBoolean(true)));
        var r = Evaluate(Entry(Version("cur", null, 24000), 0), Entry(withdrawal, 1), Entry(Version("old", 1, 50000, effective: "2025-06-10T08:00:00Z"), 2));
        Assert.That(r.Results[0].Interpretation!.Trend, Is.Null, "the withdrawn 50,000 BTU is no earlier result");
    }

    [Test]
    public void The_same_id_on_two_servers_is_two_results_with_their_own_output_ids()
    {
        var a = Version("1", 1, 500);
        var b = Version("1", 1, 50000);
        var r = Evaluate(Entry(a, 0, "https://lab-a.example/fhir"), Entry(b, 1, "https://lab-b.example/fhir"));
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "evaluated Result: 500 BTU", "evaluated Result: 50000 BTU" }));
        Assert.That(r.Outputs.OfType<RiskAssessment>().Select(x => x.Id).Distinct().Count(), Is.EqualTo(2));
        Assert.That(r.Results.All(x => x.Interpretation!.Trend is null), "Patient/1 of each server is its own patient");
    }

    /// <summary>A history Bundle's DELETE entry for Observation/{id}, as the REST door reads it.</summary>
    private static Deletion Deleted(string id, int at, string? version = null, DateTimeOffset? when = null) =>
        new(id, $"{Lab}/Observation/{id}", $"Bundle.entry[{at}]", version, when);

    private static EvaluationResponse Evaluate(IReadOnlyList<Deletion> deletions, params EvaluationInput[] inputs) =>
        CoreUnderTest.Evaluator.Evaluate(new EvaluationRequest(inputs, []) { Deletions = deletions });

    [Test]
    public void A_deleted_result_gets_only_its_retraction_and_leaves_the_trends()
    {
        // A history Bundle: result x in two versions, then deleted; a later result of the same patient.
        var later = Version("later", 1, 24000, accession: "ACC-2", effective: "2026-06-01T08:00:00Z");
        var r = Evaluate([Deleted("x", 0, "3")], Entry(Version("x", 2, 50000, ObservationStatus.Corrected), 1), Entry(Version("x", 1, 800), 2), Entry(later, 3));
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "deleted", "superseded-in-request", "evaluated Result: 24000 BTU" }));
        var retraction = r.Results[0].RiskAssessment!;
        Assert.That(retraction.Status, Is.EqualTo(ObservationStatus.EnteredInError));
        Assert.That(retraction.Note.Single().Text, Does.StartWith("This Observation was deleted from its FHIR server."));
        Assert.That(r.Results[1].Issues.Single().Message, Does.Contain("deleted from its server (Bundle.entry[0])"));
        Assert.That(r.Results[2].Interpretation!.Trend, Is.Null, "the deleted result is no earlier result");
        Assert.That(r.Outputs.OfType<DetectedIssue>().Select(d => d.Implicated[0].Reference), Is.EqualTo(new[] { "Observation/later" }));
    }

    [Test]
    public void A_result_created_again_after_its_deletion_is_assessed()
    {
        // Deleted as version 2, then written again as version 3: the deletion is history.
        var t = new DateTimeOffset(2026, 3, 4, 10, 0, 0, TimeSpan.Zero);
        var byVersion = Evaluate([Deleted("x", 0, "2")], Entry(Version("x", 3, 800), 1), Entry(Version("x", 1, 50000), 2));
        Assert.That(byVersion.Results.Select(Outcome), Is.EqualTo(new[] { "evaluated Result: 800 BTU", "superseded-in-request" }));
        var byTime = Evaluate([Deleted("x", 0, when: t)], Entry(Version("x", null, 800, lastUpdated: t.AddHours(1)), 1), Entry(Version("x", null, 50000, lastUpdated: t.AddHours(-1)), 2));
        Assert.That(byTime.Results.Select(Outcome), Is.EqualTo(new[] { "evaluated Result: 800 BTU", "superseded-in-request" }));
        var before = Evaluate([Deleted("x", 0, when: t)], Entry(Version("x", null, 800, lastUpdated: t.AddHours(-1)), 1));
        Assert.That(before.Results.Select(Outcome), Is.EqualTo(new[] { "deleted" }), "written before the deletion: withdrawn");
        // Last-Modified has no fraction of a second: the last version, stamped within the deletion's second, is not newer.
        var sameSecond = Evaluate([Deleted("x", 0, when: t)], Entry(Version("x", null, 800, lastUpdated: t.AddMilliseconds(400)), 1));
        Assert.That(sameSecond.Results.Select(Outcome), Is.EqualTo(new[] { "deleted" }));
        var byVersionFirst = Evaluate([Deleted("x", 0, "3", t)], Entry(Version("x", 2, 800, lastUpdated: t.AddHours(1)), 1));
        Assert.That(byVersionFirst.Results.Select(Outcome), Is.EqualTo(new[] { "deleted" }), "numeric versions decide before times");
    }

    [Test]
    public void A_transaction_DELETE_entry_that_carries_the_Observation_withdraws_it()
    {
        // Invalid in a transaction (a DELETE's resource is ignored there), but it says which result is deleted.
        var bundle = new Bundle
        {
            Type = Bundle.BundleType.Transaction,
            Entry = [new Bundle.EntryComponent { FullUrl = Lab + "/Observation/x", Resource = Version("x", 1, 50000), Request = new Bundle.RequestComponent { Method = Bundle.HTTPVerb.DELETE, Url = "Observation/x" } }],
        };
        var r = CoreUnderTest.Evaluator.Evaluate(MagCds.Service.FhirRest.MagEvaluateOperation.ToRequest(new MagCds.Service.FhirRest.ParsedBody(bundle, new Dictionary<int, string>())).Request);
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "deleted" }), "not assessed as if it were created");
    }

    [Test]
    public void A_deletion_of_a_result_not_in_the_request_says_it_cannot_retract()
    {
        var r = Evaluate([Deleted("gone", 0)], Entry(Version("x", 1, 800), 1));
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "evaluated Result: 800 BTU" }));
        Assert.That(r.RequestIssues.Single().Code.Code, Is.EqualTo("deleted"));
        Assert.That(r.RequestIssues.Single().Location, Is.EqualTo("Bundle.entry[0]"));
    }

    [Test]
    public void A_deletion_that_names_no_server_among_entries_of_several_leaves_their_results_alone()
    {
        var r = Evaluate([new Deletion("x", null, "Bundle.entry[0]")], Entry(Version("x", 1, 800), 1, "https://lab-a.example/fhir"), Entry(Version("x", 1, 900), 2, "https://lab-b.example/fhir"));
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "evaluated Result: 800 BTU", "evaluated Result: 900 BTU" }), "which server's x was deleted cannot be told");
        var one = Evaluate([new Deletion("x", null, "Bundle.entry[0]")], Entry(Version("x", 1, 800), 1));
        Assert.That(one.Results.Select(Outcome), Is.EqualTo(new[] { "deleted" }), "entries of one server: the deletion is of that server");
    }

    [Test]
    public void A_deletion_on_another_server_leaves_a_result_of_the_same_id_alone()
    {
        var r = Evaluate([new Deletion("x", "https://lab-b.example/fhir/Observation/x", "Bundle.entry[0]")], Entry(Version("x", 1, 800), 1));
        Assert.That(r.Results.Select(Outcome), Is.EqualTo(new[] { "evaluated Result: 800 BTU" }));
    }

    private static IEnumerable<TestCaseData> Conflicting()
    {
        // Metadata that disagrees (lastUpdated says A, versionId says C) and copies that share a versionId: the
        // newest must be the same one in every order.
        var t = new DateTimeOffset(2026, 3, 3, 10, 0, 0, TimeSpan.Zero);
        yield return new TestCaseData((object)new[] { Version("x", 1, 500, lastUpdated: t.AddHours(1)), Version("x", 2, 20000), Version("x", 3, 50000, lastUpdated: t) })
            .SetArgDisplayNames("lastUpdated and versionId disagree");
        yield return new TestCaseData((object)new[] { Version("x", 1, 500), Version("x", 1, 50000) }).SetArgDisplayNames("two copies share versionId 1");
    }

    [TestCaseSource(nameof(Conflicting))]
    public void The_version_assessed_does_not_depend_on_the_order_of_the_request(Observation[] versions)
    {
        static IEnumerable<IEnumerable<T>> Permutations<T>(IReadOnlyList<T> items) => items.Count <= 1 ? [items]
            : items.SelectMany((item, i) => Permutations([.. items.Where((_, j) => j != i)]).Select(rest => rest.Prepend(item)));
        var answers = Permutations(versions).Select(order =>
        {
            var r = Evaluate([.. order.Select((o, i) => Entry(o, i))]);
            return string.Join("\n", r.Outputs.Select(o => o.ToJson()));
        }).Distinct().ToList();
        Assert.That(answers, Has.Count.EqualTo(1));
    }
}
