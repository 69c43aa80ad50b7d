using BenchmarkDotNet.Attributes;
using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;
using MagCds.Service.Hosting;

namespace MagCds.Benchmarks;

/// <summary>
/// The FHIR REST door's work in-process, without HTTP: JSON text → <see cref="FhirWire.Parse"/> →
/// <see cref="MagEvaluateOperation.ToRequest"/> → <see cref="Evaluator.Evaluate"/> → <see cref="MagEvaluateOperation.Start"/>
/// → <see cref="FhirWire.WriteAsync"/> (what the door streams to the response), against the floor of parsing and
/// writing the same input alone.
/// The floor is the baseline, so the Ratio column reads "full path / floor" for each input file.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(BenchmarkConfig))]
public class DoorPathBenchmarks
{
    private Evaluator _evaluator = null!;
    private byte[] _json = [];

    [Params(TestInputs.Single, TestInputs.WithHistory)]
    public string File { get; set; } = TestInputs.Single;

    [GlobalSetup]
    public void Setup()
    {
        _evaluator = TestInputs.NewEvaluator();
        _json = System.Text.Encoding.UTF8.GetBytes(TestInputs.Text(File));
        TestInputs.CheckEvaluates(_evaluator, _json, File);
    }

    [Benchmark(Baseline = true)]
    public async Task<long> ParseSerialise()
    {
        using var output = new MemoryStream();
        await FhirWire.WriteAsync(FhirWire.Parse(_json, FhirFormat.Json).Resource, FhirFormat.Json, output, CancellationToken.None);
        return output.Length;
    }

    [Benchmark]
    public async Task<long> ParseEvaluateSerialise()
    {
        var mapped = MagEvaluateOperation.ToRequest(FhirWire.Parse(_json, FhirFormat.Json));
        var answer = MagEvaluateOperation.Start(_evaluator.Start(mapped.Request), mapped.EntryIssues, new EvaluationSummary("bench", ""), _evaluator.Canonical);
        using var output = new MemoryStream();
        await FhirWire.WriteParametersAsync(answer.Parts, FhirFormat.Json, output, CancellationToken.None);
        return output.Length;
    }
}
