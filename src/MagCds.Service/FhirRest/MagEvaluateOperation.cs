using Hl7.Fhir.Model;
using MagCds.Core;
using MagCds.Core.Evaluation;
using MagCds.Service.Hosting;

namespace MagCds.Service.FhirRest;

/// <summary>
/// <c>$mag-evaluate</c>: translates the three accepted bodies (Observation, Parameters, Bundle) into one
/// <see cref="EvaluationRequest"/> for the core, and the core's response into the output Parameters.
/// No clinical logic lives here.
/// </summary>
public static partial class MagEvaluateOperation
{
    public const string Name = "mag-evaluate";

    /// <summary>Input parameter names (the OperationDefinition in fhir-profiles/ must advertise exactly these).</summary>
    public static class In
    {
        public const string Observation = "observation";
        public const string History = "history";
        public static readonly string[] All = [Observation, History];
    }

    /// <summary>Output parameter names.</summary>
    public static class Out
    {
        public const string RiskAssessment = "riskAssessment";
        public const string DetectedIssue = "detectedIssue";
        public const string Outcome = "outcome";
        public const string KnowledgeVersion = "knowledgeVersion";
        public static readonly string[] All = [RiskAssessment, DetectedIssue, Outcome, KnowledgeVersion];
    }

    /// <summary>The request for the core, and issues about entries that could not even be read.</summary>
    public sealed record Mapped(EvaluationRequest Request, IReadOnlyList<CoreIssue> EntryIssues);

    public static Mapped ToRequest(ParsedBody body) => body.Resource switch
    {
        // FHIR: data whose meaning implicit rules MagCds does not know may change is not processed, so a wrapper that
        // declares them is refused whole (an Observation's own are judged by the core, per input).
        Parameters or Bundle when !string.IsNullOrEmpty(body.Resource.ImplicitRules) =>
            throw new FhirRequestException(StatusCodes.Status422UnprocessableEntity, OutcomeCodes.UnknownModifier,
                $"The {body.Resource.TypeName} declares implicit rules that MagCds does not know; they may change what it holds, so nothing in it is evaluated."),
        Observation o => new(EvaluationRequest.Of(new EvaluationInput(o, LocalReference(o), "Observation")), []),
        Parameters p => FromParameters(p),
        Bundle b => FromBundle(b, body.BadEntries),
        var other => throw new FhirRequestException(StatusCodes.Status422UnprocessableEntity, OutcomeCodes.UnsupportedResource,
            $"$mag-evaluate accepts an Observation, a Parameters or a Bundle, not {Outcomes.AType(other.TypeName)}."),
    };

    private static Mapped FromParameters(Parameters p)
    {
        var inputs = new List<EvaluationInput>();
        var history = new List<EvaluationInput>();
        for (int i = 0; i < p.Parameter.Count; i++)
        {
            var part = p.Parameter[i];
            string at = $"Parameters.parameter[{i}]";
            if (part.ModifierExtension.Count > 0)
                throw new FhirRequestException(StatusCodes.Status422UnprocessableEntity, OutcomeCodes.UnknownModifier,
                    $"The parameter at {at} carries a modifier extension that MagCds does not know; it may change what the parameter means, so nothing is evaluated.");
            var target = part.Name switch
            {
                In.Observation => inputs,
                In.History => history,
                // The name is not quoted: it is the caller's text, and error answers and logs quote no input.
                _ => throw InvalidParameters($"The parameter at {at} has a name this operation does not take; expected '{In.Observation}' or '{In.History}'."),
            };
            // FHIR inv-1: a parameter holds a value, a resource or parts, never two of them; which one the sender meant
            // is not guessed.
            if (part.Resource is not Observation o || part.Value is not null || part.Part.Count > 0)
                throw InvalidParameters($"The '{part.Name}' parameter at {at} must carry an Observation resource and nothing else (no value, no parts).");
            target.Add(new EvaluationInput(o, LocalReference(o), at + ".resource"));
        }
        if (inputs.Count == 0) throw InvalidParameters($"At least one '{In.Observation}' parameter is required.");
        return new Mapped(new EvaluationRequest(inputs, history), []);
    }

    /// <summary>
    /// Every Observation in a Bundle is an input (and history for the others), and every <c>DELETE Observation/{id}</c>
    /// entry (a history Bundle's record of a deletion) withdraws that result; other resources are ignored.
    /// </summary>
    private static Mapped FromBundle(Bundle b, IReadOnlyDictionary<int, string> badEntries)
    {
        var inputs = new List<EvaluationInput>();
        var issues = new List<CoreIssue>();
        var deletions = new List<Deletion>();
        for (int i = 0; i < b.Entry.Count; i++)
        {
            string at = $"Bundle.entry[{i}]";
            if (badEntries.TryGetValue(i, out var why))
            {
                issues.Add(new CoreIssue(OutcomeCodes.UnparseableEntry, OperationOutcome.IssueSeverity.Error, why, at));
                continue;
            }
            var entry = b.Entry[i];
            // A DELETE entry records a deletion (in a history Bundle, without a resource); one that carries the
            // Observation anyway (invalid in a transaction, where the resource is ignored) is its last version too.
            bool deletion = entry is { Request.Method: Bundle.HTTPVerb.DELETE };
            if (entry.Resource is not Observation && !deletion) continue;
            // An entry (or its request) under a modifier MagCds does not know may not mean what it seems to: not used.
            if (entry.ModifierExtension.Count > 0 || entry.Request?.ModifierExtension.Count > 0)
            {
                issues.Add(new CoreIssue(OutcomeCodes.UnknownModifier, OperationOutcome.IssueSeverity.Error,
                    "The entry carries a modifier extension that MagCds does not know; it is not used.", at));
                continue;
            }
            // The parser does not check a fullUrl's characters; one that is no FHIR uri (a control character, a
            // space) would be copied into the outputs' references and make them invalid, so the entry is refused.
            if (b.Entry[i].FullUrl is { } fullUrl && !IsFhirUri(fullUrl))
            {
                issues.Add(new CoreIssue(OutcomeCodes.UnparseableEntry, OperationOutcome.IssueSeverity.Error, "The entry's fullUrl is not a valid uri.", at + ".fullUrl"));
                continue;
            }
            if (deletion)
            {
                // Another resource type's deletion is ignored like the resource; a conditional delete names no result.
                var carried = entry.Resource as Observation;
                if ((DeletedObservation(entry.Request!.Url) ?? carried?.Id) is { } id)
                    deletions.Add(new Deletion(id, entry.FullUrl ?? AbsoluteOrNull(entry.Request.Url), at, EtagVersion(entry.Response?.Etag), entry.Response?.LastModified));
                if (carried is null) continue;
            }
            inputs.Add(new EvaluationInput((Observation)entry.Resource!, LocalReference((Observation)entry.Resource!) ?? entry.FullUrl, at + ".resource", entry.FullUrl));
        }
        if (inputs.Count == 0 && issues.Count == 0)
            throw new FhirRequestException(StatusCodes.Status422UnprocessableEntity, OutcomeCodes.NothingEvaluated, deletions.Count == 0
                ? "The Bundle holds no Observation as an entry's resource (Observations inside a nested Bundle or contained in another resource, such as a DiagnosticReport, are not read: send each as an entry)."
                : "The Bundle holds no Observation, only a deletion: that alone does not name the outputs to retract. Send the deleted result's last version with it.");
        return new Mapped(new EvaluationRequest(inputs, []) { Deletions = deletions }, issues);
    }

    /// <summary>The id in a DELETE entry's url (<c>Observation/{id}</c>, relative or absolute, maybe with a version); null for anything else.</summary>
    private static string? DeletedObservation(string? url) =>
        url is not null && DeletedUrl().Match(url) is { Success: true } m ? m.Groups[1].Value : null;

    [System.Text.RegularExpressions.GeneratedRegex(@"^(?:https?://[^?#]*/)?Observation/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?\z")]
    private static partial System.Text.RegularExpressions.Regex DeletedUrl();

    /// <summary>The version in an ETag (<c>W/"3"</c> → 3).</summary>
    private static string? EtagVersion(string? etag) => etag is null ? null : EtagValue().Match(etag) is { Success: true } m ? m.Groups[1].Value : null;

    [System.Text.RegularExpressions.GeneratedRegex(@"^(?:W/)?""([A-Za-z0-9\-.]{1,64})""\z")]
    private static partial System.Text.RegularExpressions.Regex EtagValue();

    private static string? AbsoluteOrNull(string? url) => url is not null && url.Contains("://", StringComparison.Ordinal) ? url : null;

    private static string? LocalReference(Observation o) => string.IsNullOrEmpty(o.Id) ? null : "Observation/" + o.Id;

    /// <summary>FHIR's uri: no whitespace, and as a string no control characters.</summary>
    private static bool IsFhirUri(string s)
    {
        foreach (char c in s) if (char.IsWhiteSpace(c) || char.IsControl(c)) return false;
        return s.Length > 0;
    }

    private static FhirRequestException InvalidParameters(string message) =>
        new(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidParameters, message);

    /// <summary>
    /// The answer: 200 with Parameters when at least one input was evaluated or retracted; otherwise 422 with an
    /// OperationOutcome that says, per input, why nothing could be done. Results are evaluated only until the first
    /// one that succeeds; the rest are evaluated while the Parameters is written (<see cref="Answer.Parts"/>).
    /// </summary>
    public static Answer Start(EvaluationRun run, IReadOnlyList<CoreIssue> entryIssues, EvaluationSummary summary, CanonicalUrls urls)
    {
        var results = run.Results.GetEnumerator();
        var head = new List<InputResult>();
        while (results.MoveNext())
        {
            head.Add(results.Current);
            if (results.Current.Outcome != InputOutcome.NotEvaluated) break;
        }
        if (head.All(r => r.Outcome == InputOutcome.NotEvaluated))
        {
            results.Dispose();
            foreach (var r in head) summary.Add(r);
            summary.AddIssues(entryIssues.Concat(run.RequestIssues));
            var outcome = new OperationOutcome
            {
                Issue = [Outcomes.Issue(urls, OutcomeCodes.NothingEvaluated, OperationOutcome.IssueSeverity.Error,
                    "No input could be evaluated; the issues below say why for each."),
                    .. entryIssues.Concat(head.SelectMany(r => r.Issues)).Concat(run.RequestIssues).Select(i => Outcomes.Issue(urls, i))],
            };
            return new Answer(StatusCodes.Status422UnprocessableEntity, outcome, []);
        }
        return new Answer(StatusCodes.Status200OK, null, Parts(head, results, run, entryIssues, summary, urls));
    }

    /// <summary>Status and either the OperationOutcome (422) or the Parameters parts, produced as they are written (200).</summary>
    public sealed record Answer(int Status, OperationOutcome? Outcome, IEnumerable<Parameters.ParameterComponent> Parts)
    {
        /// <summary>The whole answer as one resource (tests and small callers; the door streams the parts instead).</summary>
        public Resource ToResource() => Outcome is not null ? Outcome : new Parameters { Parameter = Parts.ToList() };
    }

    private static IEnumerable<Parameters.ParameterComponent> Parts(List<InputResult> head, IEnumerator<InputResult> rest,
        EvaluationRun run, IReadOnlyList<CoreIssue> entryIssues, EvaluationSummary summary, CanonicalUrls urls)
    {
        var issues = new List<CoreIssue>(entryIssues);
        foreach (var r in head.Concat(Remaining(rest)))
        {
            summary.Add(r);
            issues.AddRange(r.Issues);
            if (r.RiskAssessment is not null) yield return new Parameters.ParameterComponent { Name = Out.RiskAssessment, Resource = r.RiskAssessment };
            if (r.DetectedIssue is not null) yield return new Parameters.ParameterComponent { Name = Out.DetectedIssue, Resource = r.DetectedIssue };
        }
        issues.AddRange(run.RequestIssues);
        summary.AddIssues(entryIssues.Concat(run.RequestIssues));
        var outcome = new OperationOutcome
        {
            Issue = [Outcomes.Issue(urls, OutcomeCodes.Evaluated, OperationOutcome.IssueSeverity.Information,
                $"{summary.Done} of {summary.Inputs + entryIssues.Count} inputs evaluated with MagCds knowledge {run.KnowledgeVersion}."),
                .. issues.Select(i => Outcomes.Issue(urls, i))],
        };
        yield return new Parameters.ParameterComponent { Name = Out.Outcome, Resource = outcome };
        yield return new Parameters.ParameterComponent { Name = Out.KnowledgeVersion, Value = new FhirString(run.KnowledgeVersion) };
    }

    private static IEnumerable<InputResult> Remaining(IEnumerator<InputResult> e)
    {
        using (e)
            while (e.MoveNext()) yield return e.Current;
    }
}
