using System.Collections.Concurrent;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Serilog.Core;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace MagCds.Tests.Support;

/// <summary>
/// The real service in memory, with every log event it writes captured for inspection, and every output it emits
/// checked against the MagCds profiles (<see cref="OutputConformance"/>).
/// </summary>
public sealed class MagCdsFactory(IReadOnlyDictionary<string, string?>? settings = null, TimeProvider? time = null) : WebApplicationFactory<Program>
{
    public CapturedLogs Logs { get; } = new();
    public OutputConformance Conformance { get; } = new();

    /// <summary>Each factory gets its own SQLite file unless the test names one (e.g. to restart on the same store).</summary>
    public string StorePath { get; } = settings?.GetValueOrDefault("MagCds:Store:SqliteConnectionString") is { } cs
        ? cs["Data Source=".Length..]
        : Path.Combine(Path.GetTempPath(), $"magcds-test-{Guid.NewGuid():N}.db");

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        // Each test service would otherwise load a validator in the background; the tests share theirs (FhirValidation).
        builder.UseSetting("MagCds:FhirRest:WarmUpValidator", "false");
        builder.UseSetting("MagCds:Store:SqliteConnectionString", "Data Source=" + StorePath);
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>()) builder.UseSetting(k, v);
        builder.ConfigureTestServices(s =>
        {
            s.AddSingleton<ILogEventSink>(Logs);
            s.AddSingleton<IStartupFilter>(new OutputConformance.StartupFilter(Conformance));
            s.ConfigureHttpClientDefaults(b => b.AddHttpMessageHandler(sp => new OutputConformance.WriteCheck(Conformance, sp)));
            if (time is not null) s.AddSingleton(time);
        });
    }

    private int _scannedLines;
    private int _reportedFailures;

    /// <summary>
    /// Fails when the service did something wrong since the last check: emitted an output that does not conform to the
    /// MagCds profiles (it already failed the request that carried it; this names it once more), or wrote PHI of the
    /// test data into a log line (<see cref="PhiScan"/>). Called when the factory is disposed, and after each test by
    /// fixtures that share one service, so every scenario of the suite is checked and a failure is counted.
    /// </summary>
    public void AssertClean()
    {
        var failures = Conformance.Failures.Skip(_reportedFailures).ToList();
        _reportedFailures += failures.Count;
        if (failures.Count > 0)
            throw new AssertionException("Outputs that do not conform to the MagCds profiles:\n" + string.Join("\n", failures));
        var lines = Logs.Templated.Skip(_scannedLines).ToList();
        _scannedLines += lines.Count;
        if (PhiScan.Hits(lines) is { Count: > 0 } hits)
            throw new AssertionException("PHI of the test data in the service's logs:\n" + string.Join("\n", hits));
    }

    /// <summary>
    /// <see cref="AssertClean"/>, then lets go of the log lines it scanned: a test that measures the service's memory
    /// must not count the test's own copy of every log line, which grows with every request.
    /// </summary>
    public void AssertCleanAndForgetLogs()
    {
        AssertClean();
        Logs.Forget(_scannedLines);
        _scannedLines = 0;
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) AssertClean();
    }
}

/// <summary>A clock the test sets.</summary>
public sealed class FixedClock(DateTimeOffset now) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = now;
    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>A Serilog sink that keeps each event as the compact JSON the console would show, and as its template and properties.</summary>
public sealed class CapturedLogs : ILogEventSink
{
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly ConcurrentQueue<string> _templated = new();
    private readonly RenderedCompactJsonFormatter _rendered = new();
    private readonly CompactJsonFormatter _compact = new();

    public void Emit(LogEvent logEvent)
    {
        using var w = new StringWriter();
        _rendered.Format(logEvent, w);
        _lines.Enqueue(w.ToString());
        using var t = new StringWriter();
        _compact.Format(logEvent, t);
        _templated.Enqueue(t.ToString());
    }

    /// <summary>Drops the first <paramref name="count"/> events (those already scanned); events emitted since stay.</summary>
    public void Forget(int count)
    {
        for (int i = 0; i < count; i++)
        {
            _lines.TryDequeue(out _);
            _templated.TryDequeue(out _);
        }
    }

    /// <summary>Each event as the console shows it (the message rendered).</summary>
    public IReadOnlyCollection<string> Lines => _lines.ToArray();

    /// <summary>Each event as its message template plus properties: what the PHI scan searches (<see cref="PhiScan"/>).</summary>
    public IReadOnlyCollection<string> Templated => _templated.ToArray();
}
