using Hl7.Fhir.Model;
using MagCds.Core.Knowledge;
using MagCds.Core.Outputs;

namespace MagCds.Core.Evaluation;

/// <summary>Which Observation codes MagCds recognises: LOINC 39087-2 plus the deployer's "system|code" pairs.</summary>
public sealed record EvaluationOptions
{
    public IReadOnlyList<string> AdditionalCodes { get; init; } = [];

    /// <summary>The canonical base of the codes, identifiers and profiles the outputs carry.</summary>
    public CanonicalUrls Canonical { get; init; } = CanonicalUrls.Default;
}

/// <summary>
/// The evaluation core's entry point, shared by every door: recognise, check status and subject, read the value,
/// interpret it, add the trend from earlier results of the same patient and assay, and build the FHIR outputs.
/// Pure and thread-safe: the same request always gives the same response, ids included.
/// </summary>
public sealed class Evaluator
{
    private readonly KnowledgeBase _knowledge;
    private readonly Interpreter _interpreter;
    private readonly OutputBuilder _outputs;
    private readonly HashSet<string> _codes;
    private readonly Func<Prepared, Category> _classify; // how an earlier result is judged for the trend

    public Evaluator(KnowledgeBase knowledge, EvaluationOptions options)
    {
        _knowledge = knowledge;
        _interpreter = new Interpreter(knowledge);
        Canonical = options.Canonical;
        _outputs = new OutputBuilder(knowledge, options.Canonical);
        _classify = p => _interpreter.Interpret(p.Input.Observation, p.Value!).Category;
        _codes = new HashSet<string>(StringComparer.Ordinal) { $"{CanonicalUrls.Loinc}|{CanonicalUrls.AntiMagLoinc}" };
        foreach (var c in options.AdditionalCodes) _codes.Add(c.Trim());
    }

    public KnowledgeBase Knowledge => _knowledge;

    public CanonicalUrls Canonical { get; }

    /// <summary>Statements of the knowledge with their citation labels and sources (e.g. the ordering guidance).</summary>
    public (string Text, IReadOnlyList<Citation> Citations) Cite(IReadOnlyList<string> statementIds) => _outputs.Cite(statementIds);

    public bool IsAntiMag(Observation obs) => IsAntiMagCode(obs.Code);

    /// <summary>True when the concept (an Observation or ServiceRequest code) is a recognised anti-MAG IgM code.</summary>
    public bool IsAntiMagCode(CodeableConcept? code) => code?.Coding.Any(c => _codes.Contains($"{c.System}|{c.Code}")) == true;

    /// <summary>The recognised codes as "system|code", e.g. for a FHIR search.</summary>
    public IReadOnlyCollection<string> RecognisedCodes => _codes;

    /// <summary>When a result applies (effective time, else issued): how the core orders a patient's results.</summary>
    public static DateTimeOffset? ResultTime(Observation obs) => TrendBuilder.When(obs);

    /// <summary>
    /// For doors that receive a patient's results rather than one result (CDS Hooks): the latest anti-MAG results that
    /// can be evaluated (one, or several of the same time, at most five: raised ones first) become the inputs, every
    /// other one their history. Empty when there is none.
    /// </summary>
    /// <param name="maxEarlier">
    /// How many of the results dated before the latest are kept, the most recent: the trend, and so the output ids,
    /// then follow the same results as the worker's (which reads that many before each result), however many results
    /// a client sends.
    /// </param>
    public EvaluationRequest LatestWithHistory(IReadOnlyList<EvaluationInput> results, int maxEarlier = int.MaxValue)
    {
        const int MaxLatest = 5;
        // The latest results that can be assessed: a newer one that cannot (cancelled, no value, under a modifier
        // MagCds does not know) must not hide an earlier raised result behind an empty answer. Results of the same
        // time (two assays of one sample, a second result of the same draw) are all the latest, whenever each was
        // reported: one raised result must never be hidden behind another. Versions of one result among them count
        // once (the core assesses the newest). Each card states the date of the result it shows.
        var latest = new List<EvaluationInput>();
        var latestWhen = DateTimeOffset.MinValue;
        foreach (var r in results)
        {
            if (!IsReportedResult(r.Observation) || r.Observation.Value is null || HasModifiers(r.Observation) || AboutFocus(r.Observation)) continue;
            var when = TrendBuilder.When(r.Observation) ?? DateTimeOffset.MinValue;
            if (latest.Count == 0 || when > latestWhen) (latest, latestWhen) = ([r], when);
            else if (when == latestWhen) latest.Add(r);
        }
        if (latest.Count == 0) return new EvaluationRequest([], []);
        // In the same order whatever the order they came in: the later reported first, then by identity.
        latest.Sort((a, b) => IssuedLater(a, b) ? -1 : IssuedLater(b, a) ? 1 : 0);
        // Many results of one time are bad data (a feed that stamps a day's results with one time, a result copied
        // hundreds of times): the ones assessed are bounded, and chosen so that none left out is more worrying than
        // one assessed (raised first, then those that cannot be interpreted). Their outputs are built only for these.
        if (latest.Count > MaxLatest)
            latest = [.. latest.OrderBy(r => ValueReader.Read(r.Observation) is { } v
                        ? _interpreter.Interpret(r.Observation, v).Category switch { Category.Elevated => 0, Category.CannotInterpret => 1, _ => 2 }
                        : 1)
                      .Take(MaxLatest)];
        var history = results.Where(r => !latest.Contains(r)).ToList();
        var earlier = history.Where(r => TrendBuilder.When(r.Observation) < latestWhen).ToList();
        if (earlier.Count > maxEarlier)
        {
            // Results of the same time are ranked by identity, not by where they sat in the request.
            var dropped = earlier.OrderByDescending(r => TrendBuilder.When(r.Observation))
                .ThenByDescending(r => DeterministicIds.Keys(r).Observation, StringComparer.Ordinal)
                .Skip(maxEarlier).ToHashSet();
            history.RemoveAll(dropped.Contains);
        }
        return new EvaluationRequest(latest, history);
    }

    /// <summary>An anti-MAG result the laboratory reported (final, amended, corrected or preliminary), whether or not it can be assessed.</summary>
    public bool IsReportedResult(Observation o) => IsAntiMag(o) && o.Status is ObservationStatus.Final or ObservationStatus.Amended
        or ObservationStatus.Corrected or ObservationStatus.Preliminary;

    /// <summary>
    /// An anti-MAG result of the subject on file, whether or not it can be assessed: any status but registered (no
    /// result yet), cancelled or entered-in-error, and not about someone else (<see cref="AboutFocus"/>).
    /// </summary>
    public bool IsOnFile(Observation o) => IsAntiMag(o) && !AboutFocus(o)
        && o.Status is not (ObservationStatus.Registered or ObservationStatus.Cancelled or ObservationStatus.EnteredInError);

    /// <summary>Between two results of the same time: the later issued, else the content decides (never the order they came in).</summary>
    private static bool IssuedLater(EvaluationInput a, EvaluationInput b)
    {
        DateTimeOffset? ia = a.Observation.IssuedElement?.Value, ib = b.Observation.IssuedElement?.Value;
        if (ia != ib) return ia > ib || (ia is not null && ib is null);
        DeterministicIds.InputKeys ka = DeterministicIds.Keys(a), kb = DeterministicIds.Keys(b);
        int c = string.CompareOrdinal(ka.Observation, kb.Observation);
        return (c != 0 ? c : string.CompareOrdinal(ka.Version, kb.Version)) > 0;
    }

    public EvaluationResponse Evaluate(EvaluationRequest request)
    {
        var run = Start(request);
        return new EvaluationResponse(run.Results.ToList(), run.KnowledgeVersion) { RequestIssues = run.RequestIssues };
    }

    /// <summary>
    /// Reads every input and history entry now and evaluates each input when the results are enumerated (once), so a
    /// door can write a large answer as it goes instead of holding every output in memory.
    /// </summary>
    public EvaluationRun Start(EvaluationRequest request)
    {
        // Every input and history entry is read once (value, time, keys); inputs also serve as history. Plain loops:
        // this runs for every request, and a single result with no history is the usual one.
        var prepared = new Dictionary<EvaluationInput, Prepared>(request.History.Count + request.Inputs.Count, ReferenceEqualityComparer.Instance);
        // Relative references are resolved against their entry's server only when the request holds entries of
        // several servers: then "Patient/1" may be two patients. Otherwise an Observation keeps the identity (and
        // output ids) it has when posted on its own.
        bool severalServers = SeveralServers(request);
        foreach (var i in request.Inputs) prepared.TryAdd(i, Prepare(i, severalServers));
        foreach (var i in request.History) prepared.TryAdd(i, Prepare(i, severalServers));

        // Several versions of one result (a history Bundle lists them all; a feed may resend one; a withdrawal may come
        // as history): only the newest counts, as an input and as history.
        var newest = prepared.Count > 1 ? NewestVersions(prepared.Values, request.History.Count > 0 ? request.Inputs.ToHashSet<EvaluationInput>(ReferenceEqualityComparer.Instance) : null) : null;
        bool IsNewest(Prepared p) => newest is null || ReferenceEquals(newest[p.VersionKey], p);
        // Results the request says were deleted from their server: the deletion is what they now are, as a withdrawal.
        List<CoreIssue> requestIssues = [];
        var deleted = request.Deletions.Count > 0 ? DeletedResults(request.Deletions, prepared.Values, severalServers, requestIssues) : null;
        Deletion? DeletionOf(Prepared p) => deleted is not null && deleted.TryGetValue(p.VersionKey, out var d) ? d : null;

        // Each patient's usable anti-MAG results, in request order: the newest version of each, not withdrawn, and
        // without a modifier that may change its meaning.
        var pool = new TrendPool();
        foreach (var p in prepared.Values)
        {
            if (p.Patient is null || !p.IsAntiMag || p.HasModifiers || p.AboutFocus || !IsNewest(p) || p.Input.Observation.Status == ObservationStatus.EnteredInError
                || DeletionOf(p) is not null) continue;
            pool.Add(p);
        }

        // A supplied earlier result that belongs to none of the inputs' patients is never used; say so once.
        if (request.History.Count > 0)
        {
            var patients = request.Inputs.Select(i => prepared[i].Patient).OfType<string>().ToHashSet(StringComparer.Ordinal);
            foreach (var h in request.History)
                if (prepared[h].Patient is not { } s || !patients.Contains(s))
                    requestIssues.Add(new CoreIssue(OutcomeCodes.HistoryOtherPatient, OperationOutcome.IssueSeverity.Warning,
                        "This earlier result is not of the patient being evaluated and was not used.", h.Location));
        }

        IEnumerable<InputResult> Results()
        {
            foreach (var input in request.Inputs)
            {
                var p = prepared[input];
                // An answer never holds two current assessments of one result, or a current one beside its withdrawal.
                yield return IsNewest(p) ? EvaluateOne(p, pool, DeletionOf(p)) : Superseded(p, newest![p.VersionKey], DeletionOf(p));
            }
        }
        return new EvaluationRun(Results(), requestIssues, _knowledge.Version);
    }

    private static bool SeveralServers(EvaluationRequest request)
    {
        string? first = null;
        foreach (var i in request.Inputs.Concat(request.History))
            if (ServerBase(i.FullUrl) is { } server)
            {
                if (first is null) first = server;
                else if (!string.Equals(first, server, StringComparison.Ordinal)) return true;
            }
        return false;
    }

    /// <summary>
    /// The newest version of each result in the request (inputs and history, any code, any patient): an
    /// entered-in-error version wins (a withdrawal is what the result now is), else the newest
    /// (<see cref="Versions.Compare"/>, a total order, so the choice never depends on the request's order), else the
    /// first of identical copies. When the newest is a history entry that is the same version as an input (an engine
    /// that searched the patient's results for the history finds the current one too), the input takes its place: it
    /// is what was asked about. Both steps are order-independent.
    /// </summary>
    private static Dictionary<string, Prepared> NewestVersions(IEnumerable<Prepared> all, HashSet<EvaluationInput>? inputs)
    {
        var newest = new Dictionary<string, Prepared>(StringComparer.Ordinal);
        foreach (var p in all)
            if (!newest.TryGetValue(p.VersionKey, out var held) || Versions.Wins(p, held)) newest[p.VersionKey] = p;
        if (inputs is null) return newest;

        var inputInstead = new Dictionary<string, Prepared>(StringComparer.Ordinal);
        foreach (var p in all)
        {
            var winner = newest[p.VersionKey];
            if (!inputs.Contains(p.Input) || inputs.Contains(winner.Input) || !SameVersion(p, winner)) continue;
            if (!inputInstead.TryGetValue(p.VersionKey, out var held) || Versions.Wins(p, held)) inputInstead[p.VersionKey] = p;
        }
        foreach (var (key, input) in inputInstead) newest[key] = input;
        return newest;

        static bool SameVersion(Prepared a, Prepared b) => a.Keys.Version == b.Keys.Version
            && (a.Input.Observation.Status == ObservationStatus.EnteredInError) == (b.Input.Observation.Status == ObservationStatus.EnteredInError);
    }

    /// <summary>
    /// The results each deletion withdraws, by version key: every result with the deleted id on the same server (a
    /// deletion or result that names none is of the request's one server; among entries of several servers, a
    /// deletion that names none withdraws only results that name none either), unless a version of it is newer than the deletion (<see cref="Versions.NewerThan"/>): the
    /// resource was created again after it. A deletion that names no result of
    /// the request cannot say which outputs to retract, and the sender is told.
    /// </summary>
    private static Dictionary<string, Deletion> DeletedResults(IReadOnlyList<Deletion> deletions, IEnumerable<Prepared> all, bool severalServers, List<CoreIssue> requestIssues)
    {
        var withdrawn = new Dictionary<string, Deletion>(StringComparer.Ordinal);
        foreach (var d in deletions)
        {
            string? server = ServerBase(d.FullUrl);
            var results = all.Where(p => p.Input.Observation.Id == d.Id && ServerBase(p.Input.FullUrl) is var s
                && (server is null ? s is null || !severalServers : s is null || s == server)).ToList();
            if (results.Count == 0)
                requestIssues.Add(new CoreIssue(OutcomeCodes.Deleted, OperationOutcome.IssueSeverity.Warning,
                    "The request says an Observation was deleted but holds no version of it, so MagCds cannot name the outputs to retract: send its last version with the deletion.", d.Location));
            foreach (var key in results.Select(p => p.VersionKey).Distinct(StringComparer.Ordinal))
                if (!all.Any(p => p.VersionKey == key && Versions.NewerThan(p, d))) withdrawn.TryAdd(key, d);
        }
        return withdrawn;
    }

    private static InputResult Superseded(Prepared current, Prepared by, Deletion? deletion)
    {
        string message = deletion is not null
            ? $"The request says this Observation was deleted from its server ({deletion.Location}): this version is not evaluated."
            : by.Input.Observation.Status == ObservationStatus.EnteredInError
            ? $"Another version of this Observation in the request ({by.Input.Location}) is entered-in-error: this one is not evaluated."
            : by.Keys.Version == current.Keys.Version && Versions.Compare(by, current) == 0
                ? $"The same version of this Observation is also at {by.Input.Location}; only one copy is evaluated."
                : $"A newer version of this Observation is in the request ({by.Input.Location}): only the latest version of a result is assessed.";
        return new InputResult(current.Input, InputOutcome.NotEvaluated, null, null, null,
            [new CoreIssue(OutcomeCodes.SupersededInRequest, OperationOutcome.IssueSeverity.Warning, message, current.Input.Location)]);
    }

    /// <param name="deletion">The request says the result was deleted from its server: its outputs are retracted.</param>
    private InputResult EvaluateOne(Prepared current, TrendPool pool, Deletion? deletion = null)
    {
        var input = current.Input;
        var obs = input.Observation;
        InputResult NotEvaluated(OutcomeCode code, string message, OperationOutcome.IssueSeverity severity = OperationOutcome.IssueSeverity.Error) =>
            new(input, InputOutcome.NotEvaluated, null, null, null, [new CoreIssue(code, severity, message, input.Location)]);

        // "Not applicable" is information, not an error: an ORU Bundle carries many other tests.
        if (!current.IsAntiMag)
            return NotEvaluated(OutcomeCodes.NotAntiMag, severity: OperationOutcome.IssueSeverity.Information, message:
                $"The Observation code is not LOINC {CanonicalUrls.AntiMagLoinc} or a configured anti-MAG IgM code; MagCds does not apply to it."
                + (obs.TryGetValue("component", out _) && obs.Component.Any(c => IsAntiMagCode(c.Code))
                    ? " One of its components is coded as anti-MAG IgM, but MagCds does not read components: send that result as an Observation of its own."
                    : ""));
        if (current.Patient is null)
            return NotEvaluated(OutcomeCodes.MissingSubject, obs.Subject is null or { Reference: null or "", Identifier: null }
                ? "The Observation names no subject, so no patient-level output can be made."
                : "The Observation's subject is not a Patient or Group (or names a contained resource that is not there), so no patient-level output can be made.");

        // Never a patient-level statement about someone else's result (a donor's, a fetus's) under this patient.
        if (current.AboutFocus && deletion is null && obs.Status != ObservationStatus.EnteredInError)
            return NotEvaluated(OutcomeCodes.AboutFocus,
                "The Observation names a focus: it is about someone or something associated with the subject (such as a donor, a fetus or a relative), not the subject, so no patient-level output is made.");
        if (deletion is not null)
            return new InputResult(input, InputOutcome.Retracted, null, _outputs.Retraction(input, current.Keys, deleted: true), null,
                [new CoreIssue(OutcomeCodes.Deleted, OperationOutcome.IssueSeverity.Information,
                    $"The request says this Observation was deleted from its server ({deletion.Location}): every earlier MagCds output for it is retracted (see the returned RiskAssessment).", input.Location),
                 .. NoIdentity(current, input)]);
        switch (obs.Status)
        {
            case ObservationStatus.EnteredInError:
                return new InputResult(input, InputOutcome.Retracted, null, _outputs.Retraction(input, current.Keys), null,
                    [new CoreIssue(OutcomeCodes.Retracted, OperationOutcome.IssueSeverity.Information,
                        "The Observation is entered-in-error: every earlier MagCds output for it is retracted (see the returned RiskAssessment).", input.Location),
                     .. NoIdentity(current, input)]);
            case ObservationStatus.Final or ObservationStatus.Amended or ObservationStatus.Corrected or ObservationStatus.Preliminary:
                break;
            default:
                return NotEvaluated(OutcomeCodes.StatusNotEvaluated,
                    $"The Observation status is '{obs.StatusElement?.JsonValue ?? "missing"}'; only final, amended, corrected and preliminary results are evaluated.");
        }
        // FHIR: an application must not process data whose meaning a modifier it does not know may change (a
        // withdrawal above is still honoured: it only ever takes outputs away).
        if (current.HasModifiers)
            return NotEvaluated(OutcomeCodes.UnknownModifier,
                "The Observation carries a modifier extension or implicit rules (on it, a reference range, a component or a contained resource) that MagCds does not know; they may change what the result means, so it is not evaluated.");

        var value = current.Value;
        if (value is null)
        {
            string why = obs.DataAbsentReason?.Coding.FirstOrDefault()?.Code ?? obs.DataAbsentReason?.Text ?? "none given";
            return NotEvaluated(OutcomeCodes.MissingValue, $"The Observation carries no value (data absent reason: {why}).");
        }

        var interpretation = _interpreter.Interpret(obs, value);
        if (TrendBuilder.Build(current, interpretation.Category, pool, _classify, out int notCompared) is { } trend)
            interpretation = interpretation with { Trend = trend };
        if (notCompared > 0)
        {
            var (results, isAre, its) = notCompared == 1 ? ("result", "is", "its") : ("results", "are", "their");
            interpretation = interpretation with
            {
                NotCompared = notCompared,
                Notes = [.. interpretation.Notes, $"{notCompared} earlier anti-MAG {results} of this patient {isAre} not compared with this one: {its} code, unit, method or reference range differs (or a unit is missing), and results of different assays are not compared."],
            };
        }
        var (ra, di, explanation) = _outputs.Build(input, current.Keys, current.When, interpretation);

        var issues = new List<CoreIssue>();
        if (interpretation.Preliminary)
            issues.Add(new CoreIssue(OutcomeCodes.Preliminary, OperationOutcome.IssueSeverity.Warning,
                "The result is preliminary; the outputs are marked preliminary and should be re-evaluated when the final result arrives.", input.Location));
        if (interpretation.Category == Category.CannotInterpret)
            issues.Add(new CoreIssue(OutcomeCodes.CannotInterpret, OperationOutcome.IssueSeverity.Warning, interpretation.Rule, input.Location));
        issues.AddRange(NoIdentity(current, input));
        return new InputResult(input, InputOutcome.Evaluated, interpretation, ra, di, issues) { Explanation = explanation };
    }

    /// <summary>
    /// An Observation with no id, identifier or reference is known only by its content, which changes with every
    /// correction: the outputs of one version cannot be found from another (an amendment does not supersede them, a
    /// retraction does not reach them). The sender is told, since it can fix this by sending an identifier.
    /// </summary>
    private static IEnumerable<CoreIssue> NoIdentity(Prepared current, EvaluationInput input) => current.Keys.FromContent
        ? [new CoreIssue(OutcomeCodes.NoIdentity, OperationOutcome.IssueSeverity.Warning,
            "The Observation has no id, business identifier or Bundle fullUrl, so MagCds knows it only by its content: the outputs of a corrected or withdrawn version of it will not be linked to these. Send the laboratory's identifier to link them.",
            input.Location)]
        : [];

    private Prepared Prepare(EvaluationInput input, bool severalServers)
    {
        var obs = input.Observation;
        string? server = ServerBase(input.FullUrl), subject = SubjectKey(obs);
        if (server is not null && subject is ['r', 'e', 'f', '|', ..] && subject[4..] is var r)
        {
            // Relative references of an entry from a named server resolve against it (FHIR Bundle rules): among entries
            // of several servers, "Patient/1" of each is its own patient, and its results get their own output ids.
            if (severalServers && IsRelative(r)) subject = $"ref|{server}/{r}";
            // An absolute reference to the entry's own server is the relative one ("https://lab/fhir/Patient/1" in an
            // entry of https://lab/fhir is "Patient/1"): one patient, whichever way a result names it.
            else if (!severalServers && r.Length > server.Length + 1 && r.StartsWith(server, StringComparison.Ordinal) && r[server.Length] == '/'
                     && IsRelative(r[(server.Length + 1)..])) subject = "ref|" + r[(server.Length + 1)..];
        }
        var keys = DeterministicIds.Keys(input, subject);
        // The versions of one resource share its id on its server, whatever else a correction changed (subject,
        // identifier); without a server or a versionId to say so, a result is known by its identity.
        string versionKey = !string.IsNullOrEmpty(obs.Id) && (server is not null || !string.IsNullOrEmpty(obs.Meta?.VersionId))
            ? $"{(severalServers ? server : null)}|id|{obs.Id}"
            : keys.Observation;
        return new(input, IsAntiMag(obs), subject, ValueReader.Read(obs), TrendBuilder.When(obs), keys)
        {
            VersionKey = versionKey,
            HasModifiers = HasModifiers(obs),
            AboutFocus = AboutFocus(obs),
        };
    }

    /// <summary>The server base of an absolute RESTful fullUrl ("https://lab/fhir/Observation/1" → "https://lab/fhir").</summary>
    private static string? ServerBase(string? fullUrl)
    {
        if (fullUrl is null || !(fullUrl.StartsWith("https://", StringComparison.OrdinalIgnoreCase) || fullUrl.StartsWith("http://", StringComparison.OrdinalIgnoreCase))) return null;
        int at = fullUrl.LastIndexOf("/Observation/", StringComparison.Ordinal);
        return at > 0 ? fullUrl[..at] : null;
    }

    /// <summary>
    /// FHIR's Observation.focus names what a result is about when that is not the subject. It may be the subject's
    /// own Condition or ServiceRequest (still the subject's result), or another person: a donor or fetus (a Patient
    /// other than the subject), a relative (RelatedPerson), a Group. Those, and a focus whose type cannot be told (an
    /// identifier or display only), make the result someone else's. Read without creating the empty list a POCO's list
    /// getter makes.
    /// </summary>
    public static bool AboutFocus(Observation obs)
    {
        if (!obs.TryGetValue("focus", out _)) return false;
        foreach (var f in obs.Focus)
        {
            string? type = f.Type ?? (f.Reference is ['#', ..] local ? obs.Contained.FirstOrDefault(c => "#" + c.Id == local)?.TypeName : TypeOf(f.Reference));
            if (type is null or "Group" or "RelatedPerson" || (type == "Patient" && f.Reference != obs.Subject?.Reference)) return true;
        }
        return false;

        // "Patient/1", "https://server/fhir/Patient/1/_history/2" → "Patient".
        static string? TypeOf(string? reference)
        {
            if (reference is null) return null;
            var parts = WithoutVersion(reference).Split('/');
            return parts.Length >= 2 && parts[^2].Length > 0 && char.IsUpper(parts[^2][0]) ? parts[^2] : null;
        }
    }

    private static bool IsRelative(string reference) =>
        reference.Length > 0 && reference[0] != '#' && !reference.StartsWith("urn:", StringComparison.Ordinal) && !reference.Contains("://", StringComparison.Ordinal);

    /// <summary>
    /// Modifier extensions or implicit rules where MagCds reads: the Observation, its reference ranges and components,
    /// and the resources it contains (its subject may be one). R4 allows modifierExtension on resources and backbone
    /// elements only, and these are the Observation's.
    /// </summary>
    private static bool HasModifiers(Observation obs)
    {
        // TryGetValue says whether an element is present without creating the empty list a POCO's list getter makes
        // (this runs for every result, and almost none has any of these).
        if (Present(obs, "modifierExtension") || Present(obs, "implicitRules")) return true;
        if (Present(obs, "referenceRange")) foreach (var r in obs.ReferenceRange) if (Present(r, "modifierExtension")) return true;
        if (Present(obs, "component")) foreach (var c in obs.Component) if (Present(c, "modifierExtension")) return true;
        if (Present(obs, "contained")) foreach (var c in obs.Contained) if (Present(c, "implicitRules") || Present(c, "modifierExtension")) return true;
        return false;

        static bool Present(Base b, string element) => b.TryGetValue(element, out _);
    }

    /// <summary>
    /// Who the result is about: the literal subject reference, else its logical identifier; null when there is none or
    /// it is not a Patient or Group (RiskAssessment.subject allows only those), or names a contained resource that is
    /// not there.
    /// </summary>
    public static string? SubjectKey(Observation obs) => obs.Subject switch
    {
        { Reference: ['#', ..] r } => ContainedSubjectKey(obs, r),
        // A reference's type and its "type" element must agree ("Patient/x" typed Device says two things at once).
        { Reference: { Length: > 0 } r } => ReferenceType(r) is var t && PatientOrGroup(t ?? obs.Subject.Type)
                                             && (t is null || obs.Subject.Type is null || obs.Subject.Type == t) ? "ref|" + WithoutVersion(r) : null,
        { Identifier: { Value: { Length: > 0 } v } id } => PatientOrGroup(obs.Subject.Type) ? $"id|{id.System}|{v}" : null,
        _ => null,
    };

    private static bool PatientOrGroup(string? type) => type is null or "Patient" or "Group";

    /// <summary>
    /// A reference to one version of the patient ("Patient/1/_history/3") names the patient all the same: results that
    /// name different versions, or none, are one patient's (one history, one series of outputs).
    /// </summary>
    private static string WithoutVersion(string reference)
    {
        int history = reference.IndexOf("/_history/", StringComparison.Ordinal);
        return history > 0 && !reference.StartsWith("urn:", StringComparison.Ordinal) && reference.IndexOf('?') < 0 ? reference[..history] : reference;
    }

    /// <summary>
    /// The resource type a literal reference names ("Patient/1", "https://x/fhir/Device/2/_history/1"); null for a urn;
    /// "" for one that names no resource ("Patient/", without an id).
    /// </summary>
    internal static string? ReferenceType(string reference)
    {
        if (reference.StartsWith("urn:", StringComparison.Ordinal)) return null;
        var s = reference.AsSpan();
        // A conditional reference ("Patient?identifier=…") names its type before the query.
        int query = s.IndexOf('?');
        if (query >= 0) return s[..query].LastIndexOf('/') is var slash and >= 0 ? s[(slash + 1)..query].ToString() : s[..query].ToString();
        int history = s.IndexOf("/_history/", StringComparison.Ordinal);
        if (history >= 0) s = s[..history];
        int last = s.LastIndexOf('/');
        if (last <= 0) return null;
        if (last == s.Length - 1) return "";
        var head = s[..last];
        var type = head[(head.LastIndexOf('/') + 1)..];
        return type.SequenceEqual("Patient") ? "Patient" : type.SequenceEqual("Group") ? "Group" : type.ToString();
    }

    /// <summary>
    /// A contained subject ("#p") is local to its Observation: the "#p" of two Observations need not be one patient.
    /// Across Observations it is known only by the contained Patient's business identifier; without one, the subject
    /// is this Observation's alone (its id or identifier, else its content), so it shares no history with another.
    /// </summary>
    private static string? ContainedSubjectKey(Observation obs, string reference)
    {
        var contained = obs.Contained.FirstOrDefault(c => "#" + c.Id == reference);
        if (contained is not (Patient or Group)) return null;
        var ids = contained is Patient patient ? patient.Identifier : ((Group)contained).Identifier;
        if (ids.FirstOrDefault(i => !string.IsNullOrEmpty(i.Value)) is { } id) return $"id|{id.System}|{id.Value}";
        string own = obs.Identifier.FirstOrDefault(i => !string.IsNullOrEmpty(i.Value)) is { } oid ? $"{oid.System}|{oid.Value}"
            : !string.IsNullOrEmpty(obs.Id) ? "id|" + obs.Id
            : DeterministicIds.VersionKey(obs);
        return $"contained|{own}|{reference}";
    }
}

/// <summary>An Observation of the request, read once.</summary>
/// <param name="Patient">Who it is about (part of its identity and output ids): the subject as the Observation says
/// it, resolved against its entry's server when the request holds entries of several servers.</param>
internal sealed record Prepared(EvaluationInput Input, bool IsAntiMag, string? Patient, ReadValue? Value, DateTimeOffset? When, DeterministicIds.InputKeys Keys)
{
    /// <summary>Which resource this is a version of: the same for all its versions (see <see cref="Evaluator"/>'s Prepare).</summary>
    public required string VersionKey { get; init; }

    public bool HasModifiers { get; init; }

    /// <summary>The result is about its focus (a donor, a fetus, a relative), not its subject.</summary>
    public bool AboutFocus { get; init; }
}

/// <summary>Which of two versions of one Observation is the newer one.</summary>
internal static class Versions
{
    /// <summary>
    /// Whether <paramref name="a"/> replaces <paramref name="b"/> (versions of one Observation): a withdrawal wins;
    /// else the one <see cref="Compare"/> puts later; an identical copy keeps <paramref name="b"/>, the one met first.
    /// </summary>
    public static bool Wins(Prepared a, Prepared b)
    {
        bool ae = a.Input.Observation.Status == ObservationStatus.EnteredInError, be = b.Input.Observation.Status == ObservationStatus.EnteredInError;
        return ae != be ? ae : Compare(a, b) > 0;
    }

    /// <summary>
    /// Orders versions of one Observation, oldest first, by one key compared element after element: meta.lastUpdated,
    /// numeric meta.versionId, issued (a missing one counts as earliest), the status (final after preliminary, amended
    /// or corrected after final), then the content. A total order, so the newest of several never depends on the
    /// order they came in; 0 only for copies identical in all that the interpretation reads.
    /// </summary>
    public static int Compare(Prepared a, Prepared b)
    {
        Observation x = a.Input.Observation, y = b.Input.Observation;
        int c = (x.Meta?.LastUpdated ?? DateTimeOffset.MinValue).CompareTo(y.Meta?.LastUpdated ?? DateTimeOffset.MinValue);
        if (c == 0) c = NumericVersion(x).CompareTo(NumericVersion(y));
        if (c == 0) c = (x.IssuedElement?.Value ?? DateTimeOffset.MinValue).CompareTo(y.IssuedElement?.Value ?? DateTimeOffset.MinValue);
        if (c == 0) c = Rank(x.Status).CompareTo(Rank(y.Status));
        // Different content with nothing else to order it by: the content decides (not meta.versionId, which two
        // different copies may share).
        return c != 0 ? c : string.CompareOrdinal(DeterministicIds.ContentKey(x), DeterministicIds.ContentKey(y));
    }

    /// <summary>
    /// A version made after the deletion (the resource created again), by the metadata both sides give: numeric
    /// versions first; else times, to the second (an HTTP Last-Modified has no fraction, so a version stamped within
    /// the second of the deletion is not taken as newer).
    /// </summary>
    public static bool NewerThan(Prepared p, Deletion d)
    {
        var o = p.Input.Observation;
        long deletedVersion = Numeric(d.VersionId), version = NumericVersion(o);
        if (deletedVersion >= 0 && version >= 0) return version > deletedVersion;
        return o.Meta?.LastUpdated is { } updated && d.When is { } deletedAt
            && updated.ToUnixTimeSeconds() > deletedAt.ToUnixTimeSeconds();
    }

    private static long NumericVersion(Observation o) => Numeric(o.Meta?.VersionId);

    private static long Numeric(string? versionId) =>
        long.TryParse(versionId, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v) ? v : -1;

    private static int Rank(ObservationStatus? s) => s switch
    {
        ObservationStatus.Preliminary => 1,
        ObservationStatus.Final => 2,
        ObservationStatus.Amended or ObservationStatus.Corrected => 3,
        _ => 0,
    };
}
