using System.Net;
using Hl7.Fhir.Model;
using Hl7.Fhir.Rest;
using MagCds.Core;
using MagCds.Core.Evaluation;
using MagCds.Core.Outputs;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Worker;

/// <summary>
/// Assesses one Observation of the watched server and writes the result back, the same way every time:
/// read it, read the patient's earlier results of the configured codes (for the trend), evaluate with the core, and
/// send one transaction that conditionally creates the new RiskAssessment and DetectedIssue on their deterministic
/// identifiers (so a redelivered event or a re-run creates nothing) and marks the Observation's earlier outputs:
/// <c>cancelled</c> when superseded by a newer assessment (amended result, newer knowledge), <c>entered-in-error</c>
/// when the Observation was entered in error. Each Observation so has at most one current assessment set.
/// </summary>
public sealed partial class AssessmentWriter(Evaluator evaluator, WorkerFhirClient fhir, IOptions<WorkerOptions> options, ILogger<AssessmentWriter> logger)
{
    private const string UrnSystem = "urn:ietf:rfc:3986";

    /// <summary>
    /// Returns the outcome code (no clinical content), the Observation version assessed and the outputs written (their
    /// urn:uuid identifiers when created or already there, their ids when marked or restored); throws <see cref="WorkFailure"/> for anything to retry
    /// or dead-letter.
    /// </summary>
    /// <param name="beforeWrite">Runs just before the write-back (the worker confirms its lease there); throws to stop it.</param>
    /// <param name="lastAssessment">Looks up the version and the series key of this worker's last assessment of this
    /// Observation (kept by its store). The series is how its outputs are found once the Observation itself is gone, or
    /// once a correction of its patient or identifier started a new series; the version tells a change already passed
    /// on to the later results' trends from a new one. Asked only when needed: a deleted Observation, a later version, a
    /// change or late arrival to pass on.</param>
    public async Task<Assessment> AssessAsync(string observationId, CancellationToken ct, Func<Task>? beforeWrite = null,
        Func<Task<(string? Version, string? Series)>>? lastAssessment = null)
    {
        (string? Version, string? Series)? last = null;
        async Task<(string? Version, string? Series)> Last() => last ??= lastAssessment is null ? (null, null) : await lastAssessment();
        using var client = fhir.Create();
        var obs = await Call(() => client.ReadAsync<Observation>("Observation/" + observationId, ct: ct), allowGone: true);
        if (obs is null)
            return await WithdrawDeletedAsync(client, "Observation/" + observationId, (await Last()).Series, ct, beforeWrite);
        string? version = obs.Meta?.VersionId;
        var input = new EvaluationInput(obs, "Observation/" + obs.Id, "Observation");
        bool antiMag = evaluator.IsAntiMag(obs);
        // A first version that is not anti-MAG never had outputs; a later one may have (its code was corrected away),
        // and so may one of a server that gives no versionId.
        if (!antiMag && version == "1") return new Assessment("not-anti-mag", version, [], null, []);

        var (history, laterMissIt) = antiMag && Searchable(obs.Subject?.Reference) is { } subject ? await HistoryAsync(client, subject, obs, ct) : ([], false);
        var result = antiMag ? evaluator.Evaluate(new EvaluationRequest([input], history)).Results[0] : null;

        var (identities, versions) = await IdentitiesAsync(client, obs, input, async () => (await Last()).Series, ct);
        var earlier = await EarlierOutputsAsync(client, identities, input.Reference!, ct);
        var tx = new Bundle { Type = Bundle.BundleType.Transaction };
        var present = new List<string>(); // outputs of this assessment already on the server as they should be
        string outcome;
        switch (result?.Outcome)
        {
            case InputOutcome.Evaluated when result.Interpretation is not null:
                var created = new[] { (Resource?)result.RiskAssessment, result.DetectedIssue }.OfType<Resource>().ToList();
                var current = created.Select(Urn).ToHashSet(StringComparer.Ordinal);
                foreach (var r in created)
                {
                    // Written before: nothing to create. Withdrawn since (the knowledge went back to an earlier
                    // version): made current again under its own id, rather than left withdrawn with nothing current
                    // in its place. Written twice (a server that ran a retried or racing create twice): the oldest
                    // stays, the others are withdrawn; a conditional create would fail on them for ever (412).
                    var same = earlier.Where(o => Urn(o) == Urn(r)).OrderBy(o => o.Meta?.LastUpdated ?? DateTimeOffset.MaxValue).ThenBy(o => o.Id, StringComparer.Ordinal).ToList();
                    var keep = same.FirstOrDefault(IsCurrent) ?? same.FirstOrDefault();
                    if (keep is null)
                    {
                        tx.Entry.Add(ConditionalCreate(r));
                        continue;
                    }
                    if (!IsCurrent(keep)) tx.Entry.Add(Restore(keep, r));
                    else present.Add(Urn(r));
                    foreach (var duplicate in same.Where(o => o != keep && IsCurrent(o)))
                        tx.Entry.Add(Mark(duplicate, ObservationStatus.Cancelled,
                            $"Duplicate: the same assessment is {keep.TypeName}/{keep.Id}, which stays current (it was written twice, e.g. by a request the FHIR server ran twice)."));
                }
                foreach (var old in earlier.Where(o => IsCurrent(o) && !current.Contains(Urn(o))))
                    tx.Entry.Add(Mark(old, ObservationStatus.Cancelled, PointsAt(old, input.Reference!)
                        ? $"Superseded: MagCds assessed this Observation again (amended or corrected result, corrected patient, a change to the earlier results its trend shows, or other knowledge); the current assessment has identifier {UrnSystem}|{Urn(created[0])}."
                        : $"Superseded: another Observation of the same result (the same patient and identifier), {input.Reference}, was assessed; one result has one current assessment, which has identifier {UrnSystem}|{Urn(created[0])}."));
                outcome = "evaluated-" + result.Interpretation.Category switch
                {
                    Category.Elevated => "elevated",
                    Category.NotElevated => "not-elevated",
                    _ => "cannot-interpret",
                };
                break;
            case InputOutcome.Retracted:
                foreach (var old in earlier.Where(o => Status(o) != ObservationStatus.EnteredInError))
                    tx.Entry.Add(Mark(old, ObservationStatus.EnteredInError,
                        "Withdrawn: the laboratory marked the Observation this assessment was based on entered-in-error."));
                outcome = "retracted";
                break;
            default:
                // The latest version cannot be assessed (cancelled, registered, no value, no longer anti-MAG...): an
                // assessment of an earlier version no longer describes the result, so it does not stay current.
                outcome = result?.Issues.FirstOrDefault()?.Code.Code ?? "not-anti-mag";
                foreach (var old in earlier.Where(IsCurrent))
                    tx.Entry.Add(Mark(old, ObservationStatus.Cancelled,
                        $"Withdrawn: the laboratory's latest version of the Observation this assessment was based on cannot be assessed by MagCds ({outcome}); this assessment no longer applies to it."));
                break;
        }

        if (tx.Entry.Count > 0)
        {
            if (beforeWrite is not null) await beforeWrite();
            await TransactAsync(client, tx, ct);
        }
        var written = present.Concat(tx.Entry.Select(Written)).ToList();
        // A changed result, or one that arrived after later results were assessed, may be (or belong) in the trends of
        // the patient's later results: they are assessed again (after this write, so they read it as it is now), and
        // get new outputs where their trend changed. Not again for a version this worker assessed before: the later
        // results were queued then (before that assessment was recorded). Without versions that cannot be known, so
        // there only a change the status states is passed on (not every assessment of a result that is not the latest).
        bool changed = IsChange(obs, versions);
        IReadOnlyList<string> later = [];
        if ((changed || (laterMissIt && version is not null)) && (version is null || (await Last()).Version != version))
        {
            var patients = versions.Where(evaluator.IsAntiMag).Select(v => (Subject: v.Subject?.Reference, When: Evaluator.ResultTime(v))).ToList();
            // A server without version history shows only the current version: the patient an earlier output names (a
            // result since moved to another patient) is searched too, all its results (the earlier time is not known).
            foreach (var o in earlier.Where(o => PointsAt(o, input.Reference!)))
                if (OutputSubject(o) is { } s && !patients.Any(p => p.Subject == s)) patients.Add((s, null));
            // A change reaches every later result; a late arrival only those written before it (the others were
            // assessed after it). Time stamps are not proof of what a result's assessment could see (a server may
            // stamp a write before it commits), so a change, which is rare, does not rely on them.
            later = await LaterResultsAsync(client, patients, changed ? null : obs, obs.Id ?? observationId, ct);
        }
        return new Assessment(outcome, version, written, identities[0].Series, later);
    }

    /// <summary>
    /// A result that is not as it was first reported: more than one version read, a numbered version after the first
    /// (a server without version history), or a status that says so (a server without versionIds). A first version is
    /// new: every result whose trend it could belong to is dated before it, or is assessed after it anyway.
    /// </summary>
    private static bool IsChange(Observation obs, IReadOnlyList<Observation> versions) =>
        versions.Select(v => v.Meta?.VersionId).Distinct(StringComparer.Ordinal).Skip(1).Any()
        || (int.TryParse(obs.Meta?.VersionId, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n) && n > 1)
        || obs.Status is ObservationStatus.Amended or ObservationStatus.Corrected or ObservationStatus.EnteredInError or ObservationStatus.Cancelled;

    /// <summary>
    /// The ids of the patient's anti-MAG results dated after a changed, late-arriving or deleted result (after the
    /// earliest time of any of its versions, so one whose date was corrected to a later one is left out of the trends
    /// it was in; every result of the patient when a time is unknown), for every patient a version named. Their trends
    /// may show it as it was, or miss it; assessed again, each gets new outputs if its trend changed (the trend enters
    /// the output ids) and nothing new if not.
    /// </summary>
    /// <param name="versions">The patient and time of each version (no time: that of a deleted result is not known).</param>
    /// <param name="arrived">A late arrival (not a change): results written after it are left out (<see cref="WrittenNoLaterThan"/>).</param>
    private async Task<IReadOnlyList<string>> LaterResultsAsync(FhirClient client, IEnumerable<(string? Subject, DateTimeOffset? When)> versions, Observation? arrived, string changedId, CancellationToken ct)
    {
        if (options.Value.HistoryCount == 0) return []; // no trends are shown
        var later = new List<string>();
        foreach (var patient in versions.GroupBy(v => Searchable(v.Subject)))
        {
            if (patient.Key is null) continue;
            var from = patient.All(v => v.When is not null) ? patient.Min(v => v.When) : null;
            // All the patient's results, "later" decided here by the core's own reading of times: a FHIR date search
            // covers the effective time only (a result dated by issued alone would be missed) and its "gt" may match a
            // date that only overlaps. Strictly later: a result without a time has no trend, nor does the same time. So
            // each reassessment that passes a change on reaches only later results, and the chain ends.
            foreach (var o in (await SearchAllAsync(client, ResultsOf(patient.Key) + "&_count=100", ct)).OfType<Observation>())
                if (o.Id is { } id && id != changedId && Evaluator.ResultTime(o) is { } when && (from is null || when > from)
                    && (arrived is null || WrittenNoLaterThan(o, arrived)) && !later.Contains(id)) later.Add(id);
        }
        return later;
    }

    /// <summary>The search for a patient's results of the recognised codes (the history and the later results both start here).</summary>
    private string ResultsOf(string subject) =>
        $"Observation?subject={Uri.EscapeDataString(subject)}&code={string.Join(",", evaluator.RecognisedCodes.Select(Uri.EscapeDataString))}";

    private static string SearchInstant(DateTimeOffset t) =>
        Uri.EscapeDataString(t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>
    /// The Observation was deleted from the server (read answers 404 or 410): an assessment of a result that is no
    /// longer there does not stay current. Its outputs are found without it, by their series identifier: the one the
    /// store kept from the last assessment, and those carried by MagCds DetectedIssues that implicate the Observation.
    /// Only MagCds's own outputs (by that identifier) about this very Observation are withdrawn (cancelled, with a
    /// note); anything else that implicates it (another system's alerts) is left alone. Another Observation of the
    /// same identity (a duplicate the lab kept) whose assessment this one superseded is named for reassessment, so it
    /// is not left with none.
    /// </summary>
    private async Task<Assessment> WithdrawDeletedAsync(FhirClient client, string observation, string? knownSeries, CancellationToken ct, Func<Task>? beforeWrite)
    {
        var identities = new List<(string Series, string? Subject)>();
        if (knownSeries is not null) identities.Add((knownSeries, null));
        await AddImplicatedSeriesAsync(client, observation, identities, ct);
        if (identities.Count == 0) return new Assessment("gone", null, [], null, []);

        var outputs = await EarlierOutputsAsync(client, identities, observation, ct, matchAll: false, pointingElsewhere: true);
        var tx = new Bundle { Type = Bundle.BundleType.Transaction };
        foreach (var old in outputs.Where(o => IsCurrent(o) && PointsAt(o, observation)))
            tx.Entry.Add(Mark(old, ObservationStatus.Cancelled,
                "Withdrawn: the Observation this assessment was based on was deleted from the FHIR server; this assessment no longer applies to a result on record."));
        if (tx.Entry.Count > 0)
        {
            if (beforeWrite is not null) await beforeWrite();
            await TransactAsync(client, tx, ct);
        }
        var siblings = outputs.Select(AssessedObservation).OfType<string>().Where(o => o != observation && o.StartsWith("Observation/", StringComparison.Ordinal))
            .Select(o => o["Observation/".Length..]).Distinct(StringComparer.Ordinal).ToList();
        // The patient's other results may show the deleted one in their trends; its time went with it.
        var patients = outputs.Where(o => PointsAt(o, observation)).Select(o => (OutputSubject(o), (DateTimeOffset?)null));
        var later = await LaterResultsAsync(client, patients, null, observation["Observation/".Length..], ct);
        return new Assessment("gone", null, tx.Entry.Select(e => e.Request!.Url ?? "").ToList(), null, [.. siblings.Union(later, StringComparer.Ordinal)]);
    }

    private static WorkFailure Failure(int status)
    {
        // 409/412: an earlier output changed since it was read (another writer), or a conditional create raced
        // another; reading again resolves it. R4 names both for version conflicts: HAPI answers a stale If-Match
        // with 409, others with 412.
        // 401/403: a token may be renewed or a grant fixed, so try again before giving up.
        bool retry = status is 401 or 403 or 408 or 409 or 412 or 429 || status >= 500;
        return new WorkFailure(status > 0 ? "http-" + status : "unreadable-response", retry);
    }

    /// <summary>The series identifiers a MagCds output carries (none for anyone else's resource).</summary>
    private IEnumerable<string> SeriesOf(Resource r) =>
        (r switch { RiskAssessment ra => ra.Identifier, DetectedIssue di => di.Identifier, _ => [] })
        .Where(i => i.System == evaluator.Canonical.ObservationSeriesSystem && !string.IsNullOrEmpty(i.Value)).Select(i => i.Value!);

    /// <summary>Every resource a search finds, all pages (at most <see cref="MaxPages"/>).</summary>
    private async Task<List<Resource>> SearchAllAsync(FhirClient client, string query, CancellationToken ct)
    {
        var found = new List<Resource>();
        var followed = new HashSet<string>(StringComparer.Ordinal);
        var page = await Call(() => client.GetAsync(query, ct), allowGone: false) as Bundle;
        for (int pages = 1; page is not null; pages++)
        {
            found.AddRange(page.Entry.Select(e => e.Resource).OfType<Resource>());
            page = !Hosting.SearchSets.HasUnreadNext(page, followed) ? null
                : pages == MaxPages ? throw TooManyPages()
                : await Call(() => client.ContinueAsync(page, ct: ct), allowGone: false);
        }
        return found;
    }

    /// <summary>
    /// Pages read for one Observation's own versions or outputs: a handful at most in practice. More means a server
    /// whose paging does not end (new next links for ever), and the item is a dead letter rather than a worker slot
    /// taken for good.
    /// </summary>
    private const int MaxPages = 50;

    private WorkFailure TooManyPages()
    {
        TooManyPagesRead(logger, MaxPages);
        return new WorkFailure("too-many-pages", retryable: false);
    }

    /// <summary>Pages of earlier results read from a server that does not sort them (HistoryCount per page).</summary>
    private const int MaxUnsortedHistoryPages = 10;

    /// <summary>
    /// The patient's most recent earlier results of the configured codes, and whether the server holds results dated
    /// after this one that may have been assessed without it (written to the server before it: it arrived late, or was
    /// amended after them). The first search asks for the most recent results whatever their date: when this result is
    /// the latest (the usual case), or all the patient's results fit in one page, that is the history, in one search.
    /// Otherwise a second search asks for those dated before this one: an amended or late-arriving older result would
    /// get the patient's most recent results, all later than itself, and no trend.
    /// </summary>
    private async Task<(IReadOnlyList<EvaluationInput> History, bool LaterMissIt)> HistoryAsync(FhirClient client, string subject, Observation current, CancellationToken ct)
    {
        int n = options.Value.HistoryCount;
        if (n == 0) return ([], false);
        string currentId = current.Id ?? "";
        var when = Evaluator.ResultTime(current);
        bool Later(Observation o) => o.Id != currentId && Evaluator.ResultTime(o) > when;
        // One more than the history holds: this result itself is usually among the most recent.
        var (found, complete) = await RecentResultsAsync(client, subject, "", n + 1, ct);
        bool laterMissIt = found is not null && found.Any(o => Later(o) && WrittenNoLaterThan(o, current));
        // Enough earlier results on the first page, counted as the core counts them (same-time and undated ones are not).
        if (when is { } t && (found is null || (!complete && found.Count(o => o.Id != currentId && Evaluator.ResultTime(o) < t) < n)))
            // FHIR's "lt" also matches a result whose date (a month, a day) starts before this instant; the core keeps
            // only those that are earlier.
            (found, _) = await RecentResultsAsync(client, subject, "&date=lt" + SearchInstant(t), n, ct);
        if (found is null)
        {
            HistoryUnsorted(logger, MaxUnsortedHistoryPages);
            return ([], laterMissIt);
        }
        return (found.Where(o => o.Id != currentId && !Later(o)).OrderByDescending(o => Evaluator.ResultTime(o) ?? DateTimeOffset.MinValue).Take(n)
            .Select((o, i) => new EvaluationInput(o, "Observation/" + o.Id, $"history[{i}]")).ToList(), laterMissIt);
    }

    /// <summary>
    /// Whether <paramref name="later"/> was written to the server no later than <paramref name="changed"/> (by
    /// <c>meta.lastUpdated</c>; unknown counts as yes): only then may its assessment have been made without the change.
    /// One written after it was assessed after it, and its trend already shows it as it is.
    /// </summary>
    private static bool WrittenNoLaterThan(Observation later, Observation changed) =>
        later.Meta?.LastUpdated is not { } l || changed.Meta?.LastUpdated is not { } c || l <= c;

    /// <summary>
    /// The patient's most recent results of the configured codes (with <paramref name="filter"/>), and whether they
    /// are all there are. Newest first as the server sorted them, when its self link says it applied <c>_sort</c>: one
    /// page. A server may skip a parameter it does not support (R4 search rules), and then the most recent may be on
    /// any page: all are read (up to <see cref="MaxUnsortedHistoryPages"/>) and ordered by the caller. With more than
    /// that, null: no trend is shown rather than one that may leave out the latest results.
    /// </summary>
    private async Task<(List<Observation>? Found, bool Complete)> RecentResultsAsync(FhirClient client, string subject, string filter, int count, CancellationToken ct)
    {
        var page = await Call(() => client.GetAsync($"{ResultsOf(subject)}{filter}&_sort=-date&_count={count}", ct), allowGone: false) as Bundle;
        bool sorted = Hosting.SearchSets.SaysSorted(page);
        var found = new List<Observation>();
        for (int pages = 1; page is not null; pages++)
        {
            found.AddRange(page.Entry.Select(e => e.Resource).OfType<Observation>());
            if (page.NextLink is null) return (found, true);
            if (sorted) return (found, false);
            if (pages == MaxUnsortedHistoryPages) return (null, false);
            page = await Call(() => client.ContinueAsync(page, ct: ct), allowGone: false);
        }
        return (found, true);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The FHIR server did not sort a patient's earlier results and has more than {Pages} pages of them: the assessment is written without a trend rather than with one that may leave out the latest")]
    private static partial void HistoryUnsorted(ILogger logger, int pages);

    [LoggerMessage(Level = LogLevel.Error, Message = "The FHIR server's paging of one Observation's versions or outputs did not end after {Pages} pages: dead-lettered as too-many-pages")]
    private static partial void TooManyPagesRead(ILogger logger, int pages);

    /// <summary>
    /// The series identifier (and subject) of every version of the Observation. Its identity in MagCds includes the
    /// subject and business identifier, so a laboratory's patient or identifier correction starts a new series; the
    /// outputs of the earlier one are found through the Observation's version history, which is read only when there
    /// is an earlier version, and through the series the store kept from this worker's last assessment of it. A server
    /// without version history leaves only the store's series and the MagCds DetectedIssues that implicate the
    /// Observation (as for a deleted one), so a corrected patient's earlier assessment is still found and withdrawn.
    /// Also returns the versions read (the current one first).
    /// </summary>
    private async Task<(IReadOnlyList<(string Series, string? Subject)> Identities, IReadOnlyList<Observation> Versions)> IdentitiesAsync(
        FhirClient client, Observation obs, EvaluationInput input, Func<Task<string?>>? knownSeries, CancellationToken ct)
    {
        var found = new List<(string Series, string? Subject)>();
        var versions = new List<Observation>();
        void Add(EvaluationInput version)
        {
            versions.Add(version.Observation);
            string? subject = Searchable(version.Observation.Subject?.Reference);
            foreach (var series in new[] { DeterministicIds.Keys(version).Series, DeterministicIds.EarlierReleaseSeries(version) })
                if (series is not null && !found.Contains((series, subject))) found.Add((series, subject));
        }
        Add(input);
        if (obs.Meta?.VersionId is null or "1") return (found, versions);
        // Outputs of another series are taken only when they point at this Observation (EarlierOutputsAsync).
        if (knownSeries is not null && await knownSeries() is { } kept && !found.Any(x => x.Series == kept)) found.Add((kept, null));
        Bundle? page;
        try
        {
            page = await Call(() => client.HistoryAsync(input.Reference!, ct: ct), allowGone: false);
        }
        catch (WorkFailure e) when (e.Reason is "http-400" or "http-404" or "http-405" or "http-501")
        {
            // A server without version history. Everything else (a refused token, a busy server) is retried like any
            // other call.
            HistoryUnavailable(logger, e.Reason);
            await AddImplicatedSeriesAsync(client, input.Reference!, found, ct);
            return (found, versions);
        }
        var followed = new HashSet<string>(StringComparer.Ordinal);
        for (int pages = 1; page is not null; pages++)
        {
            foreach (var version in page.Entry.Select(e => e.Resource).OfType<Observation>())
                Add(new EvaluationInput(version, input.Reference, input.Location));
            page = !Hosting.SearchSets.HasUnreadNext(page, followed) ? null
                : pages == MaxPages ? throw TooManyPages()
                : await Call(() => client.ContinueAsync(page, ct: ct), allowGone: false);
        }
        return (found, versions);
    }

    /// <summary>The series of the MagCds DetectedIssues that implicate the Observation: found without the Observation or its history.</summary>
    private async Task AddImplicatedSeriesAsync(FhirClient client, string observation, List<(string Series, string? Subject)> identities, CancellationToken ct)
    {
        foreach (var di in (await SearchAllAsync(client, $"DetectedIssue?implicated={Uri.EscapeDataString(observation)}&_count=100", ct)).OfType<DetectedIssue>())
            foreach (var series in SeriesOf(di))
                if (!identities.Any(x => x.Series == series)) identities.Add((series, Searchable(di.Patient?.Reference)));
    }

    /// <summary>Every RiskAssessment and DetectedIssue MagCds wrote about this Observation, any version, any status.</summary>
    /// <param name="matchAll">The first identity is the Observation's own, whose outputs are taken whatever they point at.</param>
    /// <param name="pointingElsewhere">Also the outputs of these identities about other Observations.</param>
    private async Task<IReadOnlyList<Resource>> EarlierOutputsAsync(FhirClient client, IReadOnlyList<(string Series, string? Subject)> identities, string observation, CancellationToken ct,
        bool matchAll = true, bool pointingElsewhere = false)
    {
        var found = new List<Resource>();
        foreach (var (series, subject) in identities)
        foreach (var type in new[] { "RiskAssessment", "DetectedIssue" })
        {
            // Narrowed by the subject, never by the Observation: the series of this result may hold outputs about
            // another Observation of the same result (sent twice, as two resources), and both kinds must be found. A
            // DetectedIssue names only a Patient (a Group result's has none), so there the identifier alone selects.
            string narrow = subject is null ? ""
                : type == "RiskAssessment" ? $"subject={Uri.EscapeDataString(subject)}&"
                : MagCds.Core.Outputs.OutputBuilder.NamesPatient(subject) ? $"patient={Uri.EscapeDataString(subject)}&" : "";
            string query = $"{type}?{narrow}identifier={Uri.EscapeDataString(evaluator.Canonical.ObservationSeriesSystem + "|" + series)}&_count=100";
            // An earlier identity of this Observation (an identifier since corrected) may be another Observation's
            // now: only outputs that point at this one are taken.
            found.AddRange((await SearchAllAsync(client, query, ct)).Where(r => r is RiskAssessment or DetectedIssue
                && ((matchAll && series == identities[0].Series) || pointingElsewhere || PointsAt(r, observation))));
        }
        return found.DistinctBy(r => (r.TypeName, r.Id)).ToList();
    }

    /// <summary>
    /// Whether an output is the assessment of this Observation: the first basis of a RiskAssessment, the first implicated
    /// of a DetectedIssue (the later basis entries are the earlier results its trend shows, other Observations).
    /// </summary>
    private static bool PointsAt(Resource output, string observation) => AssessedObservation(output) == observation;

    /// <summary>The patient a MagCds output is about.</summary>
    private static string? OutputSubject(Resource output) => output switch
    {
        RiskAssessment ra => ra.Subject?.Reference,
        DetectedIssue di => di.Patient?.Reference,
        _ => null,
    };

    private static string? AssessedObservation(Resource output) => output switch
    {
        RiskAssessment ra => ra.Basis.FirstOrDefault()?.Reference,
        DetectedIssue di => di.Implicated.FirstOrDefault()?.Reference,
        _ => null,
    };

    /// <summary>A subject reference a search can use: a contained one ("#p") means nothing outside its Observation.</summary>
    private static string? Searchable(string? subject) => subject is ['#', ..] ? null : subject;

    [LoggerMessage(Level = LogLevel.Warning, Message = "The FHIR server answered {Status} to an Observation's history: outputs made under an earlier subject or identifier of a corrected result are found only through this store's last assessment and MagCds DetectedIssues")]
    private static partial void HistoryUnavailable(ILogger logger, string status);

    private static Bundle.EntryComponent ConditionalCreate(Resource r)
    {
        string urn = Urn(r);
        var copy = (Resource)r.DeepCopy();
        copy.Id = null; // the server names it; the identifier is what makes it unique
        return new Bundle.EntryComponent
        {
            // Not the identifier's urn itself: servers rewrite every occurrence of an entry's fullUrl in the Bundle to
            // the new resource's id (R4 transaction rules cover uri elements; some servers touch any string), and the
            // identifier must survive unchanged for the next conditional create to match it.
            FullUrl = EntryUrl(urn),
            Resource = copy,
            Request = new Bundle.RequestComponent
            {
                Method = Bundle.HTTPVerb.POST,
                Url = r.TypeName,
                IfNoneExist = $"{NarrowFirst(r.TypeName, (r as RiskAssessment)?.Subject?.Reference, (r as DetectedIssue)?.Implicated.FirstOrDefault()?.Reference)}identifier={Uri.EscapeDataString(UrnSystem + "|" + urn)}",
            },
        };
    }

    /// <summary>
    /// A selective parameter before an output's own identifier in a conditional create: the subject of a RiskAssessment,
    /// the Observation a DetectedIssue implicates. The identifier alone selects the same resource, but servers that match parameters in order, or
    /// have no index on identifier, find them far sooner (the identifier search parameter spans 30 resource types).
    /// </summary>
    private static string NarrowFirst(string type, string? subject, string? observation) => type switch
    {
        "RiskAssessment" when !string.IsNullOrEmpty(subject) => $"subject={Uri.EscapeDataString(subject)}&",
        "DetectedIssue" when !string.IsNullOrEmpty(observation) => $"implicated={Uri.EscapeDataString(observation)}&",
        _ => "",
    };

    /// <summary>A urn:uuid for the Bundle entry, derived from (but never equal to) the output's identifier.</summary>
    private static string EntryUrl(string urn)
    {
        Span<byte> h = stackalloc byte[32];
        System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes("bundle-entry|" + urn), h);
        return DeterministicIds.Urn(h[..16]);
    }

    /// <summary>An update of an earlier output's status, only if nobody changed it since it was read (If-Match).</summary>
    private Bundle.EntryComponent Mark(Resource old, ObservationStatus status, string note)
    {
        var copy = (Resource)old.DeepCopy();
        switch (copy)
        {
            case RiskAssessment ra: ra.Status = status; ra.Note.Add(new Annotation { Text = new Markdown(note) }); break;
            case DetectedIssue di: di.Status = status; di.Detail = note + "\n\n" + di.Detail; break;
        }
        return Update(old, copy);
    }

    /// <summary>An earlier output, withdrawn since, written again as the core made it now (its status and text current).</summary>
    private Bundle.EntryComponent Restore(Resource old, Resource fresh)
    {
        var copy = (Resource)fresh.DeepCopy();
        copy.Id = old.Id;
        return Update(old, copy);
    }

    /// <summary>A PUT of <paramref name="replacement"/> over <paramref name="old"/>, only if nobody changed it since it was read (If-Match).</summary>
    private Bundle.EntryComponent Update(Resource old, Resource replacement) => new()
    {
        FullUrl = $"{fhir.Server}/{old.TypeName}/{old.Id}", // absolute, as a Bundle entry's fullUrl must be
        Resource = replacement,
        Request = new Bundle.RequestComponent
        {
            Method = Bundle.HTTPVerb.PUT,
            Url = $"{old.TypeName}/{old.Id}",
            IfMatch = old.Meta?.VersionId is { } v ? $"W/\"{v}\"" : null,
        },
    };

    private static string Urn(Resource r) => r switch
    {
        RiskAssessment ra => ra.Identifier.FirstOrDefault(i => i.System == UrnSystem)?.Value,
        DetectedIssue di => di.Identifier.FirstOrDefault(i => i.System == UrnSystem)?.Value,
        _ => null,
    } ?? "";

    private static ObservationStatus? Status(Resource r) => r switch
    {
        RiskAssessment ra => ra.Status,
        DetectedIssue di => di.Status,
        _ => null,
    };

    private static bool IsCurrent(Resource r) => Status(r) is not (ObservationStatus.Cancelled or ObservationStatus.EnteredInError);

    /// <summary>
    /// Sends the write-back and checks what each entry says. A transaction is all or nothing, so a conformant server
    /// answers an error for the whole of it; a server that runs it entry by entry instead (as a batch) answers 200 with
    /// a failed entry inside, and that must not count as written: the failure is the entry's, and the next attempt
    /// reads again and writes only what is still missing. An answer that does not confirm every entry (R4: one response
    /// entry per request entry, in order, each with its status) is not taken as written either.
    /// </summary>
    private static async Task TransactAsync(FhirClient client, Bundle tx, CancellationToken ct)
    {
        var response = await Call(() => client.TransactionAsync(tx, ct), allowGone: false);
        if (response is null || response.Entry.Count != tx.Entry.Count) throw new WorkFailure("unconfirmed-write", retryable: true);
        var statuses = response.Entry.Select(e => e.Response?.Status?.Trim()).ToList();
        int bad = statuses.FindIndex(s => s is null || !s.StartsWith('2'));
        if (bad < 0) return;
        var failure = statuses[bad] is { } status
            ? Failure(int.TryParse(status.AsSpan(0, Math.Min(3, status.Length)), out int code) ? code : 0)
            : new WorkFailure("unconfirmed-write", retryable: true);
        // What the server applied all the same is named, so the audit trail shows it (the next attempt finds it
        // written and does not list it again).
        failure.Applied = [.. tx.Entry.Where((_, i) => statuses[i] is { } s && s.StartsWith('2')).Select(Written)];
        throw failure;
    }

    /// <summary>How an entry of the write-back is named in the audit: a created output by its urn:uuid, an updated one by its id.</summary>
    private static string Written(Bundle.EntryComponent e) => e.Request!.Method == Bundle.HTTPVerb.POST ? Urn(e.Resource!) : e.Request.Url ?? "";

    /// <summary>Runs one FHIR call and sorts its failure: worth retrying (server busy or down), or not (the request is wrong).</summary>
    private static async Task<T?> Call<T>(Func<Task<T?>> call, bool allowGone) where T : class
    {
        try
        {
            return await call();
        }
        catch (FhirOperationException e) when (allowGone && e.Status is HttpStatusCode.NotFound or HttpStatusCode.Gone)
        {
            return null;
        }
        catch (FhirOperationException e)
        {
            throw Failure((int)e.Status);
        }
        catch (Hl7.Fhir.Serialization.DeserializationFailedException) { throw new WorkFailure("unreadable-response", retryable: false); }
        catch (FormatException) { throw new WorkFailure("unreadable-response", retryable: false); }
        // Firely reading a string that escapes half of a UTF-16 surrogate pair: an answer no .NET string can hold.
        catch (InvalidOperationException e) when (e is not ObjectDisposedException) { throw new WorkFailure("unreadable-response", retryable: false); }
    }
}

/// <summary>
/// What one assessment did: its outcome code, the Observation version read, the outputs written or marked, the series
/// key of the Observation's outputs (kept by the store, to find them once the Observation is deleted), and other
/// Observations to assess again (ids: the patient's later results whose trends may show a change, a late arrival or a
/// deletion; after a deletion, also a duplicate whose assessment the deleted one had superseded).
/// </summary>
public sealed record Assessment(string Outcome, string? Version, IReadOnlyList<string> Outputs, string? Series, IReadOnlyList<string> Reassess);

/// <summary>A failed attempt: <see cref="Reason"/> is an outcome code (no PHI); retryable ones come back later.</summary>
public sealed class WorkFailure(string reason, bool retryable) : Exception(reason)
{
    public string Reason { get; } = reason;
    public bool Retryable { get; } = retryable;

    /// <summary>Outputs the server wrote although the write-back failed (a transaction it ran entry by entry).</summary>
    public IReadOnlyList<string> Applied { get; set; } = [];

    /// <summary>
    /// The server was down, busy or too slow: says nothing about this resource, so it does not count towards giving
    /// it up before <see cref="WorkerOptions.OutageToleranceHours"/> (an outage must not empty the queue into the dead letters).
    /// </summary>
    public bool ServerUnavailable => Reason is "unreachable" or "paused" or "timeout" or "circuit-open" or "http-408" or "http-429"
                                     || (Reason.StartsWith("http-5", StringComparison.Ordinal) && Reason.Length == 8);
}
