using System.Diagnostics.Tracing;
using MagCds.Service.FhirRest;

namespace MagCds.Benchmarks;

/// <summary>
/// What <see cref="EvaluateBenchmarks.Evaluate"/> allocates, by type: the runtime's allocation ticks (one event per
/// about 100 KB allocated, naming the type that crossed it) counted over many evaluations of one input. The share of
/// ticks is the share of allocated bytes, to within sampling. <c>MemoryDiagnoser</c> gives the total; this says what
/// it is made of.
/// </summary>
public static class AllocationsByType
{
    public static void Run(string file)
    {
        var evaluator = TestInputs.NewEvaluator();
        var request = MagEvaluateOperation.ToRequest(FhirWire.Parse(System.Text.Encoding.UTF8.GetBytes(TestInputs.Text(file)), FhirFormat.Json)).Request;
        for (int i = 0; i < 20_000; i++) evaluator.Evaluate(request); // warm: tiered compilation done before counting
        var counts = new Dictionary<string, long>();
        using (new Ticks(counts))
            for (int i = 0; i < 300_000; i++) evaluator.Evaluate(request);
        long total = counts.Values.Sum();
        Console.WriteLine($"{file}: {total} allocation ticks");
        foreach (var (type, n) in counts.OrderByDescending(c => c.Value).Take(20))
            Console.WriteLine($"{100.0 * n / total,6:F1} %  {type}");
    }

    private sealed class Ticks(Dictionary<string, long> counts) : EventListener
    {
        protected override void OnEventSourceCreated(EventSource source)
        {
            if (source.Name == "Microsoft-Windows-DotNETRuntime") EnableEvents(source, EventLevel.Verbose, (EventKeywords)0x1); // GC keyword
        }

        protected override void OnEventWritten(EventWrittenEventArgs e)
        {
            if (e.EventName?.StartsWith("GCAllocationTick", StringComparison.Ordinal) != true || e.PayloadNames is null) return;
            string type = e.Payload![e.PayloadNames.IndexOf("TypeName")] as string ?? "?";
            lock (counts) counts[type] = counts.GetValueOrDefault(type) + 1;
        }
    }
}
