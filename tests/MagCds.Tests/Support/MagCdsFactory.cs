using System.Collections.Concurrent;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace MagCds.Tests.Support;

/// <summary>The real service in memory, with every log event it writes captured for inspection.</summary>
public sealed class MagCdsFactory(IReadOnlyDictionary<string, string?>? settings = null) : WebApplicationFactory<Program>
{
    public CapturedLogs Logs { get; } = new();

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>()) builder.UseSetting(k, v);
        builder.ConfigureTestServices(s => s.AddSingleton<ILogEventSink>(Logs));
    }
}

/// <summary>A Serilog sink that keeps each event as the compact JSON the console would show.</summary>
public sealed class CapturedLogs : ILogEventSink
{
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly RenderedCompactJsonFormatter _formatter = new();

    public void Emit(LogEvent logEvent)
    {
        using var w = new StringWriter();
        _formatter.Format(logEvent, w);
        _lines.Enqueue(w.ToString());
    }

    public IReadOnlyCollection<string> Lines => _lines.ToArray();
}
