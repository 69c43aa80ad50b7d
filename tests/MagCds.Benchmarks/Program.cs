using BenchmarkDotNet.Running;

namespace MagCds.Benchmarks;

/// <summary>
/// Entry point. Every BenchmarkDotNet command-line option works, for example:
/// <code>
/// dotnet run -c Release --project tests/MagCds.Benchmarks -- --filter '*'               # full run
/// dotnet run -c Release --project tests/MagCds.Benchmarks -- --filter '*' --job short   # quick run
/// dotnet run -c Release --project tests/MagCds.Benchmarks -- --list flat                # what there is
/// </code>
/// </summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
