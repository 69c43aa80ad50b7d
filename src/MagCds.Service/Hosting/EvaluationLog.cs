using MagCds.Core.Evaluation;

namespace MagCds.Service.Hosting;

/// <summary>
/// What one evaluation did, gathered while its results are produced (doors may stream them), and written as the
/// one log line per evaluation: counts, outcome codes, knowledge version and output ids (hashes); never a value,
/// name, identifier or resource (no PHI in logs).
/// </summary>
public sealed partial class EvaluationSummary(string door, string knowledgeVersion)
{
    private readonly Dictionary<string, int> _outcomes = new(StringComparer.Ordinal);
    private readonly HashSet<string> _codes = new(StringComparer.Ordinal);
    private readonly List<string> _outputIds = [];

    public int Inputs { get; private set; }
    public int Done { get; private set; }

    public void Add(InputResult r)
    {
        Inputs++;
        if (r.Outcome != InputOutcome.NotEvaluated) Done++;
        string key = r.Interpretation?.Category.ToString() ?? r.Outcome.ToString();
        _outcomes[key] = _outcomes.GetValueOrDefault(key) + 1;
        foreach (var i in r.Issues) _codes.Add(i.Code.Code);
        foreach (var o in new[] { r.RiskAssessment?.Id, r.DetectedIssue?.Id })
            if (o is not null && _outputIds.Count < 20) _outputIds.Add(o);
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

    public void Write(ILogger logger) =>
        Evaluated(logger, Inputs, door, _outcomes, _codes.Order(StringComparer.Ordinal).ToArray(), knowledgeVersion, [.. _outputIds]);

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Evaluated {InputCount} inputs via {Door}: {Outcomes}; codes {IssueCodes}; knowledge {KnowledgeVersion}; outputs {OutputIds}")]
    private static partial void Evaluated(ILogger logger, int inputCount, string door, Dictionary<string, int> outcomes,
        string[] issueCodes, string knowledgeVersion, string[] outputIds);
}
