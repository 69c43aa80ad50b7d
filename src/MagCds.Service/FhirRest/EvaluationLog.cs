using MagCds.Core.Evaluation;

namespace MagCds.Service.FhirRest;

/// <summary>
/// The one log line per evaluation. It carries counts, outcome codes, the knowledge version and output ids (which
/// are hashes); never a value, name, identifier or resource (no PHI in logs).
/// </summary>
public static partial class EvaluationLog
{
    public static void Write(ILogger logger, string door, EvaluationResponse response)
    {
        var outcomes = response.Results.GroupBy(r => r.Interpretation?.Category.ToString() ?? r.Outcome.ToString())
            .ToDictionary(g => g.Key, g => g.Count());
        var codes = response.Results.SelectMany(r => r.Issues).Concat(response.RequestIssues).Select(i => i.Code.Code).Distinct().ToArray();
        var ids = response.Outputs.Select(o => o.Id ?? "").Take(20).ToArray();
        Evaluated(logger, door, response.Results.Count, outcomes, codes, response.KnowledgeVersion, ids);
    }

    [LoggerMessage(Level = LogLevel.Information,
        Message = "Evaluated {InputCount} inputs via {Door}: {Outcomes}; codes {IssueCodes}; knowledge {KnowledgeVersion}; outputs {OutputIds}")]
    private static partial void Evaluated(ILogger logger, string door, int inputCount, Dictionary<string, int> outcomes,
        string[] issueCodes, string knowledgeVersion, string[] outputIds);
}
