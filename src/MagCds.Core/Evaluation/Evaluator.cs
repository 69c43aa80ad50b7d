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
        var latest = results
            .Where(r => IsAntiMag(r.Observation) && r.Observation.Status is ObservationStatus.Final or ObservationStatus.Amended
                or ObservationStatus.Corrected or ObservationStatus.Preliminary)
            .OrderByDescending(r => TrendBuilder.When(r.Observation) ?? DateTimeOffset.MinValue)
            .FirstOrDefault();
        return latest is null ? new EvaluationRequest([], []) : new EvaluationRequest([latest], results.Where(r => r != latest).ToList());
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
            if (p.Subject is null || !p.IsAntiMag) return;
            if (pool.TryGetValue(p.Subject, out var results)) results.Add(p);
            else pool[p.Subject] = [p];
        }
        foreach (var i in request.History) Add(i);
        foreach (var i in request.Inputs) Add(i);

        // A supplied earlier result that belongs to none of the inputs' patients is never used; say so once.
        List<CoreIssue> requestIssues = [];
        if (request.History.Count > 0)
        {
            var subjects = request.Inputs.Select(i => prepared[i].Subject).OfType<string>().ToHashSet(StringComparer.Ordinal);
            foreach (var h in request.History)
                if (prepared[h].Subject is not { } s || !subjects.Contains(s))
                    requestIssues.Add(new CoreIssue(OutcomeCodes.HistoryOtherPatient, OperationOutcome.IssueSeverity.Warning,
                        "This earlier result is not of the patient being evaluated and was not used.", h.Location));
        }

        IEnumerable<InputResult> Results()
        {
            foreach (var input in request.Inputs) yield return EvaluateOne(prepared[input], pool);
        }
        return new EvaluationRun(Results(), requestIssues, _knowledge.Version);
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
            return NotEvaluated(OutcomeCodes.MissingSubject, "The Observation names no subject, so no patient-level output can be made.");

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

    private Prepared Prepare(EvaluationInput input) =>
        new(input, IsAntiMag(input.Observation), SubjectKey(input.Observation), ValueReader.Read(input.Observation),
            TrendBuilder.When(input.Observation), DeterministicIds.Keys(input));

    /// <summary>Who the result is about: the literal subject reference, else its logical identifier.</summary>
    public static string? SubjectKey(Observation obs) => obs.Subject switch
    {
        { Reference: ['#', ..] r } => ContainedSubjectKey(obs, r),
        { Reference: { Length: > 0 } r } => "ref|" + r,
        { Identifier: { Value: { Length: > 0 } v } id } => $"id|{id.System}|{v}",
        _ => null,
    };

    /// <summary>
    /// A contained subject ("#p") is local to its Observation: the "#p" of two Observations need not be one patient.
    /// Across Observations it is known only by the contained Patient's business identifier; without one, the subject
    /// is this Observation's alone (its id or identifier, else its content), so it shares no history with another.
    /// </summary>
    private static string ContainedSubjectKey(Observation obs, string reference)
    {
        var patient = obs.Contained.OfType<Patient>().FirstOrDefault(p => "#" + p.Id == reference);
        if (patient?.Identifier.FirstOrDefault(i => !string.IsNullOrEmpty(i.Value)) is { } id) return $"id|{id.System}|{id.Value}";
        string own = obs.Identifier.FirstOrDefault(i => !string.IsNullOrEmpty(i.Value)) is { } oid ? $"{oid.System}|{oid.Value}"
            : !string.IsNullOrEmpty(obs.Id) ? "id|" + obs.Id
            : DeterministicIds.VersionKey(obs);
        return $"contained|{own}|{reference}";
    }
}

/// <summary>An anti-MAG Observation read once for use as history.</summary>
internal sealed record Prepared(EvaluationInput Input, bool IsAntiMag, string? Subject, ReadValue? Value, DateTimeOffset? When, DeterministicIds.InputKeys Keys);
