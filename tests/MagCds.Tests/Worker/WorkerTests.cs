using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Core;
using MagCds.Core.Evaluation;
using MagCds.Service.Storage;
using MagCds.Tests.Support;
using static MagCds.Tests.Support.WorkerHarness;

namespace MagCds.Tests.Worker;

/// <summary>
/// The FHIR server door end to end, against the real FHIR test server and a real store of each kind: results are
/// found (polling, notifications), assessed, and written back exactly once; amendments supersede, entered-in-error
/// withdraws; failures are retried or dead-lettered; a restart loses nothing.
/// </summary>
[TestFixture(StoreProvider.Sqlite)]
[TestFixture(StoreProvider.Postgres)]
public sealed class WorkerTests(StoreProvider provider) : WorkerTestBase(provider)
{
    private static bool Current(RiskAssessment r) => r.Status is not (ObservationStatus.Cancelled or ObservationStatus.EnteredInError);
    private static bool Current(DetectedIssue d) => d.Status is not (ObservationStatus.Cancelled or ObservationStatus.EnteredInError);

    /// <summary>A result of patient p1 taken on the first of that month (reported the next day).</summary>
    private static Observation At(string accession, decimal value, int month, int year = 2025)
    {
        var o = Result("p1", value, accession);
        o.Effective = new FhirDateTime(new DateTimeOffset(year, month, 1, 8, 0, 0, TimeSpan.Zero));
        o.Issued = new DateTimeOffset(year, month, 2, 8, 0, 0, TimeSpan.Zero);
        return o;
    }

    private static string Ref(Observation o) => "Observation/" + o.Id;

    /// <summary>The last note of a RiskAssessment (where a supersession or withdrawal says why).</summary>
    private static string RiskAssessmentNote(RiskAssessment r) => r.Note.LastOrDefault()?.Text ?? "";

    /// <summary>The current RiskAssessment of a result (exactly one).</summary>
    private async Task<RiskAssessment> CurrentOf(Observation o) => (await H.AllAsync<RiskAssessment>()).Single(r => Current(r) && r.Basis[0].Reference == Ref(o));

    [Test]
    public async Task Polling_pages_through_new_results_and_writes_one_assessment_each()
    {
        // 25 results over 10-result pages, every third one raised (value 23.5 Units is above 0.1–10 Units).
        var seeded = new List<Observation>();
        for (int i = 0; i < 25; i++) seeded.Add(await Fhir.SeedAsync(Result($"p{i}", i % 3 == 0 ? 23.5m : 4m, $"ACC-{i}")));
        var other = TestFiles.Resource<Observation>("Observation-wrong-code.json");
        other.Id = null;
        await Fhir.SeedAsync(other);

        await H.StartAsync();
        await H.DrainedAsync(25);

        var ras = await H.AllAsync<RiskAssessment>();
        var dis = await H.AllAsync<DetectedIssue>();
        Assert.That(ras.Select(r => r.Basis[0].Reference).Order(), Is.EqualTo(seeded.Select(o => "Observation/" + o.Id).Order()), "one RiskAssessment per result");
        Assert.That(dis, Has.Count.EqualTo(9), "a DetectedIssue for each raised result");
        Assert.That(ras.All(r => r.Status == ObservationStatus.Final && Current(r)));
        var requests = await Fhir.RequestsAsync();
        Assert.That(requests.Any(r => r.Url.Contains("_lastUpdated=gt", StringComparison.Ordinal) && r.Url.Contains("_sort=_lastUpdated", StringComparison.Ordinal)));
        Assert.That(requests.Any(r => r.Url.Contains("_offset=10", StringComparison.Ordinal)), "the next links were followed");
    }

    [Test]
    public async Task With_polling_off_and_no_start_date_the_first_poll_asked_for_finds_results_since_the_start()
    {
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0", ["MagCds:Worker:PollFrom"] = "" });
        await WaitUntilAsync(async () => (await H.Client.GetFromJsonAsync<System.Text.Json.JsonElement>("/admin/worker")).GetProperty("pollCursor").ValueKind == System.Text.Json.JsonValueKind.String,
            "the worker has taken its starting point");
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));

        // A classic rest-hook notification without a body asks for a poll; it is the first poll this store ever runs.
        using (var req = new HttpRequestMessage(HttpMethod.Post, "/worker/notifications"))
        {
            req.Headers.Add("X-MagCds-Secret", Secret);
            using var resp = await H.Client.SendAsync(req);
            Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Count == 1, "the result written after the start is found by that poll");
        Assert.That((await H.AllAsync<RiskAssessment>())[0].Basis[0].Reference, Is.EqualTo("Observation/" + obs.Id));
    }

    [Test]
    public async Task A_server_whose_clock_runs_behind_still_has_results_written_after_the_first_start_found()
    {
        // The server stamps lastUpdated a minute behind this machine: a first cursor from MagCds's own clock would lie
        // a minute after the server's stamps, and every poll would ask for results "after" it and get none.
        await Fhir.QuirksAsync(clockOffset: TimeSpan.FromMinutes(-1));
        try
        {
            await H.StartAsync(new() { ["MagCds:Worker:PollFrom"] = "" });
            await WaitUntilAsync(async () => (await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker")).GetProperty("pollCursor").ValueKind == JsonValueKind.String,
                "the worker has taken its starting point");
            var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
            Assert.That(obs.Meta!.LastUpdated, Is.LessThan(DateTimeOffset.UtcNow - TimeSpan.FromSeconds(50)), "the server's stamp runs behind");
            await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Count == 1, "the result written after the start is found by polling");
            Assert.That((await H.AllAsync<RiskAssessment>())[0].Basis[0].Reference, Is.EqualTo("Observation/" + obs.Id));
        }
        finally { await Fhir.QuirksAsync(); }
    }

    [Test]
    public async Task A_server_whose_clock_runs_behind_keeps_the_poll_overlap_while_its_newest_write_is_recent()
    {
        // By this machine's clock the newest write looks a minute old, so the poll would drop its overlap at once and
        // miss a write the server makes visible late; by the server's clock (its Date header) it is seconds old.
        await Fhir.QuirksAsync(clockOffset: TimeSpan.FromMinutes(-1));
        try
        {
            var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
            await H.StartAsync();
            await H.DrainedAsync(1);
            var stamp = obs.Meta!.LastUpdated!.Value;
            string? Bound(FhirTestServerRequest r) =>
                System.Text.RegularExpressions.Regex.Match(r.Url, "_lastUpdated=gt([^&]+)") is { Success: true } m ? Uri.UnescapeDataString(m.Groups[1].Value) : null;
            // The polls after the one that saw the result start from its stamp (the cursor), less the overlap or not.
            IReadOnlyList<string> later = [];
            await WaitUntilAsync(async () =>
            {
                later = [.. (await Fhir.RequestsAsync()).Select(Bound).OfType<string>().Where(b => string.CompareOrdinal(b, "2001") > 0)];
                return later.Count > 0;
            }, "a poll after the cursor moved");
            Assert.That(later[0], Is.EqualTo(MagCds.Service.Worker.Poller.Format(stamp - TimeSpan.FromSeconds(5))), "the next poll still reaches back 5 s");
        }
        finally { await Fhir.QuirksAsync(); }
    }

    [Test]
    public async Task A_server_that_ignores_lastUpdated_does_not_get_old_results_assessed_as_new()
    {
        // R4 lets a server skip a search parameter it does not support; then a poll is answered with everything.
        var old = await Fhir.SeedAsync(Result("p-old", 23.5m, "ACC-OLD"));
        var cursor = old.Meta!.LastUpdated!.Value + TimeSpan.FromMilliseconds(500);
        await Task.Delay(600); // the new result is stamped after the cursor
        var fresh = await Fhir.SeedAsync(Result("p-new", 23.5m, "ACC-NEW"));
        Assert.That(fresh.Meta!.LastUpdated, Is.GreaterThan(cursor));
        await Fhir.QuirksAsync(ignoreLastUpdated: true);
        try
        {
            // The first poll reaches back 5 s before PollFrom: PollFrom is set so that its bound falls between the two.
            await H.StartAsync(new() { ["MagCds:Worker:PollFrom"] = MagCds.Service.Worker.Poller.Format(cursor + TimeSpan.FromSeconds(5)) });
            await WaitUntilAsync(() => Task.FromResult(H.Service!.Logs.Lines.Any(l => l.Contains("\"Name\":\"OlderThanAsked\"", StringComparison.Ordinal))),
                "the poll saw the old result and left it");
            await H.DrainedAsync(1);
            var ras = await H.AllAsync<RiskAssessment>();
            Assert.That(ras.Select(r => r.Basis[0].Reference), Is.EqualTo(new[] { "Observation/" + fresh.Id }));
        }
        finally { await Fhir.QuirksAsync(); }
    }

    [Test]
    public async Task A_server_that_does_not_sort_still_gives_the_trend_the_latest_earlier_results()
    {
        // Written oldest first: a server that skips _sort returns them in that order, so its first page holds the oldest.
        var earlier = new List<Observation>();
        for (int i = 0; i < 4; i++) earlier.Add(await Fhir.SeedAsync(At($"ACC-E{i}", 5m + i, 1 + i)));
        var current = await Fhir.SeedAsync(At("ACC-NOW", 23.5m, 3, year: 2026));
        await Fhir.QuirksAsync(ignoreSort: true);
        try
        {
            await H.StartAsync(new() { ["MagCds:Worker:HistoryCount"] = "2" });
            await H.DrainedAsync(5);
            var ra = (await H.AllAsync<RiskAssessment>()).Single(r => r.Basis[0].Reference == "Observation/" + current.Id);
            Assert.That(ra.Basis.Skip(1).Select(b => b.Reference).Order(),
                Is.EqualTo(new[] { earlier[2], earlier[3] }.Select(o => "Observation/" + o.Id).Order()), "the two most recent earlier results");
        }
        finally { await Fhir.QuirksAsync(); }
    }

    /// <summary>
    /// A patient with more earlier results than either door reads: the CDS Hooks card's "Record this assessment"
    /// suggestion carries the outputs the worker wrote for the same latest result (the same identifiers, on which the
    /// worker's conditional create matches), whether the hook's
    /// results come from the FHIR server or from a prefetch that holds them all. Before, the worker read 20 earlier
    /// results and the card 19 (or, from such a prefetch, the first and 19 recent), so recording the card's suggestion
    /// added a second assessment beside the worker's.
    /// </summary>
    [Test]
    public async Task A_card_for_a_long_history_suggests_the_outputs_the_worker_wrote()
    {
        var all = new List<Observation>();
        for (int i = 0; i < 25; i++) all.Add(await Fhir.SeedAsync(At($"ACC-L{i}", 2m + i % 5, 1 + i % 12, year: 2020 + i / 12)));
        var latest = await Fhir.SeedAsync(At("ACC-LATEST", 23.5m, 6, year: 2026));
        all.Add(latest);
        await H.StartAsync(new() { ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true", ["MagCds:CdsHooks:AllowInsecureFhirServer"] = "true" });
        await H.DrainedAsync(26);
        var ra = await CurrentOf(latest);
        var di = (await H.AllAsync<DetectedIssue>()).Single(d => Current(d) && d.Implicated[0].Reference == Ref(latest));
        Assert.That(ra.Basis, Has.Count.EqualTo(21), "the latest result and the 20 earlier ones the worker reads");

        var fromServer = CdsKit.PatientView("p1", null, Fhir.BaseUrl, includeResultsKey: false);
        var fromPrefetch = CdsKit.PatientView("p1", all.AsEnumerable().Reverse());
        foreach (var (how, body) in new[] { ("from the FHIR server", fromServer), ("from a prefetch of all 26", fromPrefetch) })
        {
            using var resp = await H.Client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body, null));
            string json = await resp.Content.ReadAsStringAsync();
            Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), json);
            var ids = JsonDocument.Parse(json).RootElement.GetProperty("cards")[0].GetProperty("suggestions")[0].GetProperty("actions")
                .EnumerateArray().Select(a => a.GetProperty("resource").GetProperty("identifier")[0].GetProperty("value").GetString()).ToList();
            Assert.That(ids, Is.EqualTo(new[] { ra.Identifier[0].Value, di.Identifier[0].Value }), how);
        }
    }

    /// <summary>
    /// An older result amended after later ones arrived gets its own earlier results as its trend, not the patient's
    /// most recent ones (all later than itself, which left it with no trend: found by a black-box probe).
    /// </summary>
    [Test]
    public async Task An_amended_older_result_is_trended_against_the_results_before_it()
    {
        var first = await Fhir.SeedAsync(At("ACC-0", 5m, 1));
        var older = await Fhir.SeedAsync(At("ACC-1", 23.5m, 2));
        await Fhir.SeedAsync(At("ACC-2", 30m, 3));
        await Fhir.SeedAsync(At("ACC-3", 40m, 4));
        await H.StartAsync(new() { ["MagCds:Worker:HistoryCount"] = "2" });
        await H.DrainedAsync(4);

        older.Status = ObservationStatus.Amended;
        ((Quantity)older.Value!).Value = 25m;
        await Fhir.Client.UpdateAsync(older);
        // Seven assessments in all: the amended result, then the two later ones whose trends show it. (Waiting for a
        // count of five raced with the two: on a fast server they were written before the count was read.)
        await H.DrainedAsync(7);
        Assert.That(await H.AllAsync<RiskAssessment>(), Has.Count.EqualTo(7));
        var ra = (await H.AllAsync<RiskAssessment>()).Single(r => Current(r) && r.Basis[0].Reference == "Observation/" + older.Id);
        Assert.That(ra.Basis.Select(b => b.Reference), Is.EqualTo(new[] { "Observation/" + older.Id, "Observation/" + first.Id }), "its trend: the result before it");
    }

    /// <summary>
    /// A later result's outputs show its earlier results in their trend. When one of those is amended, withdrawn or
    /// deleted, the later results are assessed again, and their outputs that show it as it was are superseded: a
    /// clinician never reads a withdrawn value in a current trend (found left open by a review).
    /// </summary>
    [TestCase("amended")]
    [TestCase("entered-in-error")]
    [TestCase("deleted")]
    public async Task A_change_to_an_earlier_result_reaches_the_trends_of_the_later_ones(string change)
    {
        var first = await Fhir.SeedAsync(At("ACC-0", 5m, 1));
        var second = await Fhir.SeedAsync(At("ACC-1", 23.5m, 2));
        var third = await Fhir.SeedAsync(At("ACC-2", 30m, 3));
        var other = await Fhir.SeedAsync(Result("p2", 40m, "ACC-9"));
        await H.StartAsync();
        await H.DrainedAsync(4);
        Assert.That((await CurrentOf(third)).Basis.Select(b => b.Reference), Is.EqualTo(new[] { Ref(third), Ref(first), Ref(second) }), "the trend before the change");
        var otherBefore = await CurrentOf(other);

        switch (change)
        {
            case "amended":
                first.Status = ObservationStatus.Amended;
                ((Quantity)first.Value!).Value = 7.25m;
                await Fhir.Client.UpdateAsync(first);
                break;
            case "entered-in-error":
                first.Status = ObservationStatus.EnteredInError;
                await Fhir.Client.UpdateAsync(first);
                break;
            default:
                await Fhir.Client.DeleteAsync(first);
                using (await PutNotificationAsync(first)) { }
                break;
        }
        // The changed result, then the two later ones, each assessed again.
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Count(r => !Current(r)) >= 3, "the earlier outputs are withdrawn");
        await H.DrainedAsync(7);

        var ras = await H.AllAsync<RiskAssessment>();
        var dis = await H.AllAsync<DetectedIssue>();
        var third2 = await CurrentOf(third);
        var second2 = await CurrentOf(second);
        var otherAfter = await CurrentOf(other);
        Assert.Multiple(() =>
        {
            foreach (var o in new[] { second, third, other })
            {
                Assert.That(ras.Count(r => Current(r) && r.Basis[0].Reference == Ref(o)), Is.EqualTo(1), $"one current RiskAssessment of {o.Identifier[0].Value}");
                Assert.That(dis.Count(d => Current(d) && d.Implicated[0].Reference == Ref(o)), Is.EqualTo(1), $"one current DetectedIssue of {o.Identifier[0].Value}");
            }
            if (change == "amended")
            {
                Assert.That(third2.Basis.Select(b => b.Reference), Is.EqualTo(new[] { Ref(third), Ref(first), Ref(second) }));
                Assert.That(third2.Note.Select(n => n.Text!.ToString()), Has.Some.Contains("7.25"), "the trend shows the amended value");
                Assert.That(ras.Where(r => !Current(r) && r.Basis[0].Reference == Ref(third)).Single().Note.Last().Text!.ToString(),
                    Does.StartWith("Superseded").And.Contains("earlier results its trend shows"));
            }
            else
            {
                Assert.That(third2.Basis.Select(b => b.Reference), Is.EqualTo(new[] { Ref(third), Ref(second) }), "the withdrawn result is no longer in the trend");
                Assert.That(second2.Basis.Select(b => b.Reference), Is.EqualTo(new[] { Ref(second) }), "its only earlier result withdrawn: no trend");
                Assert.That(ras.Where(Current).SelectMany(r => r.Basis).Select(b => b.Reference), Has.None.EqualTo(Ref(first)));
            }
            Assert.That(otherAfter.Id, Is.EqualTo(otherBefore.Id), "another patient's result is left alone");
        });
    }

    /// <summary>
    /// On a server that keeps no version history, the earlier result is amended, or moved to another patient: the
    /// later result (dated by <c>issued</c> alone, which a FHIR date search does not cover) shows the amended value, or
    /// no longer shows the result in its trend.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task A_change_on_a_server_without_history_reaches_a_later_result_dated_by_issued(bool movedToAnotherPatient)
    {
        var moved = Result("p1", 5m, "ACC-1");
        moved.Effective = new FhirDateTime(new DateTimeOffset(2025, 1, 1, 8, 0, 0, TimeSpan.Zero));
        moved.Issued = new DateTimeOffset(2025, 1, 2, 8, 0, 0, TimeSpan.Zero);
        moved = await Fhir.SeedAsync(moved);
        var later = Result("p1", 23.5m, "ACC-2");
        later.Effective = null;
        later.Issued = new DateTimeOffset(2025, 3, 2, 8, 0, 0, TimeSpan.Zero);
        later = await Fhir.SeedAsync(later);
        await H.StartAsync();
        await H.DrainedAsync(2);
        Assert.That((await CurrentOf(later)).Basis.Select(b => b.Reference), Is.EqualTo(new[] { Ref(later), Ref(moved) }), "the trend before the correction");

        await InjectAsync(404, 100, "GET", $"/fhir/R4/Observation/{moved.Id}/_history");
        moved.Status = ObservationStatus.Corrected;
        if (movedToAnotherPatient) moved.Subject = new ResourceReference("Patient/p2");
        else ((Quantity)moved.Value!).Value = 7.25m;
        await Fhir.Client.UpdateAsync(moved);
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Count(r => !Current(r)) == 2, "both earlier assessments are superseded");
        await H.DrainedAsync(4);
        var now = await CurrentOf(later);
        if (movedToAnotherPatient)
        {
            Assert.That(now.Basis.Select(b => b.Reference), Is.EqualTo(new[] { Ref(later) }), "another patient's result is not in the trend");
            Assert.That((await CurrentOf(moved)).Subject!.Reference, Is.EqualTo("Patient/p2"));
        }
        else Assert.That(now.Note.Select(n => n.Text!.ToString()), Has.Some.Contains("7.25"), "the trend shows the amended value");
    }

    /// <summary>
    /// A result that reaches the server after later ones were assessed (a send-out result, a lab's backlog) belongs in
    /// their trends: they are assessed again and get it. A result that arrives in order costs no extra search.
    /// </summary>
    [Test]
    public async Task A_result_that_arrives_after_later_ones_enters_their_trends()
    {
        var march = await Fhir.SeedAsync(At("ACC-3", 23.5m, 3));
        var april = await Fhir.SeedAsync(At("ACC-4", 30m, 4));
        await H.StartAsync();
        await H.DrainedAsync(2);
        Assert.That((await CurrentOf(march)).Basis, Has.Count.EqualTo(1), "no earlier result yet");
        var may = await Fhir.SeedAsync(At("ACC-5", 35m, 5)); // in order
        await H.DrainedAsync(3);
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.That((await Fhir.RequestsAsync()).Where(r => r.Url.Contains("date=", StringComparison.Ordinal)), Is.Empty,
            "a result in order: one search for its history, none for later results");
        Assert.That((await H.AllAsync<RiskAssessment>()).All(Current));

        var february = await Fhir.SeedAsync(At("ACC-2", 12m, 2)); // late
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Count(r => !Current(r)) == 3, "the three later assessments are superseded");
        await H.DrainedAsync(7);
        var (feb2, march2, may2) = (await CurrentOf(february), await CurrentOf(march), await CurrentOf(may));
        Assert.Multiple(() =>
        {
            Assert.That(feb2.Basis, Has.Count.EqualTo(1), "the late result's own trend: nothing before it");
            Assert.That(march2.Basis.Select(b => b.Reference), Is.EqualTo(new[] { Ref(march), Ref(february) }));
            Assert.That(may2.Basis.Select(b => b.Reference), Is.EqualTo(new[] { Ref(may), Ref(february), Ref(march), Ref(april) }));
        });
    }

    /// <summary>
    /// A change is passed on only to results dated strictly after it: two amended results of the same time would
    /// otherwise queue each other for ever (a server's "gt" may match an equal time, and this test server's does).
    /// A change already passed on is not passed on again when the same version is assessed again.
    /// </summary>
    [Test]
    public async Task Amended_results_of_the_same_time_do_not_queue_each_other_for_ever()
    {
        var a = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        var b = await Fhir.SeedAsync(Result("p1", 30m, "ACC-2"));
        var laterOne = Result("p1", 40m, "ACC-3");
        laterOne.Effective = new FhirDateTime(((FhirDateTime)a.Effective!).ToDateTimeOffset(TimeSpan.Zero).AddMonths(1));
        var c = await Fhir.SeedAsync(laterOne);
        await H.StartAsync();
        await H.DrainedAsync(3);
        foreach (var o in new[] { a, b })
        {
            o.Status = ObservationStatus.Amended;
            ((Quantity)o.Value!).Value += 1m;
            await Fhir.Client.UpdateAsync(o);
        }
        // Both amended results, and the later one (once or twice, as the two changes reach it).
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Count(r => !Current(r)) >= 3, "the three earlier assessments are superseded");
        await H.DrainedAsync(6);
        await Task.Delay(TimeSpan.FromSeconds(3));
        var before = (await H.QueueAsync()).GetProperty("done").GetInt64();
        Assert.That(before, Is.LessThanOrEqualTo(7), "nothing queued for ever");

        using (await PutNotificationAsync(a)) { } // the same version again: assessed, its change not passed on again
        await H.DrainedAsync((int)before + 1);
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.That((await H.QueueAsync()).GetProperty("done").GetInt64(), Is.EqualTo(before + 1), "only the redelivered result was assessed");
        var current = (await H.AllAsync<RiskAssessment>()).Where(Current).ToList();
        Assert.That(current.Select(r => r.Basis[0].Reference).Order(), Is.EqualTo(new[] { a, b, c }.Select(o => "Observation/" + o.Id).Order()));
    }

    /// <summary>
    /// A server that keeps no versions: an amended status is all that says a result changed, and no version can be
    /// recorded as passed on, so only the strictly-later rule keeps two amended results of one time from queueing each
    /// other for ever. The later result still gets the amended values in its trend.
    /// </summary>
    [Test]
    public async Task On_a_server_without_versions_amended_results_of_the_same_time_do_not_queue_each_other_for_ever()
    {
        await Fhir.QuirksAsync(noVersions: true);
        try
        {
            var a = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1", ObservationStatus.Amended));
            var b = await Fhir.SeedAsync(Result("p1", 30m, "ACC-2", ObservationStatus.Amended));
            Assert.That(a.Meta?.VersionId, Is.Null, "the quirk is on");
            var laterOne = Result("p1", 40m, "ACC-3");
            laterOne.Effective = new FhirDateTime(((FhirDateTime)a.Effective!).ToDateTimeOffset(TimeSpan.Zero).AddMonths(1));
            var c = await Fhir.SeedAsync(laterOne);
            await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "3600" }); // one poll: each result queued once
            await H.DrainedAsync(3);
            await Task.Delay(TimeSpan.FromSeconds(3));
            long done = (await H.QueueAsync()).GetProperty("done").GetInt64();
            Assert.That(done, Is.InRange(3, 5), "the three results, and the later one again for each amended one at most");
            var current = (await H.AllAsync<RiskAssessment>()).Where(Current).ToList();
            Assert.That(current.Single(r => r.Basis[0].Reference == "Observation/" + c.Id).Basis.Skip(1).Select(r => r.Reference).Order(),
                Is.EqualTo(new[] { a, b }.Select(o => "Observation/" + o.Id).Order()));
            Assert.That(current, Has.Count.EqualTo(3));
        }
        finally { await Fhir.QuirksAsync(); }
    }

    [Test]
    public async Task A_server_whose_pages_link_to_themselves_is_read_once_round_and_the_work_done()
    {
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await Fhir.QuirksAsync(endlessPaging: "self");
        await H.StartAsync();
        await H.DrainedAsync(1);
        // The searches for the Observation's earlier outputs (a poll's own search is repeated by every poll).
        var searches = (await Fhir.RequestsAsync()).Where(r => r.Method == "GET" && (r.Url.Contains("/RiskAssessment?", StringComparison.Ordinal) || r.Url.Contains("/DetectedIssue?", StringComparison.Ordinal))).ToList();
        Assert.That(searches, Is.Not.Empty);
        await Fhir.QuirksAsync(); // for this test's own reading of the results
        Assert.That((await H.AllAsync<RiskAssessment>()).Single().Basis[0].Reference, Is.EqualTo("Observation/" + obs.Id));
        Assert.That(searches.GroupBy(r => r.Url).Max(g => g.Count()), Is.LessThanOrEqualTo(4), "each search followed its looping next link once, not for ever");
    }

    [Test]
    public async Task A_server_whose_paging_never_ends_gets_the_item_dead_lettered_not_a_worker_slot_taken_for_good()
    {
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await Fhir.QuirksAsync(endlessPaging: "onward");
        using (var resp = await PutNotificationAsync(obs)) Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await WaitUntilAsync(async () => (await H.QueueAsync()).GetProperty("deadLetters").GetInt64() == 1, "the item is dead-lettered", 60);
        var dead = (await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker/dead-letters")).EnumerateArray().Single();
        Assert.That(dead.GetProperty("reason").GetString(), Is.EqualTo("too-many-pages"));
        await Fhir.QuirksAsync(); // for this test's own reading of the results
        Assert.That(await H.AllAsync<RiskAssessment>(), Is.Empty);
    }

    [Test]
    public async Task A_result_the_server_sends_with_half_a_surrogate_pair_is_a_dead_letter_saying_the_answer_was_unreadable()
    {
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        // Free text cut in the middle of an emoji: JSON can escape half a UTF-16 pair, no .NET string can hold it.
        string cut = obs.ToJson().Replace("\"status\":\"final\"", "\"status\":\"final\",\"note\":[{\"text\":\"cut \\ud83d\"}]", StringComparison.Ordinal);
        Assert.That(cut, Does.Contain("\\ud83d"));
        await Fhir.FaultAsync(200, 100, "GET", "/fhir/R4/Observation/" + obs.Id, rawBody: cut);
        using (var resp = await PutNotificationAsync(obs)) Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await WaitUntilAsync(async () => (await H.QueueAsync()).GetProperty("deadLetters").GetInt64() == 1, "the item is dead-lettered", 60);
        var dead = (await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker/dead-letters")).EnumerateArray().Single();
        Assert.That(dead.GetProperty("reason").GetString(), Is.EqualTo("unreadable-response"), "not an internal error");
    }

    [Test]
    public async Task A_read_the_server_redirects_elsewhere_is_not_followed_but_dead_lettered_with_its_status()
    {
        // Found by a security probe: the worker followed a redirect to another address and assessed what it found
        // there as the watched server's Observation. Here the redirect points at another patient's result.
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        var other = await Fhir.SeedAsync(Result("p2", 3m, "ACC-2"));
        await Fhir.FaultAsync(302, 100, "GET", "/fhir/R4/Observation/" + obs.Id, location: Fhir.BaseUrl + "/Observation/" + other.Id);
        using (var resp = await PutNotificationAsync(obs)) Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        await WaitUntilAsync(async () => (await H.QueueAsync()).GetProperty("deadLetters").GetInt64() == 1, "the item is dead-lettered", 60);
        var dead = (await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker/dead-letters")).EnumerateArray().Single();
        Assert.That(dead.GetProperty("reason").GetString(), Is.EqualTo("http-302"));
        Assert.That((await Fhir.RequestsAsync()).Where(r => r.Url.Contains("/Observation/" + other.Id, StringComparison.Ordinal)), Is.Empty,
            "the redirect was not followed");
        Assert.That(await H.AllAsync<RiskAssessment>(), Is.Empty);
    }

    /// <summary>
    /// A first start (no cursor, no PollFrom) while the FHIR server cannot be reached yet: what is written meanwhile is
    /// assessed once it answers (found by an operator's probe: the cursor was set to the first answer's time, and a
    /// result written before it was never assessed).
    /// </summary>
    [Test]
    public async Task On_a_first_start_a_result_written_before_the_server_first_answers_is_assessed()
    {
        await Fhir.FaultAsync(503, 100_000, "GET", "/fhir/R4/metadata");
        await Fhir.FaultAsync(503, 100_000, "GET", "/fhir/R4/Observation");
        await H.StartAsync(new() { ["MagCds:Worker:PollFrom"] = "" });
        await WaitUntilAsync(async () => (await Fhir.RequestsAsync()).Any(r => r.Status == 503), "the worker has tried the server");
        var late = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-LATE"));
        // Longer than the overlap a poll keeps (5 s), so the first answer's time lies clearly after the result.
        await Task.Delay(TimeSpan.FromSeconds(7));
        await Fhir.ClearFaultsAsync();

        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Any(r => r.Basis[0].Reference == "Observation/" + late.Id),
            "the result written before the server first answered is assessed", 60);
    }

    [Test]
    public async Task A_rerun_from_scratch_creates_nothing_new()
    {
        for (int i = 0; i < 6; i++) await Fhir.SeedAsync(Result($"p{i}", 23.5m, $"ACC-{i}"));
        await H.StartAsync();
        await H.DrainedAsync(6);
        var before = (await H.AllAsync<RiskAssessment>()).Select(r => r.Id).Order().ToList();

        // A new store: no cursor, no memory of what was done; everything is read and assessed again.
        await using var again = await WorkerHarness.CreateAsync(Fhir, Provider, keepServerData: true);
        H.Stop();
        await again.StartAsync();
        await again.DrainedAsync(6);
        Assert.That((await H.AllAsync<RiskAssessment>()).Select(r => r.Id).Order(), Is.EqualTo(before));
        Assert.That(await H.AllAsync<DetectedIssue>(), Has.Count.EqualTo(6));
    }

    [Test]
    public async Task An_assessment_a_server_wrote_twice_is_healed_not_dead_lettered()
    {
        // Conditional creates that race (a retried write the server ran twice) can leave two resources with one
        // identifier; a conditional create on it then fails with 412 for ever. Assessing again keeps the oldest.
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        using (await PutNotificationAsync(obs)) { }
        await H.DrainedAsync(1);
        var original = (await H.AllAsync<RiskAssessment>()).Single();
        var copy = (RiskAssessment)original.DeepCopy();
        copy.Id = null;
        await Fhir.Client.CreateAsync(copy);
        Assert.That(await H.AllAsync<RiskAssessment>(), Has.Count.EqualTo(2));

        // A new store (nothing remembered) assesses the same version again.
        await using var again = await WorkerHarness.CreateAsync(Fhir, Provider, keepServerData: true);
        H.Stop();
        await again.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        using (await PutNotificationAsync(obs, again)) { }
        await again.DrainedAsync(1);

        Assert.That((await again.QueueAsync()).GetProperty("deadLetters").GetInt64(), Is.Zero);
        var ras = await H.AllAsync<RiskAssessment>();
        Assert.That(ras.Where(Current).Select(r => r.Id), Is.EqualTo(new[] { original.Id }), "the first one stays current");
        Assert.That(ras.Single(r => r.Id != original.Id).Status, Is.EqualTo(ObservationStatus.Cancelled));
        Assert.That(await H.AllAsync<DetectedIssue>(), Has.Count.EqualTo(1), "nothing created anew");
    }

    [Test]
    public async Task A_redelivered_notification_writes_nothing_twice()
    {
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        for (int i = 0; i < 3; i++)
        {
            using var resp = await PutNotificationAsync(obs);
            Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            await H.DrainedAsync(1);
        }
        Assert.That(await H.AllAsync<RiskAssessment>(), Has.Count.EqualTo(1));
        Assert.That(await H.AllAsync<DetectedIssue>(), Has.Count.EqualTo(1));

        // Each processing is audited, with the same outputs each time (the same identifiers: nothing new was made).
        JsonElement audit = default;
        await WaitUntilAsync(async () =>
        {
            audit = await H.Client.GetFromJsonAsync<JsonElement>("/admin/audit?door=fhir-server");
            return audit.GetArrayLength() == 3;
        }, "three audit entries");
        Assert.That(audit.EnumerateArray().Select(e => (e.GetProperty("caller").GetString(), e.GetProperty("resource").GetString(), e.GetProperty("outcome").GetString())).Distinct(),
            Is.EqualTo(new[] { ("worker", "Observation/" + obs.Id, "evaluated-elevated") }));
        Assert.That(audit.EnumerateArray().Select(e => e.GetProperty("outputs").GetRawText()).Distinct().Count(), Is.EqualTo(1));
    }

    [Test]
    public async Task An_amended_result_supersedes_the_earlier_assessment()
    {
        await AssessedThenChangedAsync(Result("p1", 4m, "ACC-1"),
            beforeChange: async _ => Assert.That(await H.AllAsync<DetectedIssue>(), Is.Empty, "within the interval: no DetectedIssue"));

        var ras = await H.AllAsync<RiskAssessment>();
        Assert.That(ras.Count(Current), Is.EqualTo(1), "exactly one current assessment");
        var old = ras.Single(r => !Current(r));
        Assert.That(old.Status, Is.EqualTo(ObservationStatus.Cancelled));
        Assert.That(old.Note.Last().Text, Does.StartWith("Superseded"));
        Assert.That(ras.Single(Current).Prediction[0].QualitativeRisk!.Coding[0].Code, Is.EqualTo("moderate"));
        Assert.That((await H.AllAsync<DetectedIssue>()).Count(Current), Is.EqualTo(1));
        // Every write-back, the cancelled one included, passed the profile check on its way out.
        Assert.That((H.Service!.Conformance.Checked, H.Service.Conformance.Failures.Count), Is.EqualTo((4, 0)));
    }

    /// <summary>
    /// A result about a Group: its DetectedIssue names no patient, so the earlier outputs are not searched by patient
    /// there (a search by patient found nothing, and the earlier DetectedIssue stayed current). Found by a review.
    /// </summary>
    [Test]
    public async Task An_amended_result_about_a_group_supersedes_its_earlier_DetectedIssue_too()
    {
        var seed = Result("p1", 23.5m, "ACC-G1");
        seed.Subject = new ResourceReference("Group/g1");
        await AssessedThenChangedAsync(seed, change: obs =>
        {
            obs.Status = ObservationStatus.Amended;
            ((Quantity)obs.Value!).Value = 30m;
        });
        var issues = await H.AllAsync<DetectedIssue>();
        Assert.That(issues, Has.Count.EqualTo(2), "raised before and after the amendment");
        Assert.That(issues.Count(Current), Is.EqualTo(1), "one current DetectedIssue");
        Assert.That(issues.Single(d => !Current(d)).Status, Is.EqualTo(ObservationStatus.Cancelled));
    }

    [Test]
    public async Task A_result_moved_to_another_patient_leaves_nothing_current_on_the_first()
    {
        // The laboratory corrects the patient: the same Observation (same id, same identifier) now belongs to p2. Its
        // identity in MagCds includes the subject, so the outputs on p1 are found through the Observation's history.
        await AssessedThenChangedAsync(Result("p1", 23.5m, "ACC-1"), change: obs =>
        {
            obs.Status = ObservationStatus.Corrected;
            obs.Subject = new ResourceReference("Patient/p2");
        });

        var ras = await H.AllAsync<RiskAssessment>();
        Assert.That(ras.Where(Current).Select(r => r.Subject!.Reference), Is.EqualTo(new[] { "Patient/p2" }), "one current assessment, on the corrected patient");
        Assert.That(ras.Single(r => r.Subject!.Reference == "Patient/p1").Status, Is.EqualTo(ObservationStatus.Cancelled));
        var dis = await H.AllAsync<DetectedIssue>();
        Assert.That(dis.Where(Current).Select(d => d.Patient!.Reference), Is.EqualTo(new[] { "Patient/p2" }));
        Assert.That(dis.Single(d => d.Patient!.Reference == "Patient/p1").Status, Is.EqualTo(ObservationStatus.Cancelled));
    }

    /// <summary>
    /// The same correction on a server without version history (many EHR facades offer none): the outputs on p1 are
    /// found through the series this store kept from the first assessment and, for a raised result, through the MagCds
    /// DetectedIssue that implicates the Observation. Found by a black-box probe: both sets stayed current.
    /// </summary>
    [TestCase(23.5)]
    [TestCase(4.0)]
    public async Task A_result_moved_to_another_patient_on_a_server_without_history_leaves_nothing_current_on_the_first(double value)
    {
        await AssessedThenChangedAsync(Result("p1", (decimal)value, "ACC-1"),
            beforeChange: obs => InjectAsync(404, 100, "GET", $"/fhir/R4/Observation/{obs.Id}/_history"),
            change: obs =>
            {
                obs.Status = ObservationStatus.Corrected;
                obs.Subject = new ResourceReference("Patient/p2");
            });

        Assert.That(H.Service!.Logs.Lines.Any(l => l.Contains("\"Name\":\"HistoryUnavailable\"", StringComparison.Ordinal)), "the history was not available");
        var ras = await H.AllAsync<RiskAssessment>();
        Assert.That(ras.Where(Current).Select(r => r.Subject!.Reference), Is.EqualTo(new[] { "Patient/p2" }), "one current assessment, on the corrected patient");
        Assert.That(ras.Single(r => r.Subject!.Reference == "Patient/p1").Status, Is.EqualTo(ObservationStatus.Cancelled));
        Assert.That((await H.AllAsync<DetectedIssue>()).Where(Current).Select(d => d.Patient!.Reference), Is.EqualTo(value > 10 ? new[] { "Patient/p2" } : Array.Empty<string>()));
    }

    [Test]
    public async Task Outputs_written_before_order_numbers_stopped_being_identities_are_superseded()
    {
        // A result whose only identifier is an accession number (type ACSN), assessed by the earlier release, which
        // took that number as the result's identity; its RiskAssessment is on the server.
        var obs = Result("p1", 23.5m, "ACC-1");
        obs.Identifier[0].Type = new CodeableConcept("http://terminology.hl7.org/CodeSystem/v2-0203", "ACSN");
        obs = await Fhir.SeedAsync(obs);
        var asBefore = (Observation)obs.DeepCopy();
        asBefore.Identifier[0].Type = null;
        var before = CoreUnderTest.Evaluator.Evaluate(MagCds.Core.Evaluation.EvaluationRequest.Of(new MagCds.Core.Evaluation.EvaluationInput(asBefore, "Observation/" + obs.Id, "Observation"))).Results.Single();
        var old = (RiskAssessment)before.RiskAssessment!.DeepCopy();
        old.Id = null;
        await Fhir.Client.CreateAsync(old);

        await H.StartAsync();
        await H.DrainedAsync(1);
        var ras = await H.AllAsync<RiskAssessment>();
        Assert.That(ras, Has.Count.EqualTo(2));
        Assert.That(ras.Count(Current), Is.EqualTo(1), "one current assessment: the earlier release's is superseded");
        Assert.That(ras.Single(r => !Current(r)).Identifier.Select(i => i.Value), Is.EqualTo(before.RiskAssessment!.Identifier.Select(i => i.Value)));
    }

    /// <summary>
    /// The history read fails: 405, a server without version history (the current identity is still searched, and the
    /// gap logged), or one 401, a refused token (the item is retried, never dead-lettered).
    /// </summary>
    [TestCase(405, 100)]
    [TestCase(401, 1)]
    public async Task A_failed_history_read_still_gets_the_amended_result_superseded(int status, int times)
    {
        await AssessedThenChangedAsync(Result("p1", 4m, "ACC-1"),
            beforeChange: obs => InjectAsync(status, times, "GET", $"/fhir/R4/Observation/{obs.Id}/_history"));

        Assert.That((await H.AllAsync<RiskAssessment>()).Count(Current), Is.EqualTo(1));
        var reads = (await Fhir.RequestsAsync()).Where(r => r.Url.EndsWith("/_history", StringComparison.Ordinal)).ToList();
        Assert.That(reads.Any(r => r.Status == status), "the history was asked for");
        Assert.That((await H.QueueAsync()).GetProperty("deadLetters").GetInt64(), Is.Zero);
        bool logged = H.Service!.Logs.Lines.Any(l => l.Contains("\"Name\":\"HistoryUnavailable\"", StringComparison.Ordinal));
        if (status == 405) Assert.That(logged, "the gap is logged");
        else Assert.That((logged, reads.Any(r => r.Status == 200)), Is.EqualTo((false, true)), "read again after the 401, with success");
    }

    /// <summary>
    /// A later version that MagCds cannot assess (cancelled, or its code corrected to another test) withdraws the
    /// assessment of the earlier one: a preliminary raised result must not stay raised beside the chart.
    /// </summary>
    [TestCase("cancelled")]
    [TestCase("code-corrected")]
    public async Task A_result_that_can_no_longer_be_assessed_leaves_no_assessment_current(string change)
    {
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1", ObservationStatus.Preliminary));
        using (await PutNotificationAsync(obs)) { }
        await H.DrainedAsync(1);
        Assert.That(((await H.AllAsync<RiskAssessment>()).Count(Current), (await H.AllAsync<DetectedIssue>()).Count(Current)), Is.EqualTo((1, 1)));

        if (change == "cancelled") obs.Status = ObservationStatus.Cancelled;
        else obs.Code = new CodeableConcept("urn:oid:2.16.840.1.113883.19.5.99.3", "MAG-IGG", "Anti-MAG IgG");
        obs = await Fhir.Client.UpdateAsync(obs);
        using (await PutNotificationAsync(obs!)) { }
        await H.DrainedAsync(2);

        var ras = await H.AllAsync<RiskAssessment>();
        var dis = await H.AllAsync<DetectedIssue>();
        Assert.That((ras.Count, dis.Count), Is.EqualTo((1, 1)), "nothing new is written");
        Assert.That(ras.Concat<Resource>(dis).Select(r => r is RiskAssessment ra ? ra.Status : ((DetectedIssue)r).Status),
            Is.All.EqualTo(ObservationStatus.Cancelled), "the earlier assessment is withdrawn");
        Assert.That(ras[0].Note.Last().Text, Does.Contain("cannot be assessed"));
    }

    [Test]
    public async Task An_amended_result_with_a_contained_subject_supersedes_its_earlier_assessment()
    {
        var seeded = Result("p1", 4m, "ACC-1");
        seeded.Contained.Add(new Patient { Id = "p", Identifier = [new Identifier("https://hospital.example/mrn", "MRN-CONTAINED-1")] });
        seeded.Subject = new ResourceReference("#p");
        await AssessedThenChangedAsync(seeded);

        var ras = await H.AllAsync<RiskAssessment>();
        Assert.That(ras.Count(Current), Is.EqualTo(1), "the earlier assessment is found without searching by '#p'");
        Assert.That(ras.All(r => r.Subject!.Reference is null && r.Subject.Identifier?.Value == "MRN-CONTAINED-1"));
    }

    /// <summary>A copy of the embedded knowledge under another version (a knowledge upgrade); deleted by the caller.</summary>
    private static async Task<(string Path, string Embedded, string Next)> NextKnowledgeFileAsync()
    {
        string path = Path.Combine(Path.GetTempPath(), $"knowledge-{Guid.NewGuid():N}.json");
        System.Text.Json.Nodes.JsonNode doc;
        await using (var embeddedFile = typeof(MagCds.Core.Knowledge.KnowledgeLoader).Assembly.GetManifestResourceStream("MagCds.Core.Knowledge.knowledge.json")!)
            doc = (await System.Text.Json.Nodes.JsonNode.ParseAsync(embeddedFile))!;
        string embedded = doc["version"]!.GetValue<string>();
        doc["version"] = embedded + "-next";
        await File.WriteAllTextAsync(path, doc.ToJsonString());
        return (path, embedded, embedded + "-next");
    }

    [Test]
    public async Task After_a_knowledge_upgrade_an_operator_has_every_result_assessed_again_with_the_new_knowledge()
    {
        var (newer, embedded, next) = await NextKnowledgeFileAsync();
        try
        {
            await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
            await Fhir.SeedAsync(Result("p2", 5.0m, "ACC-2"));
            await H.StartAsync();
            await H.DrainedAsync(2);
            Assert.That((await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker")).GetProperty("assessedWithOtherKnowledge").GetInt64(), Is.Zero);

            // The upgrade: the same store, the new knowledge. Nothing about the results changed, so nothing is assessed.
            await H.StartAsync(new() { ["MagCds:KnowledgeFile"] = newer });
            var status = await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker");
            Assert.That(status.GetProperty("knowledgeVersion").GetString(), Is.EqualTo(next));
            Assert.That(status.GetProperty("assessedWithOtherKnowledge").GetInt64(), Is.EqualTo(2), "both results still have outputs of the earlier knowledge");

            var reassess = await H.Client.PostAsync("/admin/worker/reassess", null);
            Assert.That(reassess.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
            Assert.That((await reassess.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("queued").GetInt32(), Is.EqualTo(2));
            await H.DrainedAsync(4);
            await WaitUntilAsync(async () => (await H.Client.GetFromJsonAsync<JsonElement>("/admin/audit?door=admin")).EnumerateArray()
                .Any(e => e.GetProperty("outcome").GetString() == "done (2 queued)"), "the reassessment is audited with its count");

            var ras = await H.AllAsync<RiskAssessment>();
            Assert.That(ras, Has.Count.EqualTo(4));
            Assert.That(ras.Where(Current).Select(KnowledgeVersion), Is.EqualTo(new[] { next, next }), "one current assessment per result, of the new knowledge");
            Assert.That(ras.Where(r => !Current(r)).Select(r => (r.Status, KnowledgeVersion(r))),
                Is.EqualTo(new[] { (ObservationStatus.Cancelled, embedded), (ObservationStatus.Cancelled, embedded) }));
            Assert.That(ras.Where(r => !Current(r)).Select(RiskAssessmentNote), Is.All.StartsWith("Superseded: MagCds assessed this Observation again"));
            var dis = await H.AllAsync<DetectedIssue>();
            Assert.That((dis.Count, dis.Count(Current)), Is.EqualTo((2, 1)), "the raised result's alert is replaced, not doubled");

            Assert.That((await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker")).GetProperty("assessedWithOtherKnowledge").GetInt64(), Is.Zero);
            var again = await H.Client.PostAsync("/admin/worker/reassess", null);
            Assert.That((await again.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("queued").GetInt32(), Is.Zero, "nothing left to reassess");
        }
        finally { File.Delete(newer); }
    }

    [Test]
    public async Task Going_back_to_earlier_knowledge_makes_its_assessment_current_again()
    {
        var (newer, embedded, _) = await NextKnowledgeFileAsync();
        try
        {
            await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
            await H.StartAsync();
            await H.DrainedAsync(1);

            // Each run has a new store (no memory of what was assessed), so the result is assessed again each time.
            await using (var next = await WorkerHarness.CreateAsync(Fhir, Provider, keepServerData: true))
            {
                H.Stop();
                await next.StartAsync(new() { ["MagCds:KnowledgeFile"] = newer });
                await next.DrainedAsync(1);
            }
            await using var back = await WorkerHarness.CreateAsync(Fhir, Provider, keepServerData: true);
            await back.StartAsync();
            await back.DrainedAsync(1);

            var ras = await H.AllAsync<RiskAssessment>();
            Assert.That(ras, Has.Count.EqualTo(2), "the earlier assessment is reused, not made again");
            Assert.That(ras.Where(Current).Select(KnowledgeVersion), Is.EqualTo(new[] { embedded }), "exactly one current assessment: the one of the knowledge in use");
            Assert.That(ras.Single(r => !Current(r)).Status, Is.EqualTo(ObservationStatus.Cancelled));
            var dis = await H.AllAsync<DetectedIssue>();
            Assert.That(dis, Has.Count.EqualTo(2));
            Assert.That(dis.Single(Current).Id, Is.EqualTo(dis.OrderBy(d => d.Meta!.LastUpdated).First().Id), "the first DetectedIssue is current again");
        }
        finally { File.Delete(newer); }
    }

    [Test]
    public async Task An_entered_in_error_result_withdraws_its_outputs()
    {
        await H.StartAsync();
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await H.DrainedAsync(1);

        obs.Status = ObservationStatus.EnteredInError;
        await Fhir.Client.UpdateAsync(obs);
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).All(r => r.Status == ObservationStatus.EnteredInError)
                                         && (await H.AllAsync<DetectedIssue>()).All(d => d.Status == ObservationStatus.EnteredInError),
            "every output is entered-in-error");
        // Both outputs of the raised result are still there (withdrawn, not deleted) and both are withdrawn.
        Assert.That((await H.AllAsync<RiskAssessment>()).Select(r => r.Status), Is.EqualTo(new[] { ObservationStatus.EnteredInError }));
        Assert.That((await H.AllAsync<DetectedIssue>()).Select(d => d.Status), Is.EqualTo(new[] { ObservationStatus.EnteredInError }));
    }

    [TestCase(23.5, 1, TestName = "A raised result deleted from the server has its RiskAssessment and DetectedIssue withdrawn")]
    [TestCase(5.0, 0, TestName = "A result not raised deleted from the server has its RiskAssessment withdrawn")]
    public async Task A_result_deleted_from_the_server_has_its_outputs_withdrawn(decimal value, int detectedIssues)
    {
        await H.StartAsync();
        var obs = await Fhir.SeedAsync(Result("p1", value, "ACC-1"));
        var other = await Fhir.SeedAsync(Result("p1", value, "ACC-2"));
        await H.DrainedAsync(2);
        Assert.That(await H.AllAsync<DetectedIssue>(), Has.Count.EqualTo(2 * detectedIssues));

        // The lab deletes the result; a notification about it (sent before, delivered after) finds it gone. Without a
        // DetectedIssue to point at it, only the store knows which outputs were made for it.
        await Fhir.Client.DeleteAsync(obs);
        using (await PutNotificationAsync(obs)) { }
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Any(r => r.Status == ObservationStatus.Cancelled), "the deleted result's assessment is withdrawn");
        await H.DrainedAsync(3);

        var ras = await H.AllAsync<RiskAssessment>();
        Assert.That(ras.Where(r => r.Status == ObservationStatus.Cancelled).Select(r => r.Basis[0].Reference), Is.EqualTo(new[] { "Observation/" + obs.Id }));
        Assert.That(ras.Single(r => r.Status == ObservationStatus.Cancelled).Note.Last().Text, Does.Contain("deleted from the FHIR server"));
        Assert.That(ras.Where(Current).Select(r => r.Basis[0].Reference), Is.EqualTo(new[] { "Observation/" + other.Id }), "the other result's assessment stays");
        var dis = await H.AllAsync<DetectedIssue>();
        Assert.That(dis.Where(d => d.Status == ObservationStatus.Cancelled).Select(d => d.Implicated[0].Reference),
            Is.EqualTo(Enumerable.Repeat("Observation/" + obs.Id, detectedIssues)));
        Assert.That(dis.Count(Current), Is.EqualTo(detectedIssues));
    }

    [Test]
    public async Task A_deleted_Observation_MagCds_never_assessed_leaves_other_systems_alerts_about_it_alone()
    {
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var glucose = Result("p1", 5.5m, "ACC-GLU");
        glucose.Code = new CodeableConcept("http://loinc.org", "2345-7");
        glucose = await Fhir.SeedAsync(glucose);
        var foreign = await Fhir.Client.CreateAsync(new DetectedIssue
        {
            Status = ObservationStatus.Final,
            Implicated = [new ResourceReference("Observation/" + glucose.Id)],
            Detail = "Another system's alert about this result.",
        });
        await Fhir.Client.DeleteAsync(glucose);
        await Fhir.ClearRequestsAsync();
        using (await PutNotificationAsync(glucose)) { }
        await H.DrainedAsync(1);

        Assert.That((await Fhir.Client.ReadAsync<DetectedIssue>("DetectedIssue/" + foreign!.Id))!.Status, Is.EqualTo(ObservationStatus.Final));
        Assert.That((await Fhir.RequestsAsync()).Where(r => r.Method is "POST" or "PUT"), Is.Empty, "nothing was written");
    }

    [Test]
    public async Task Deleting_a_duplicate_result_gives_the_one_kept_its_assessment_back()
    {
        // The lab sent the same result twice (same patient and accession, two resources): the second assessment
        // superseded the first's. Deleting the second must not leave the first with no current assessment.
        await H.StartAsync();
        var kept = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await H.DrainedAsync(1);
        var duplicate = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await H.DrainedAsync(2);
        Assert.That((await H.AllAsync<RiskAssessment>()).Where(Current).Select(r => r.Basis[0].Reference), Is.EqualTo(new[] { "Observation/" + duplicate.Id }));
        // Both kinds of output: a DetectedIssue of the first left current would be a second alert for one result.
        Assert.That((await H.AllAsync<DetectedIssue>()).Where(Current).Select(d => d.Implicated[0].Reference), Is.EqualTo(new[] { "Observation/" + duplicate.Id }));
        var superseded = (await H.AllAsync<DetectedIssue>()).Single(d => d.Implicated[0].Reference == "Observation/" + kept.Id);
        Assert.That(superseded.Status, Is.EqualTo(ObservationStatus.Cancelled));
        Assert.That(RiskAssessmentNote((await H.AllAsync<RiskAssessment>()).Single(r => r.Basis[0].Reference == "Observation/" + kept.Id)),
            Does.Contain("another Observation of the same result").And.Contain("Observation/" + duplicate.Id), "the note says why, not that this Observation changed");

        await Fhir.Client.DeleteAsync(duplicate);
        using (await PutNotificationAsync(duplicate)) { }
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Where(Current).Select(r => r.Basis[0].Reference).SequenceEqual(["Observation/" + kept.Id]),
            "the result kept is assessed again and is the one current assessment");
        Assert.That((await H.AllAsync<DetectedIssue>()).Where(Current).Select(d => d.Implicated[0].Reference), Is.EqualTo(new[] { "Observation/" + kept.Id }));
    }

    [Test]
    public async Task A_result_whose_assessment_outlasts_the_lease_is_kept_by_renewing_it_and_assessed_once()
    {
        // Two replicas on one store, a 1-second lease, and a server that takes 3 seconds to answer the read (within
        // the harness's per-attempt time-out of 3.3 s). Without renewal the lease would run out mid-assessment and
        // the other replica take the row and assess it a second time.
        var settings = new Dictionary<string, string?> { ["MagCds:Worker:PollIntervalSeconds"] = "0", ["MagCds:Worker:LeaseSeconds"] = "1" };
        await H.StartAsync(settings);
        await using var replica = new WorkerHarness(Fhir, new Dictionary<string, string?>(H.StoreSettings));
        await replica.StartAsync(settings);
        await replica.QueueAsync(); // up and running
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await InjectAsync(0, 1, "GET", "/fhir/R4/Observation/" + obs.Id, delayMs: 3000);
        using (await PutNotificationAsync(obs)) { }
        await H.DrainedAsync(1);

        string[] Events(WorkerHarness h, string name) => h.Service!.Logs.Lines.Where(l => l.Contains($"\"Name\":\"{name}\"", StringComparison.Ordinal)).ToArray();
        Assert.That(Events(H, "Assessed").Length + Events(replica, "Assessed").Length, Is.EqualTo(1), "assessed once, by one replica");
        Assert.That(Events(H, "LeaseLost").Concat(Events(replica, "LeaseLost")), Is.Empty);
        Assert.That((await Fhir.RequestsAsync()).Count(r => r.Method == "GET" && r.Url == "/fhir/R4/Observation/" + obs.Id), Is.EqualTo(1),
            "read once: the other replica never took the row");
        Assert.That(await H.AllAsync<RiskAssessment>(), Has.Count.EqualTo(1));
    }

    [Test]
    public async Task A_server_that_hangs_past_the_request_time_out_is_given_up_on_and_the_result_assessed_later()
    {
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0", ["MagCds:Worker:RequestTimeoutSeconds"] = "2" });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        // Two reads that hang for 10 s: the call's own retry (within the 2 s) cannot get past them.
        await InjectAsync(0, 2, "GET", "/fhir/R4/Observation/" + obs.Id, delayMs: 10_000);
        using (await PutNotificationAsync(obs)) { }
        await H.DrainedAsync(1, seconds: 60);

        var retries = H.Service!.Logs.Lines.Where(l => l.Contains("\"Name\":\"WillRetry\"", StringComparison.Ordinal)).ToList();
        Assert.That(retries, Is.Not.Empty, "the hanging read was given up on and the result queued again");
        Assert.That(retries, Has.All.Contains("\"Reason\":\"timeout\""), "as a time-out (a server problem, not counted against the result)");
        Assert.That((await H.QueueAsync()).GetProperty("deadLetters").GetInt64(), Is.Zero);
        Assert.That(await H.AllAsync<RiskAssessment>(), Has.Count.EqualTo(1), "assessed once the server answered");
    }

    [Test]
    public async Task Server_errors_are_retried_until_the_server_recovers()
    {
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        // Every transaction fails with 503 for a while: more failures than one call's own retries absorb.
        await InjectAsync(503, 6, "POST", "/fhir/R4");
        using (await PutNotificationAsync(obs)) { }
        await H.DrainedAsync(1);

        Assert.That(await H.AllAsync<RiskAssessment>(), Has.Count.EqualTo(1));
        var requests = await Fhir.RequestsAsync();
        var posts = requests.Where(r => r.Method == "POST" && r.Url == "/fhir/R4").ToList();
        Assert.That(posts.Count(p => p.Status == 503), Is.EqualTo(6), "more failures than MaxAttempts (4): a busy server is waited for");
        Assert.That(posts.Last().Status, Is.EqualTo(200));
        // The HTTP layer never sends a write twice (a second copy could race the first on the server): each failed
        // transaction is followed by the queue's retry, which reads the Observation again first.
        var order = requests.Where(r => (r.Method == "POST" && r.Url == "/fhir/R4") || (r.Method == "GET" && r.Url.StartsWith("/fhir/R4/Observation/" + obs.Id, StringComparison.Ordinal))).ToList();
        for (int i = 1; i < order.Count; i++)
            Assert.That(order[i].Method == "POST" && order[i - 1].Method == "POST", Is.False, $"two transactions in a row at request {i}");
    }

    [Test]
    public async Task A_server_that_asks_for_a_pause_with_Retry_After_gets_no_call_until_it_ends()
    {
        // The read is refused with 429 and Retry-After: 8. The call itself gives up after 3 s (its time-out cuts the
        // wait short), and the row's own backoff would try again within about a second; the server's ask is longer.
        await H.StartAsync(new()
        {
            ["MagCds:Worker:PollIntervalSeconds"] = "0",
            ["MagCds:Worker:RequestTimeoutSeconds"] = "3",
            ["MagCds:Worker:RetryMaxDelaySeconds"] = "30",
        });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await Fhir.ClearRequestsAsync();
        await InjectAsync(429, 1, "GET", "/fhir/R4/Observation/" + obs.Id, retryAfter: "8");
        using (await PutNotificationAsync(obs)) { }
        await WaitUntilAsync(async () => (await H.QueueAsync()).GetProperty("pending").GetInt64() == 1
            && (await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker")).GetProperty("pausedUntil").ValueKind == JsonValueKind.String,
            "the operators' view shows the pause");
        await H.DrainedAsync(1);

        var requests = await Fhir.RequestsAsync();
        int refused = requests.ToList().FindIndex(r => r.Status == 429);
        Assert.That(refused, Is.GreaterThanOrEqualTo(0));
        Assert.That(requests.Count, Is.GreaterThan(refused + 1), "the result was read again");
        Assert.That(requests[refused + 1].At - requests[refused].At, Is.GreaterThanOrEqualTo(7_900), "nothing was sent to the server before its pause ended");
        Assert.That((await H.AllAsync<RiskAssessment>()).Where(Current).ToList(), Has.Count.EqualTo(1));
        Assert.That(H.Service!.Logs.Lines.Any(l => l.Contains("as the server asked (Retry-After)", StringComparison.Ordinal)));
    }

    [Test]
    public async Task A_version_conflict_answered_409_is_retried_from_a_fresh_read_not_dead_lettered()
    {
        // R4 allows 409 or 412 for a version conflict; HAPI answers a stale If-Match (and racing conditional creates) 409.
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await InjectAsync(409, 1, "POST", "/fhir/R4");
        using (await PutNotificationAsync(obs)) { }
        await H.DrainedAsync(1);

        Assert.That((await H.QueueAsync()).GetProperty("deadLetters").GetInt64(), Is.Zero);
        Assert.That(await H.AllAsync<RiskAssessment>(), Has.Count.EqualTo(1));
        var posts = (await Fhir.RequestsAsync()).Where(r => r.Method == "POST" && r.Url == "/fhir/R4").Select(r => r.Status).ToList();
        Assert.That(posts, Is.EqualTo(new[] { 409, 200 }));
    }

    /// <summary>
    /// Admin parameters of the wrong kind get an OperationOutcome with a code, not an empty 400; an id that is not a
    /// number names no dead letter (404), not a method the route does not take (it was "405: it takes POST").
    /// </summary>
    [TestCase("GET", "/admin/worker/dead-letters?max=abc", 400, "invalid-query")]
    [TestCase("GET", "/admin/worker/dead-letters?max=99999999999", 400, "invalid-query")]
    [TestCase("GET", "/admin/audit?max=abc", 400, "invalid-query")]
    [TestCase("POST", "/admin/worker/dead-letters/abc/replay", 404, "not-found")]
    [TestCase("POST", "/admin/worker/dead-letters/99999999999999999999/replay", 404, "not-found")]
    public async Task An_admin_parameter_of_the_wrong_kind_gets_an_OperationOutcome(string method, string path, int status, string code)
    {
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        using var resp = await H.Client.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        Assert.That((int)resp.StatusCode, Is.EqualTo(status));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Is.EqualTo(new[] { code }));
    }

    [Test]
    public async Task A_dead_letter_of_another_server_address_is_not_replayed_here()
    {
        long id;
        await using (var db = StoreUnderTest.Open(StoreOptions()))
        {
            var queue = new WorkQueue(db, TimeProvider.System);
            await queue.EnqueueAsync("http://other-deployment.example/fhir", [("Observation", "x")], "poll", CancellationToken.None);
            var item = (await queue.LeaseAsync("other", 1, TimeSpan.FromMinutes(1), CancellationToken.None, "http://other-deployment.example/fhir")).Single();
            await queue.DeadLetterAsync(item, "other", "http-422", CancellationToken.None);
            id = (await queue.DeadLettersAsync(1, CancellationToken.None)).Single().Id;
        }
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        using var replay = await H.Client.PostAsync($"/admin/worker/dead-letters/{id}/replay", null);
        Assert.That(replay.StatusCode, Is.EqualTo(HttpStatusCode.NotFound), "it is the other deployment's to replay");
    }

    [Test]
    public async Task A_refused_write_is_dead_lettered_with_its_reason_and_can_be_replayed()
    {
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await InjectAsync(422, 1, "POST", "/fhir/R4");
        using (await PutNotificationAsync(obs)) { }
        await WaitUntilAsync(async () => (await H.QueueAsync()).GetProperty("deadLetters").GetInt64() == 1, "the write is dead-lettered");

        var dead = (await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker/dead-letters")).EnumerateArray().Single();
        Assert.That(dead.GetProperty("resource").GetString(), Is.EqualTo("Observation/" + obs.Id));
        Assert.That(dead.GetProperty("reason").GetString(), Is.EqualTo("http-422"));
        Assert.That(await H.AllAsync<RiskAssessment>(), Is.Empty);

        long id = dead.GetProperty("id").GetInt64();
        using var replay = await H.Client.PostAsync($"/admin/worker/dead-letters/{id}/replay", null);
        Assert.That(replay.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
        await H.DrainedAsync(1);
        Assert.That(await H.AllAsync<RiskAssessment>(), Has.Count.EqualTo(1));
        Assert.That((await H.QueueAsync()).GetProperty("deadLetters").GetInt64(), Is.Zero);
        using var again = await H.Client.PostAsync($"/admin/worker/dead-letters/{id}/replay", null);
        Assert.That(again.StatusCode, Is.EqualTo(HttpStatusCode.NotFound), "a dead letter is replayed once");

        // Who looked at the dead letters and who replayed one is in the audit trail, with the refusal's code.
        List<string> admin = [];
        await WaitUntilAsync(async () =>
        {
            admin = [.. (await H.Client.GetFromJsonAsync<JsonElement>("/admin/audit?door=admin")).EnumerateArray()
                .Select(e => $"{e.GetProperty("caller").GetString()} {e.GetProperty("resource").GetString()} {e.GetProperty("version").GetString()} {e.GetProperty("outcome").GetString()}")];
            return admin.Count(a => a.Contains("replay", StringComparison.Ordinal)) == 2;
        }, "both replays are audited");
        Assert.That(admin, Does.Contain($"test-operator POST /admin/worker/dead-letters/{{id:long}}/replay {id} done"));
        Assert.That(admin, Does.Contain($"test-operator POST /admin/worker/dead-letters/{{id:long}}/replay {id} not-found"));
        Assert.That(admin, Does.Contain("test-operator GET /admin/worker/dead-letters  done"));
    }

    [Test]
    public async Task Dead_letters_are_replayed_by_reason_and_the_audit_says_how_many()
    {
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var first = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        var second = await Fhir.SeedAsync(Result("p2", 3m, "ACC-2"));
        await InjectAsync(422, 2, "POST", "/fhir/R4");
        using (await PutNotificationAsync(first)) { }
        using (await PutNotificationAsync(second)) { }
        await WaitUntilAsync(async () => (await H.QueueAsync()).GetProperty("deadLetters").GetInt64() == 2, "both writes are dead-lettered");

        using (var none = await H.Client.PostAsync("/admin/worker/dead-letters/replay?reason=http-500", null))
            Assert.That((await none.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("replayed").GetInt32(), Is.Zero, "no dead letter has that reason");
        using (var both = await H.Client.PostAsync("/admin/worker/dead-letters/replay?reason=http-422", null))
        {
            Assert.That(both.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
            Assert.That((await both.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("replayed").GetInt32(), Is.EqualTo(2));
        }
        await H.DrainedAsync(2);
        Assert.That(await H.AllAsync<RiskAssessment>(), Has.Count.EqualTo(2));

        List<string> admin = [];
        await WaitUntilAsync(async () =>
        {
            admin = [.. (await H.Client.GetFromJsonAsync<JsonElement>("/admin/audit?door=admin")).EnumerateArray().Select(e => e.GetProperty("outcome").GetString()!)];
            return admin.Count(a => a.Contains("replayed", StringComparison.Ordinal)) == 2;
        }, "both replays are audited");
        Assert.That(admin, Does.Contain("done (0 replayed, reason http-500)").And.Contain("done (2 replayed, reason http-422)"));
    }

    [Test]
    public async Task A_server_that_runs_the_write_back_entry_by_entry_and_fails_an_entry_does_not_count_it_as_written()
    {
        // A transaction is all or nothing; this server runs it as a batch and answers 200 with a failed entry inside.
        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        var outputs = CoreUnderTest.Evaluator.Evaluate(EvaluationRequest.Of(new EvaluationInput(obs, "Observation/" + obs.Id, "Observation"))).Results[0];
        var ra = outputs.RiskAssessment!;
        // Two resources that carry the assessment's own identifier (but not its series, so MagCds does not take them
        // for its earlier outputs) make its conditional create fail with 412 (several matches), and only that entry.
        var blockers = new List<RiskAssessment>();
        for (int i = 0; i < 2; i++)
            blockers.Add(await Fhir.SeedAsync(new RiskAssessment { Status = ObservationStatus.Final, Subject = ra.Subject, Identifier = [ra.Identifier[0]] }));
        await Fhir.QuirksAsync(transactionAsBatch: true);
        using (await PutNotificationAsync(obs)) { }
        await WaitUntilAsync(async () => (await H.QueueAsync()).GetProperty("deadLetters").GetInt64() == 1, "the failed entry is not taken for a written assessment");

        var dead = (await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker/dead-letters")).EnumerateArray().Single();
        Assert.That(dead.GetProperty("reason").GetString(), Is.EqualTo("http-412"));
        Assert.That(await H.AllAsync<DetectedIssue>(), Has.Count.EqualTo(1), "the entry that succeeded was written once, however often it was tried");
        // What the server applied although the write-back failed is in the audit trail, named by its identifier.
        string? diUrn = outputs.DetectedIssue!.Identifier[0].Value;
        await WaitUntilAsync(async () => (await H.Client.GetFromJsonAsync<JsonElement>("/admin/audit?door=fhir-server")).EnumerateArray()
            .Any(e => e.GetProperty("outcome").GetString() == "partial-write:http-412" && e.GetProperty("outputs").EnumerateArray().Select(o => o.GetString()).SequenceEqual([diUrn])),
            "the partial write is audited");

        // Once the blockers are gone, a replay writes what is missing and nothing twice.
        foreach (var b in blockers) await Fhir.Client.DeleteAsync(b);
        using var replay = await H.Client.PostAsync($"/admin/worker/dead-letters/{dead.GetProperty("id").GetInt64()}/replay", null);
        await H.DrainedAsync(1);
        Assert.That((await H.AllAsync<RiskAssessment>()).Select(r => r.Identifier[0].Value), Is.EqualTo(new[] { ra.Identifier[0].Value }));
        Assert.That(await H.AllAsync<DetectedIssue>(), Has.Count.EqualTo(1));
        Assert.That((await H.QueueAsync()).GetProperty("deadLetters").GetInt64(), Is.Zero);
    }

    [Test]
    public async Task Work_left_by_a_killed_worker_is_finished_after_its_lease_runs_out()
    {
        var seeded = new List<Observation>();
        for (int i = 0; i < 5; i++) seeded.Add(await Fhir.SeedAsync(Result($"p{i}", 23.5m, $"ACC-{i}")));
        // A worker that queued and leased these, then died (its leases are never completed).
        var options = StoreOptions();
        await using (var db = StoreUnderTest.Open(options))
        {
            var queue = new WorkQueue(db, TimeProvider.System);
            await queue.EnqueueAsync(Fhir.BaseUrl, seeded.Select(o => ("Observation", o.Id!)), "subscription", CancellationToken.None);
            Assert.That(await queue.LeaseAsync("killed-worker", 10, TimeSpan.FromSeconds(2), CancellationToken.None), Has.Count.EqualTo(5));
        }

        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0" });
        await H.DrainedAsync(5);
        var ras = await H.AllAsync<RiskAssessment>();
        Assert.That(ras.Select(r => r.Basis[0].Reference).Order(), Is.EqualTo(seeded.Select(o => "Observation/" + o.Id).Order()));
    }

    /// <summary>The lag reaches Prometheus in buckets of seconds, so a p95 alert can be read below 5 s (found by an operator's probe).</summary>
    [Test]
    public async Task The_lag_is_exported_in_buckets_of_seconds()
    {
        await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await H.StartAsync(new() { ["MagCds:Telemetry:Prometheus"] = "true" });
        await H.DrainedAsync(1);
        string metrics = "";
        await WaitUntilAsync(async () => (metrics = await H.Client.GetStringAsync("/metrics")).Contains("magcds_worker_lag_seconds_bucket", StringComparison.Ordinal), "the lag is exported");
        Assert.That(metrics, Does.Match(@"magcds_worker_lag_seconds_bucket\{[^}]*le=""0.25""[^}]*\}"));
        Assert.That(metrics, Does.Match(@"magcds_worker_lag_seconds_bucket\{[^}]*le=""3600""[^}]*\}"));
    }

    [Test]
    public async Task A_row_whose_leases_keep_running_out_is_dead_lettered()
    {
        // A result that crashed every worker that took it: four leases ran out (the harness's MaxAttempts is 4).
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await using (var db = StoreUnderTest.Open(StoreOptions()))
        {
            var queue = new WorkQueue(db, TimeProvider.System);
            await queue.EnqueueAsync(Fhir.BaseUrl, [("Observation", obs.Id!)], "subscription", CancellationToken.None);
            for (int i = 0; i < 5; i++)
            {
                Assert.That(await queue.LeaseAsync("crashing-worker", 10, TimeSpan.FromMilliseconds(1), CancellationToken.None), Has.Count.EqualTo(1));
                await Task.Delay(20);
            }
        }

        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0", ["MagCds:Telemetry:Prometheus"] = "true" });
        await WaitUntilAsync(async () => (await H.QueueAsync()).GetProperty("deadLetters").GetInt64() == 1, "the row is dead-lettered");
        var dead = (await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker/dead-letters")).EnumerateArray().Single();
        Assert.That(dead.GetProperty("reason").GetString(), Is.EqualTo("lease-expired"));
        Assert.That(await H.AllAsync<RiskAssessment>(), Is.Empty, "not tried a sixth time");
        // The runbook's alert on dead letters counts this one too; nothing was written, so it is no lag.
        string metrics = "";
        await WaitUntilAsync(async () => (metrics = await H.Client.GetStringAsync("/metrics")).Contains("magcds_worker_processed", StringComparison.Ordinal), "the dead letter is counted");
        Assert.That(metrics, Does.Match(@"magcds_worker_processed_total\{[^}]*outcome=""dead-letter""[^}]*\} 1"));
        Assert.That(metrics, Does.Not.Match(@"magcds_worker_lag_seconds_count\{[^}]*\} [1-9]"));
    }

    [Test]
    public async Task A_new_address_of_the_same_server_goes_on_from_the_cursor_of_the_old_one()
    {
        // Polled under its old address until five minutes ago; this result was written while the worker was down.
        await using (var db = StoreUnderTest.Open(StoreOptions()))
            await new WorkQueue(db, TimeProvider.System).SetStateAsync("http://old-address.example/fhir/R4", MagCds.Service.Worker.Poller.CursorKey,
                MagCds.Service.Worker.Poller.Format(DateTimeOffset.UtcNow.AddMinutes(-5)), CancellationToken.None);
        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));

        await H.StartAsync(new() { ["MagCds:Worker:PollFrom"] = "" });
        await H.DrainedAsync(1);
        Assert.That((await H.AllAsync<RiskAssessment>()).Single().Basis[0].Reference, Is.EqualTo("Observation/" + obs.Id), "not skipped by a start from now");
        Assert.That(H.Service!.Logs.Lines.Any(l => l.Contains("\"Name\":\"CursorCarriedOver\"", StringComparison.Ordinal)), "the carry-over is logged");
    }

    /// <summary>
    /// The server's former address named in PreviousServerUrl hands over its waiting work and dead letters: without
    /// it they waited under the old address for ever, unlisted and not replayable (found by a black-box probe). Until
    /// then, the queue view shows them under "elsewhere".
    /// </summary>
    [Test]
    public async Task The_previous_address_of_the_server_hands_over_its_waiting_work_and_dead_letters()
    {
        const string old = "http://old-address.example/fhir/R4";
        var ct = CancellationToken.None;
        var waiting = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        var failed = await Fhir.SeedAsync(Result("p2", 23.5m, "ACC-2"));
        await using (var db = StoreUnderTest.Open(StoreOptions()))
        {
            var queue = new WorkQueue(db, TimeProvider.System);
            await queue.EnqueueAsync(old, [("Observation", failed.Id!)], "poll", ct);
            var item = (await queue.LeaseAsync("old-worker", 1, TimeSpan.FromMinutes(1), ct, old)).Single();
            await queue.DeadLetterAsync(item, "old-worker", "http-422", ct);
            await queue.EnqueueAsync(old, [("Observation", waiting.Id!)], "subscription", ct);
            var elsewhere = await queue.ElsewhereAsync(Fhir.BaseUrl, ct);
            Assert.That(elsewhere[old], Is.EqualTo(((long)1, (long)1)), "shown while they wait there");
        }

        await H.StartAsync(new() { ["MagCds:Worker:PollIntervalSeconds"] = "0", ["MagCds:Worker:PreviousServerUrl"] = old + "/" });
        await H.DrainedAsync(1);
        Assert.That((await H.AllAsync<RiskAssessment>()).Single().Basis[0].Reference, Is.EqualTo("Observation/" + waiting.Id), "the waiting row ran");
        var dead = (await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker/dead-letters")).EnumerateArray().Single();
        Assert.That(dead.GetProperty("resource").GetString(), Is.EqualTo("Observation/" + failed.Id));
        using (var replay = await H.Client.PostAsync($"/admin/worker/dead-letters/{dead.GetProperty("id").GetInt64()}/replay", null))
            Assert.That(replay.StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
        await H.DrainedAsync(2);
        Assert.That(await H.AllAsync<RiskAssessment>(), Has.Count.EqualTo(2));
        Assert.That((await H.Client.GetFromJsonAsync<JsonElement>("/admin/worker")).GetProperty("elsewhere").EnumerateObject(), Is.Empty, "nothing left under the old address");
        Assert.That(H.Service!.Logs.Lines.Any(l => l.Contains("\"Name\":\"WorkMoved\"", StringComparison.Ordinal)), "the move is logged");
    }

    [Test]
    public async Task The_subscription_is_created_once_and_its_notifications_drive_the_work()
    {
        int port = FreePort();
        var settings = new Dictionary<string, string?>
        {
            ["MagCds:Worker:PollIntervalSeconds"] = "0", // subscriptions only: every assessment below came from a notification
            ["MagCds:Worker:Subscription:Create"] = "true",
            ["MagCds:Worker:Subscription:EndpointUrl"] = $"http://127.0.0.1:{port}/worker/notifications",
        };
        await H.StartAsync(settings, kestrelPort: port);
        await WaitUntilAsync(async () => (await H.AllAsync<Subscription>()).Count == 1, "the Subscription exists");

        var obs = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Count == 1, "the notified result is assessed");
        Assert.That((await H.AllAsync<RiskAssessment>())[0].Basis[0].Reference, Is.EqualTo("Observation/" + obs.Id));

        // A restart finds the Subscription it made and makes no second one.
        await H.StartAsync(settings, kestrelPort: port);
        await WaitUntilAsync(async () => H.Service!.Logs.Lines.Any(l => l.Contains("\"SubscriptionAction\":\"reused\"", StringComparison.Ordinal)), "the restarted worker reuses the Subscription");
        var subs = await H.AllAsync<Subscription>();
        Assert.That(subs, Has.Count.EqualTo(1));
        Assert.That(subs[0].Channel.Header, Is.EqualTo(new[] { $"X-MagCds-Secret: {Secret}" }));
        Assert.That(subs[0].Criteria, Is.EqualTo("Observation?code=http://loinc.org|39087-2"));

        // The secret is rotated: the same Subscription is updated to send the new one, and its notifications still drive the work.
        settings["MagCds:Worker:Subscription:Secret"] = "rotated-notification-secret";
        await H.StartAsync(settings, kestrelPort: port);
        await WaitUntilAsync(async () => H.Service!.Logs.Lines.Any(l => l.Contains("\"SubscriptionAction\":\"updated\"", StringComparison.Ordinal)), "the restarted worker updates the Subscription");
        subs = await H.AllAsync<Subscription>();
        Assert.That(subs, Has.Count.EqualTo(1));
        Assert.That(subs[0].Channel.Header, Is.EqualTo(new[] { "X-MagCds-Secret: rotated-notification-secret" }));
        var second = await Fhir.SeedAsync(Result("p2", 23.5m, "ACC-2"));
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Any(r => r.Basis[0].Reference == "Observation/" + second.Id), "the result notified with the new secret is assessed");
    }

    /// <summary>Starts the worker on subscriptions only (polling off), its Subscription looked at again every second; returns it once made.</summary>
    private async Task<Subscription> StartWithRecheckedSubscriptionAsync()
    {
        await H.StartAsync(new()
        {
            ["MagCds:Worker:PollIntervalSeconds"] = "0",
            ["MagCds:Worker:Subscription:Create"] = "true",
            ["MagCds:Worker:Subscription:EndpointUrl"] = "http://magcds.hospital.example/worker/notifications",
            ["MagCds:Worker:Subscription:RecheckSeconds"] = "1",
        });
        await WaitUntilAsync(async () => (await H.AllAsync<Subscription>()).Count == 1, "the Subscription exists");
        return (await H.AllAsync<Subscription>()).Single();
    }

    [Test]
    public async Task A_subscription_that_disappears_from_the_server_is_made_again()
    {
        var first = await StartWithRecheckedSubscriptionAsync();

        // Written before the Subscription goes (its notification cannot reach the example endpoint), so only the
        // catch-up poll after the Subscription is made again can find it, however soon the recheck runs.
        var missed = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        // Deleted on the server (or switched off there after MagCds was unreachable): without notifications the
        // worker would be deaf with polling off.
        await Fhir.Client.DeleteAsync("Subscription/" + first.Id);
        await WaitUntilAsync(async () => (await H.AllAsync<Subscription>()).Any(s => s.Id != first.Id), "a new Subscription is made");
        Assert.That(await H.AllAsync<Subscription>(), Has.Count.EqualTo(1));
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Any(r => r.Basis[0].Reference == "Observation/" + missed.Id),
            "a catch-up poll finds what changed meanwhile");
        Assert.That(H.Service!.Logs.Lines.Count(l => l.Contains("\"SubscriptionAction\":\"reused\"", StringComparison.Ordinal)), Is.Zero,
            "a recheck that finds it in place is not logged each time");
    }

    [Test]
    public async Task A_subscription_the_server_stopped_is_resumed_not_made_again_beside_it()
    {
        // The server stops it (MagCds was unreachable too long): R4 status error. The result is written first (its
        // notification cannot reach the example endpoint), so only the catch-up poll after the resumption finds it.
        var stopped = await StartWithRecheckedSubscriptionAsync();
        var missed = await Fhir.SeedAsync(Result("p1", 23.5m, "ACC-1"));
        stopped.Status = Subscription.SubscriptionStatus.Error;
        await Fhir.Client.UpdateAsync(stopped);
        await WaitUntilAsync(async () => H.Service!.Logs.Lines.Any(l => l.Contains("\"SubscriptionAction\":\"reactivated\"", StringComparison.Ordinal)), "the Subscription is resumed");
        var subs = await H.AllAsync<Subscription>();
        Assert.That(subs, Has.Count.EqualTo(1), "no second Subscription beside it");
        Assert.That(subs[0].Id, Is.EqualTo(stopped.Id));
        Assert.That(subs[0].Status, Is.Not.EqualTo(Subscription.SubscriptionStatus.Error));
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Any(r => r.Basis[0].Reference == "Observation/" + missed.Id),
            "a catch-up poll finds what changed while it was stopped");
    }

    [Test]
    public async Task A_topic_based_subscription_is_created_once_filtered_to_the_recognised_codes()
    {
        const string topic = "http://hospital.example/fhir/SubscriptionTopic/observation-changed";
        var settings = new Dictionary<string, string?>
        {
            ["MagCds:Worker:PollIntervalSeconds"] = "0",
            ["MagCds:Worker:Subscription:Create"] = "true",
            ["MagCds:Worker:Subscription:EndpointUrl"] = "http://magcds.hospital.example/worker/notifications",
            ["MagCds:Worker:Subscription:TopicUrl"] = topic,
        };
        await H.StartAsync(settings);
        await WaitUntilAsync(async () => (await H.AllAsync<Subscription>()).Count == 1, "the Subscription exists");
        await H.StartAsync(settings);
        await WaitUntilAsync(async () => H.Service!.Logs.Lines.Any(l => l.Contains("\"SubscriptionAction\":\"reused\"", StringComparison.Ordinal)), "the restarted worker reuses the Subscription");

        // As the FHIR server stored it (read back from the server, not MagCds's own object).
        var sub = (await H.AllAsync<Subscription>()).Single();
        Assert.That(sub.Meta?.Profile, Does.Contain(MagCds.Service.Worker.SubscriptionSetup.BackportProfile));
        Assert.That(sub.Criteria, Is.EqualTo(topic));
        Assert.That(sub.CriteriaElement.GetStringExtension(MagCds.Service.Worker.SubscriptionSetup.FilterCriteriaExtension),
            Is.EqualTo("Observation?code=http://loinc.org|39087-2"));
        Assert.That(sub.Channel.Type, Is.EqualTo(Subscription.SubscriptionChannelType.RestHook));
        Assert.That(sub.Channel.PayloadElement.GetExtensionValue<Code>(MagCds.Service.Worker.SubscriptionSetup.PayloadContentExtension)?.Value, Is.EqualTo("id-only"));
        Assert.That(sub.Channel.GetExtensionValue<UnsignedInt>(MagCds.Service.Worker.SubscriptionSetup.HeartbeatExtension)?.Value, Is.EqualTo(120));
        Assert.That(sub.Channel.Header, Is.EqualTo(new[] { $"X-MagCds-Secret: {Secret}" }));
    }

    /// <summary>
    /// Starts the worker, seeds <paramref name="seed"/> and waits for its assessment; runs <paramref name="beforeChange"/>
    /// (a check, an injected fault); changes the result on the server (<paramref name="change"/>, by default amended to a
    /// raised 23.5 Units); and waits until the worker has made the second assessment.
    /// </summary>
    private async Task AssessedThenChangedAsync(Observation seed, Func<Observation, Task>? beforeChange = null, Action<Observation>? change = null)
    {
        await H.StartAsync();
        var obs = await Fhir.SeedAsync(seed);
        await H.DrainedAsync(1);
        if (beforeChange is not null) await beforeChange(obs);
        (change ?? Amend)(obs);
        await Fhir.Client.UpdateAsync(obs);
        await WaitUntilAsync(async () => (await H.AllAsync<RiskAssessment>()).Count == 2, "the changed result is assessed");
        await H.DrainedAsync(2);
    }

    private static void Amend(Observation obs)
    {
        obs.Status = ObservationStatus.Amended;
        ((Quantity)obs.Value!).Value = 23.5m;
    }

    private static string KnowledgeVersion(RiskAssessment r) => r.Method!.Coding[0].Version!;

    private StoreOptions StoreOptions() => new()
    {
        Provider = Provider,
        SqliteConnectionString = StoreSetting("MagCds:Store:SqliteConnectionString") ?? "",
        PostgresConnectionString = StoreSetting("MagCds:Store:PostgresConnectionString"),
    };

    private string? StoreSetting(string key) => H.StoreSettings.GetValueOrDefault(key);

    /// <summary>A classic rest-hook notification of <paramref name="obs"/>, to the worker of <paramref name="via"/> (by default this test's).</summary>
    private async Task<HttpResponseMessage> PutNotificationAsync(Observation obs, WorkerHarness? via = null)
    {
        using var req = new HttpRequestMessage(HttpMethod.Put, $"/worker/notifications/Observation/{obs.Id}")
        {
            Content = new StringContent(obs.ToJson(), Encoding.UTF8, "application/fhir+json"),
        };
        req.Headers.Add("X-MagCds-Secret", Secret);
        return await (via ?? H).Client.SendAsync(req);
    }
}
