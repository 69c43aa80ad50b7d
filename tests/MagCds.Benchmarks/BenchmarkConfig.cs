using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;

namespace MagCds.Benchmarks;

/// <summary>
/// Added to the default config and the command line (--job short, --filter ...): show the median, and the input
/// file names in full instead of "Obser(...).json".
/// </summary>
public sealed class BenchmarkConfig : ManualConfig
{
    public BenchmarkConfig()
    {
        AddColumn(StatisticColumn.Median);
        SummaryStyle = SummaryStyle.Default.WithMaxParameterColumnWidth(40);
    }
}
