using BenchmarkDotNet.Running;

namespace MagCds.Benchmarks;

/// <summary>
/// Entry point. Every BenchmarkDotNet command-line option works, for example:
/// <code>
/// dotnet run -c Release --project tests/MagCds.Benchmarks -- --filter '*'               # full run
/// dotnet run -c Release --project tests/MagCds.Benchmarks -- --filter '*' --job short   # quick run
/// dotnet run -c Release --project tests/MagCds.Benchmarks -- --list flat                # what there is
/// dotnet run -c Release --project tests/MagCds.Benchmarks -- allocations               # what Evaluate allocates, by type
/// </code>
/// </summary>
public static class Program
{
    public static void Main(string[] args)
    {
        if (args is ["allocations", ..])
        {
            foreach (var file in new[] { TestInputs.Single, TestInputs.WithHistory }) AllocationsByType.Run(file);
            return;
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
