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
    /// For doors that receive a patient's results rather than one result (CDS Hooks): the latest anti-MAG result that
    /// can be evaluated becomes the input, every other one its history. Empty when there is none.
    /// </summary>
    public EvaluationRequest LatestWithHistory(IReadOnlyList<EvaluationInput> results)
    {
        EvaluationInput? latest = null;
        var latestWhen = DateTimeOffset.MinValue;
        foreach (var r in results)
        {
            if (!IsAntiMag(r.Observation) || r.Observation.Status is not (ObservationStatus.Final or ObservationStatus.Amended
                    or ObservationStatus.Corrected or ObservationStatus.Preliminary)) continue;
            var when = TrendBuilder.When(r.Observation) ?? DateTimeOffset.MinValue;
            if (latest is null || when > latestWhen || (when == latestWhen && IssuedLater(r, latest))) (latest, latestWhen) = (r, when);
        }
        return latest is null ? new EvaluationRequest([], []) : new EvaluationRequest([latest], results.Where(r => r != latest).ToList());
    }

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
        var pool = new Dictionary<string, List<Prepared>>(StringComparer.Ordinal); // a patient's anti-MAG results, in request order
        void Add(EvaluationInput i)
        {
            if (prepared.ContainsKey(i)) return;
            var p = prepared[i] = Prepare(i);
            // A result whose meaning a modifier may change is no one's history either.
            if (p.Patient is null || !p.IsAntiMag || p.HasModifiers) return;
            if (pool.TryGetValue(p.Patient, out var results)) results.Add(p);
            else pool[p.Patient] = [p];
        }
        foreach (var i in request.History) Add(i);
        foreach (var i in request.Inputs) Add(i);

        // A supplied earlier result that belongs to none of the inputs' patients is never used; say so once.
        List<CoreIssue> requestIssues = [];
        if (request.History.Count > 0)
        {
            var patients = request.Inputs.Select(i => prepared[i].Patient).OfType<string>().ToHashSet(StringComparer.Ordinal);
            foreach (var h in request.History)
                if (prepared[h].Patient is not { } s || !patients.Contains(s))
                    requestIssues.Add(new CoreIssue(OutcomeCodes.HistoryOtherPatient, OperationOutcome.IssueSeverity.Warning,
                        "This earlier result is not of the patient being evaluated and was not used.", h.Location));
        }

        var supersededBy = request.Inputs.Count > 1 ? SupersededVersions(request.Inputs, prepared) : null;
        IEnumerable<InputResult> Results()
        {
            foreach (var input in request.Inputs)
                yield return supersededBy is not null && supersededBy.TryGetValue(input, out var by)
                    ? Superseded(prepared[input], by)
                    : EvaluateOne(prepared[input], pool);
        }
        return new EvaluationRun(Results(), requestIssues, _knowledge.Version);
    }

    /// <summary>
    /// Several versions of one Observation among the inputs (a history Bundle lists them all, newest first; a feed may
    /// resend one): only one is assessed, so that an answer never holds two current assessments of one result, or a
    /// current one beside its withdrawal. An entered-in-error version wins (its retraction is what the result now
    /// is), else the newest version (<see cref="Versions.Compare"/>), else the first of identical copies.
    /// </summary>
    private static Dictionary<EvaluationInput, Prepared> SupersededVersions(IReadOnlyList<EvaluationInput> inputs, Dictionary<EvaluationInput, Prepared> prepared)
    {
        var superseded = new Dictionary<EvaluationInput, Prepared>(ReferenceEqualityComparer.Instance);
        foreach (var group in inputs.Select(i => prepared[i]).Where(p => p.IsAntiMag).GroupBy(p => p.Identity, StringComparer.Ordinal))
        {
            Prepared? winner = null;
            foreach (var p in group)
                if (winner is null || Versions.Wins(p, winner)) winner = p;
            foreach (var p in group)
                if (!ReferenceEquals(p, winner)) superseded[p.Input] = winner!;
        }
        return superseded;
    }

    private static InputResult Superseded(Prepared current, Prepared by)
    {
        string message = by.Input.Observation.Status == ObservationStatus.EnteredInError
            ? $"Another version of this Observation in the request ({by.Input.Location}) is entered-in-error: this one is not evaluated, and the outputs for the Observation are retracted there."
            : by.Keys.Version == current.Keys.Version
                ? $"The same version of this Observation is also at {by.Input.Location}; it is evaluated there, once."
                : $"A newer version of this Observation in the request ({by.Input.Location}) is evaluated instead: only the latest version of a result is assessed.";
        return new InputResult(current.Input, InputOutcome.NotEvaluated, null, null, null,
            [new CoreIssue(OutcomeCodes.SupersededInRequest, OperationOutcome.IssueSeverity.Warning, message, current.Input.Location)]);
    }

    private InputResult EvaluateOne(Prepared current, IReadOnlyDictionary<string, List<Prepared>> pool)
    {
        var input = current.Input;
        var obs = input.Observation;
        InputResult NotEvaluated(OutcomeCode code, string message, OperationOutcome.IssueSeverity severity = OperationOutcome.IssueSeverity.Error) =>
            new(input, InputOutcome.NotEvaluated, null, null, null, [new CoreIssue(code, severity, message, input.Location)]);

        // "Not applicable" is information, not an error: an ORU Bundle carries many other tests.
        if (!current.IsAntiMag)
            return NotEvaluated(OutcomeCodes.NotAntiMag, severity: OperationOutcome.IssueSeverity.Information, message:
                $"The Observation code is not LOINC {CanonicalUrls.AntiMagLoinc} or a configured anti-MAG IgM code; MagCds does not apply to it.");
        if (current.Subject is null)
            return NotEvaluated(OutcomeCodes.MissingSubject, obs.Subject is null or { Reference: null or "", Identifier: null }
                ? "The Observation names no subject, so no patient-level output can be made."
                : "The Observation's subject is not a Patient or Group (or names a contained resource that is not there), so no patient-level output can be made.");

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
                    $"The Observation status is '{obs.Status?.ToString() ?? "missing"}'; only final, amended, corrected and preliminary results are evaluated.");
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
        if (TrendBuilder.Build(current, interpretation.Category, pool, _classify) is { } trend)
            interpretation = interpretation with { Trend = trend };
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

    private Prepared Prepare(EvaluationInput input)
    {
        var obs = input.Observation;
        string? subject = SubjectKey(obs), server = ServerBase(input.FullUrl);
        var keys = DeterministicIds.Keys(input);
        return new(input, IsAntiMag(obs), subject, ValueReader.Read(obs), TrendBuilder.When(obs), keys)
        {
            // Relative references of an entry from a named server resolve against it (FHIR Bundle rules): "Patient/1"
            // of two servers is two patients, and an Observation id of two servers two results.
            Patient = server is not null && subject is not null && obs.Subject?.Reference is { } r && IsRelative(r) ? $"ref|{server}/{r}" : subject,
            Identity = server is null ? keys.Observation : server + "|" + keys.Observation,
            HasModifiers = HasModifiers(obs),
        };
    }

    /// <summary>The server base of an absolute RESTful fullUrl ("https://lab/fhir/Observation/1" → "https://lab/fhir").</summary>
    private static string? ServerBase(string? fullUrl)
    {
        if (fullUrl is null || !(fullUrl.StartsWith("https://", StringComparison.OrdinalIgnoreCase) || fullUrl.StartsWith("http://", StringComparison.OrdinalIgnoreCase))) return null;
        int at = fullUrl.LastIndexOf("/Observation/", StringComparison.Ordinal);
        return at > 0 ? fullUrl[..at] : null;
    }

    private static bool IsRelative(string reference) =>
        reference[0] != '#' && !reference.StartsWith("urn:", StringComparison.Ordinal) && !reference.Contains("://", StringComparison.Ordinal);

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
        { Reference: { Length: > 0 } r } => PatientOrGroup(ReferenceType(r) ?? obs.Subject.Type) ? "ref|" + r : null,
        { Identifier: { Value: { Length: > 0 } v } id } => PatientOrGroup(obs.Subject.Type) ? $"id|{id.System}|{v}" : null,
        _ => null,
    };

    private static bool PatientOrGroup(string? type) => type is null or "Patient" or "Group";

    /// <summary>The resource type a literal reference names ("Patient/1", "https://x/fhir/Device/2/_history/1"); null for a urn.</summary>
    private static string? ReferenceType(string reference)
    {
        if (reference.StartsWith("urn:", StringComparison.Ordinal)) return null;
        var s = reference.AsSpan();
        int history = s.IndexOf("/_history/", StringComparison.Ordinal);
        if (history >= 0) s = s[..history];
        int last = s.LastIndexOf('/');
        if (last <= 0) return null;
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

/// <summary>An anti-MAG Observation read once for use as history.</summary>
/// <param name="Subject">Who it is about as the Observation says it (part of its identity and output ids).</param>
internal sealed record Prepared(EvaluationInput Input, bool IsAntiMag, string? Subject, ReadValue? Value, DateTimeOffset? When, DeterministicIds.InputKeys Keys)
{
    /// <summary>The patient, resolved against the server of the entry when it names one: whose history this is.</summary>
    public string? Patient { get; init; }

    /// <summary>Which result this is (any version), resolved against the server of the entry when it names one.</summary>
    public required string Identity { get; init; }

    public bool HasModifiers { get; init; }
}

/// <summary>Which of two versions of one Observation is the newer one.</summary>
internal static class Versions
{
    /// <summary>
    /// Whether <paramref name="a"/> replaces <paramref name="b"/> (same Observation): a withdrawal wins; else the later
    /// meta.lastUpdated, numeric meta.versionId or issued (the first that both carry and that differ), else the later
    /// status (final after preliminary, amended or corrected after final); a tie keeps <paramref name="b"/>, the one met first.
    /// </summary>
    public static bool Wins(Prepared a, Prepared b)
    {
        bool ae = a.Input.Observation.Status == ObservationStatus.EnteredInError, be = b.Input.Observation.Status == ObservationStatus.EnteredInError;
        return ae != be ? ae : Compare(a, b) > 0;
    }

    /// <summary>Orders versions of one Observation, oldest first; 0 only for the same version (then request order decides).</summary>
    public static int Compare(Prepared a, Prepared b)
    {
        Observation x = a.Input.Observation, y = b.Input.Observation;
        if (x.Meta?.LastUpdated is { } lx && y.Meta?.LastUpdated is { } ly && lx != ly) return lx.CompareTo(ly);
        if (long.TryParse(x.Meta?.VersionId, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long vx)
            && long.TryParse(y.Meta?.VersionId, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long vy) && vx != vy)
            return vx.CompareTo(vy);
        if (x.IssuedElement?.Value is { } ix && y.IssuedElement?.Value is { } iy && ix != iy) return ix.CompareTo(iy);
        int rank = Rank(x.Status).CompareTo(Rank(y.Status));
        // Different content with nothing to order it by: the content decides, so that the answer never depends on the
        // order of the request.
        return rank != 0 ? rank : string.CompareOrdinal(a.Keys.Version, b.Keys.Version);
    }

    private static int Rank(ObservationStatus? s) => s switch
    {
        ObservationStatus.Preliminary => 1,
        ObservationStatus.Final => 2,
        ObservationStatus.Amended or ObservationStatus.Corrected => 3,
        _ => 0,
    };
}
