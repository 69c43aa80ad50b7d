using BenchmarkDotNet.Attributes;
using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;

namespace MagCds.Benchmarks;

/// <summary>
/// The evaluation core alone: an already parsed and mapped request goes through <see cref="Evaluator.Evaluate"/>
/// to the output POCOs (RiskAssessment, DetectedIssue). No parsing and no serialisation are measured.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(BenchmarkConfig))]
public class EvaluateBenchmarks
{
    private Evaluator _evaluator = null!;
    private EvaluationRequest _request = null!;

    [Params(TestInputs.Single, TestInputs.WithHistory)]
    public string File { get; set; } = TestInputs.Single;

    [GlobalSetup]
    public void Setup()
    {
        _evaluator = TestInputs.NewEvaluator();
        byte[] json = System.Text.Encoding.UTF8.GetBytes(TestInputs.Text(File));
        TestInputs.CheckEvaluates(_evaluator, json, File);
        _request = MagEvaluateOperation.ToRequest(FhirWire.Parse(json, FhirFormat.Json)).Request;
    }

    [Benchmark]
    public EvaluationResponse Evaluate() => _evaluator.Evaluate(_request);
}
