using MagCds.Core.Evaluation;
using MagCds.Core.Knowledge;
using MagCds.Service.FhirRest;
using MagCds.Service.Hosting;

namespace MagCds.Benchmarks;

/// <summary>The embedded test files and the evaluator as the service builds it (embedded knowledge, no extra codes).</summary>
internal static class TestInputs
{
    /// <summary>One Observation alone, and one Observation with two earlier results (a trend is built).</summary>
    public const string Single = "Observation-btu-medium.json";
    public const string WithHistory = "Parameters-history-falling.json";

    public static Evaluator NewEvaluator() => new(KnowledgeLoader.Load(), new EvaluationOptions());

    public static string Text(string name)
    {
        using var s = typeof(TestInputs).Assembly.GetManifestResourceStream("TestData/" + name)
                      ?? throw new FileNotFoundException("No embedded test file " + name);
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>
    /// Runs the whole door path once and checks it answers 200 with outputs, so a benchmark never silently
    /// measures an error path (for example after a change to the test data).
    /// </summary>
    public static void CheckEvaluates(Evaluator evaluator, byte[] json, string name)
    {
        var mapped = MagEvaluateOperation.ToRequest(FhirWire.Parse(json, FhirFormat.Json));
        var response = evaluator.Evaluate(mapped.Request);
        int status = MagEvaluateOperation.Start(EvaluationRun.Of(response), mapped.EntryIssues, new EvaluationSummary("check", ""), MagCds.Core.CanonicalUrls.Default).Status;
        if (status != 200 || !response.Outputs.Any())
            throw new InvalidOperationException($"{name}: expected 200 with outputs, got {status} with {response.Outputs.Count()} outputs.");
    }
}
