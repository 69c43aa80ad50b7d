using MagCds.Core.Evaluation;
using MagCds.Core.Knowledge;
using MagCds.Service.FhirRest;

namespace MagCds.Tests.Support;

/// <summary>The evaluation core as the doors use it, on the embedded knowledge.</summary>
public static class CoreUnderTest
{
    public static KnowledgeBase Knowledge { get; } = KnowledgeLoader.Load();
    public static Evaluator Evaluator { get; } = new(Knowledge, new EvaluationOptions());

    /// <summary>Reads a test file the way the FHIR REST door does and evaluates it.</summary>
    public static EvaluationResponse EvaluateFile(string file, Evaluator? evaluator = null) =>
        (evaluator ?? Evaluator).Evaluate(MagEvaluateOperation.ToRequest(new ParsedBody(TestFiles.Resource(file), new Dictionary<int, string>())).Request);
}
