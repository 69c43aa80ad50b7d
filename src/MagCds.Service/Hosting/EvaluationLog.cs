using System.Diagnostics.Metrics;
using MagCds.Core.Evaluation;

namespace MagCds.Service.Hosting;

/// <summary>
/// What one evaluation did, gathered while its results are produced (doors may stream them), and written as the
/// one log line per evaluation: counts, outcome codes, knowledge version and output ids (hashes); never a value,
/// name, identifier or resource (no PHI in logs).
/// </summary>
public sealed partial class EvaluationSummary(string door, string knowledgeVersion)
{
    public const string MeterName = "MagCds.Evaluation";
    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> Evaluations =
        Meter.CreateCounter<long>("magcds.evaluations", description: "Inputs evaluated, by door and outcome (interpretation category, or why not evaluated)");

    private readonly Dictionary<string, int> _outcomes = new(StringComparer.Ordinal);
    private readonly HashSet<string> _codes = new(StringComparer.Ordinal);
    private readonly List<string> _outputIds = [];
    private readonly List<(string Resource, string? Version, string Outcome, string[] Outputs)> _inputs = [];

    public int Inputs { get; private set; }
    public int Done { get; private set; }

    public void Add(InputResult r)
    {
        Inputs++;
        if (r.Outcome != InputOutcome.NotEvaluated) Done++;
        string key = r.Interpretation?.Category.ToString() ?? r.Outcome.ToString();
        _outcomes[key] = _outcomes.GetValueOrDefault(key) + 1;
        foreach (var i in r.Issues) _codes.Add(i.Code.Code);
        string[] outputs = new[] { r.RiskAssessment?.Id, r.DetectedIssue?.Id }.OfType<string>().ToArray();
        foreach (var o in outputs)
            if (_outputIds.Count < 20) _outputIds.Add(o);
        // The audit says why an input was not evaluated (its first outcome code, as the worker's entries do); the
        // metric keeps the few categories as its label values.
        string audited = r.Interpretation is null && r.Issues.Count > 0 ? r.Issues[0].Code.Code : key;
        _inputs.Add((r.Input.Reference ?? r.Input.Location, r.Input.Observation.Meta?.VersionId, audited, outputs));
    }

    public void AddIssues(IEnumerable<CoreIssue> issues)
    {
        foreach (var i in issues) _codes.Add(i.Code.Code);
    }

    public static EvaluationSummary Of(string door, EvaluationResponse response)
    {
        var s = new EvaluationSummary(door, response.KnowledgeVersion);
        foreach (var r in response.Results) s.Add(r);
        s.AddIssues(response.RequestIssues);
        return s;
    }

    /// <summary>
    /// Once the answer is complete: writes the log line, counts the evaluations (metric magcds.evaluations), and hands
    /// one audit entry per input to the audit trail.
    /// </summary>
    /// <param name="caller">Who asked, when the door knows better than the authenticated user (CDS Hooks: the EHR).</param>
    public void Write(ILogger logger, Audit.AuditTrail audit, HttpContext http, string? caller = null)
    {
        caller ??= Audit.AuditEndpoints.Caller(http);
        foreach (var i in _inputs)
            audit.Record(new Audit.AuditEntry(audit.Now, door, caller, http.TraceIdentifier, i.Resource, i.Version, knowledgeVersion, i.Outcome, i.Outputs));
        foreach (var (outcome, n) in _outcomes) Evaluations.Add(n, new("door", door), new("outcome", outcome));
        Evaluated(logger, Inputs, door, _outcomes, _codes.Order(StringComparer.Ordinal).ToArray(), knowledgeVersion, [.. _outputIds]);
    }

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Evaluated {InputCount} inputs via {Door}: {Outcomes}; codes {IssueCodes}; knowledge {KnowledgeVersion}; outputs {OutputIds}")]
    private static partial void Evaluated(ILogger logger, int inputCount, string door, Dictionary<string, int> outcomes,
        string[] issueCodes, string knowledgeVersion, string[] outputIds);
}
