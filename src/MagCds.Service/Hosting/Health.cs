using MagCds.Core.Evaluation;
using MagCds.Core.Knowledge;
using MagCds.Service.Storage;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Hl7.Fhir.Model;

namespace MagCds.Service.Hosting;

/// <summary>
/// Kubernetes-style probes. <c>/health/live</c>: the process answers (no checks, so a slow database never gets a
/// healthy process restarted). <c>/health/ready</c>: the knowledge is loaded, the store answers, and the warm-up
/// evaluation has run, so the first real request is not the slow one.
/// </summary>
public static class Health
{
    public const string ReadyTag = "ready";

    public static IEndpointRouteBuilder MapMagCdsHealth(this IEndpointRouteBuilder app)
    {
        app.MapHealthChecks("/health/live", new Microsoft.AspNetCore.Diagnostics.HealthChecks.HealthCheckOptions { Predicate = _ => false }).ReadOnly();
        app.MapHealthChecks("/health/ready", new Microsoft.AspNetCore.Diagnostics.HealthChecks.HealthCheckOptions
        {
            Predicate = c => c.Tags.Contains(ReadyTag),
            ResponseWriter = WriteAsync,
            // Degraded (still warming up: logged as a warning, not an error) is not ready either.
            ResultStatusCodes =
            {
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status503ServiceUnavailable,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
        }).ReadOnly();
        return app;
    }

    /// <summary>Each check's name and status, never exception messages (they may name hosts or hold connection details).</summary>
    private static Task WriteAsync(HttpContext http, HealthReport report)
    {
        http.Response.ContentType = "application/json";
        return http.Response.WriteAsJsonAsync(new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(e => e.Key, e => new { status = e.Value.Status.ToString(), description = e.Value.Description }),
        });
    }
}

/// <summary>The knowledge is loaded and checked (a broken file stops the service before it listens, so this is a formality).</summary>
public sealed class KnowledgeHealthCheck(KnowledgeBase knowledge) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct) =>
        Task.FromResult(HealthCheckResult.Healthy($"knowledge {knowledge.Version}"));
}

/// <summary>The store answers a trivial query.</summary>
public sealed class StoreHealthCheck(Database db) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct) =>
        await db.PingAsync(ct) ? HealthCheckResult.Healthy($"{db.Provider} store answers") : HealthCheckResult.Unhealthy($"{db.Provider} store does not answer");
}

/// <summary>
/// Runs one evaluation of a built-in sample in the background after start-up (JIT, Firely serializers, the knowledge's
/// rendered text), without delaying the doors; readiness waits for it.
/// </summary>
public sealed class WarmUp(Evaluator evaluator) : BackgroundService, IHealthCheck
{
    private readonly TaskCompletionSource _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _done;

    /// <summary>Completes when the warm-up evaluation has run (other start-up work waits for it, not to compete for CPU).</summary>
    public Task Completed => _completed.Task;

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.Run(() =>
    {
        var sample = new Observation
        {
            Status = ObservationStatus.Final,
            Code = new CodeableConcept("http://loinc.org", "39087-2"),
            Subject = new ResourceReference("Patient/warm-up"),
            Effective = new FhirDateTime(2026, 1, 1),
            Value = new Quantity { Value = 25000, Unit = "BTU" },
        };
        try
        {
            var response = evaluator.Evaluate(EvaluationRequest.Of(new EvaluationInput(sample, "Observation/warm-up", "warm-up")));
            using var sink = new MemoryStream();
            foreach (var r in response.Outputs) FhirRest.FhirWire.WriteAsync(r, FhirRest.FhirFormat.Json, sink, stoppingToken).GetAwaiter().GetResult();
            _done = true;
        }
        finally
        {
            // Whatever happened, work that waits for the warm-up goes on (readiness reports a failed one).
            _completed.TrySetResult();
        }
    }, stoppingToken);

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken ct) =>
        // Warming up is expected at every start: Degraded, so the health check service logs it as a warning (an error
        // line on every start would page someone); a warm-up that failed is Unhealthy.
        Task.FromResult(_done ? HealthCheckResult.Healthy("warm-up done")
            : _completed.Task.IsCompleted ? HealthCheckResult.Unhealthy("warm-up failed") : HealthCheckResult.Degraded("warming up"));
}
