using MagCds.Service.Audit;
using MagCds.Service.Hosting;
using Hl7.Fhir.Model;
using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;
using MagCds.Service.Storage;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Worker;

/// <summary>
/// The FHIR server door's HTTP side: <c>/worker/notifications</c>, where the watched server delivers Subscription
/// notifications (acknowledged only once what they name is stored), and <c>/admin/worker</c>, the operators' view of
/// the queue with dead-letter replay (admin access: see Security/Access). Mapped only when the worker is enabled.
/// </summary>
public static class WorkerEndpoints
{
    private const long MaxNotificationBytes = 16 * 1024 * 1024;

    public static IEndpointRouteBuilder MapWorker(this IEndpointRouteBuilder app)
    {
        if (!app.ServiceProvider.GetRequiredService<IOptions<WorkerOptions>>().Value.Enabled) return app;

        var notify = app.MapGroup("/worker/notifications").AddEndpointFilter(RequireSecret);
        notify.MapPost("/", NotifyAsync);
        // Classic R4 rest-hook with a payload: the server PUTs the resource to endpoint/Type/id.
        notify.MapPut("/{type}/{id}", NotifyAsync);

        var admin = app.MapGroup("/admin/worker").RequireAuthorization(Security.Access.AdminPolicy).RequireRateLimiting(RateLimits.Policy).Audited();
        admin.MapRead("/", async (WorkQueue queue, WorkerFhirClient fhir, ServerClock clock, MagCds.Core.Knowledge.KnowledgeBase knowledge, CancellationToken ct) =>
        {
            var s = await queue.StatsAsync(ct, fhir.Server);
            return Results.Json(new
            {
                server = fhir.Server,
                queue = new { pending = s.Pending, leased = s.Leased, deadLetters = s.Dead, done = s.Done, lagSeconds = s.Lag.TotalSeconds },
                pollCursor = await queue.GetStateAsync(fhir.Server, Poller.CursorKey, ct),
                // Work kept under other addresses: an old address of this server (MagCds:Worker:PreviousServerUrl
                // moves it here), or other deployments sharing the store.
                elsewhere = (await queue.ElsewhereAsync(fhir.Server, ct)).ToDictionary(e => e.Key, e => new { pending = e.Value.Pending, deadLetters = e.Value.Dead }),
                // This replica's: the server asked it (429/503 with Retry-After) to send nothing before then.
                pausedUntil = clock.PausedUntil,
                knowledgeVersion = knowledge.Version,
                // Results whose outputs on the server are of another knowledge version (POST /admin/worker/reassess).
                assessedWithOtherKnowledge = await queue.AssessedWithOtherKnowledgeAsync(fhir.Server, knowledge.Version, ct),
            });
        });
        // After a knowledge upgrade: every result assessed with another knowledge version (all=true: every result
        // assessed) is assessed again; its new outputs are written and the earlier ones superseded, as for any change.
        // They start at perSecond (default 5), so new results keep going first and the FHIR server is not flooded.
        admin.MapPost("/reassess", async (HttpContext http, WorkQueue queue, WorkerFhirClient fhir, WorkerSignal signal, MagCds.Core.Knowledge.KnowledgeBase knowledge,
            CancellationToken ct, bool all = false, double perSecond = 5) =>
        {
            if (!(perSecond is > 0 and <= 1000))
                throw new FhirRequestException(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidQuery, "perSecond must be a number above 0 and at most 1000.");
            int queued = await queue.EnqueueReassessmentAsync(fhir.Server, knowledge.Version, all, TimeSpan.FromSeconds(1 / perSecond), ct);
            http.Items[Audit.AuditEndpoints.DetailItem] = $"{queued} queued{(all ? ", all" : "")}";
            signal.Wake();
            return Results.Json(new { queued, knowledgeVersion = knowledge.Version, perSecond }, statusCode: StatusCodes.Status202Accepted);
        });
        admin.MapRead("/dead-letters", async (WorkQueue queue, WorkerFhirClient fhir, CancellationToken ct, int max = 100) =>
            Results.Json((await queue.DeadLettersAsync(Math.Clamp(max, 1, 1000), ct, fhir.Server)).Select(d => new
            {
                id = d.Id, resource = $"{d.ResourceType}/{d.ResourceId}", reason = d.Reason, attempts = d.Attempts, enqueuedAt = d.EnqueuedAt, failedAt = d.FailedAt,
            })));
        admin.MapPost("/dead-letters/replay", async (HttpContext http, WorkQueue queue, WorkerFhirClient fhir, WorkerSignal signal, CancellationToken ct, string? reason = null) =>
        {
            int replayed = await queue.ReplayAllAsync(fhir.Server, reason, ct);
            // The reason is a code the worker wrote (http-401); anything else an admin typed is not copied into the trail.
            http.Items[Audit.AuditEndpoints.DetailItem] = $"{replayed} replayed"
                + (reason is null ? "" : System.Text.RegularExpressions.Regex.IsMatch(reason, "^[a-z0-9-]{1,40}$") ? ", reason " + reason : ", reason given");
            signal.Wake();
            return Results.Json(new { replayed }, statusCode: StatusCodes.Status202Accepted);
        });
        admin.MapPost("/dead-letters/{id:long}/replay", async (long id, WorkQueue queue, WorkerFhirClient fhir, WorkerSignal signal, CancellationToken ct) =>
        {
            if (!await queue.ReplayAsync(id, fhir.Server, ct))
                throw new FhirRequestException(StatusCodes.Status404NotFound, OutcomeCodes.NotFound, $"No dead letter {id}.");
            signal.Wake();
            return Results.Accepted();
        });
        return app;
    }

    private static async Task<IResult> NotifyAsync(HttpRequest req, WorkQueue queue, WorkerFhirClient fhir, EventRecovery recovery,
        WorkerSignal signal, WorkerMetrics metrics, CancellationToken ct)
    {
        var body = await FhirWire.ReadBodyAsync(req, MaxNotificationBytes, ct);
        var n = NotificationReader.Ping;
        bool atUrl = req.RouteValues.ContainsKey("type") && req.RouteValues.ContainsKey("id");
        string? unreadBody = null;
        if (!body.IsEmpty)
        {
            try
            {
                var parsed = FhirWire.Parse(body, FhirWire.RequestFormat(req));
                n = NotificationReader.Read(parsed.Resource);
                // An entry that could not be read may be the one that said what changed (a Backport status with its event
                // number, an Observation): it is not lost, a catch-up poll finds it.
                if (parsed.BadEntries.Count > 0) n = n with { NeedsPoll = true };
            }
            catch (FhirRequestException e) when (atUrl && e.Status == StatusCodes.Status400BadRequest)
            {
                // A classic rest-hook PUT names its resource in the URL, and the worker reads the current version
                // anyway: a body MagCds cannot read (a value the strict parser refuses) does not lose the event.
                unreadBody = e.Message;
            }
        }
        if (atUrl)
            n = NotificationReader.AtUrl(n, $"{req.RouteValues["type"]}", $"{req.RouteValues["id"]}")
                ?? throw new FhirRequestException(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidQuery, "The URL names no resource as Type/id, or the body is another resource.");
        metrics.Notification(n.Kind);

        var observations = n.Resources.Where(r => r.Type == "Observation").ToList();
        foreach (var other in n.Resources.Where(r => r.Type != "Observation")) metrics.Ignored(other.Type);
        // Stored before the answer: a notification acknowledged is never lost, nor the poll it asks for.
        if (observations.Count > 0 || n.NeedsPoll)
            await queue.EnqueueAsync(fhir.Server, observations, "subscription",
                n.NeedsPoll ? new Dictionary<string, string>([Poller.Request()]) : new Dictionary<string, string>(), ct);
        await recovery.NoteAsync(n, ct);
        signal.Wake();

        var urls = req.HttpContext.RequestServices.GetRequiredService<MagCds.Core.CanonicalUrls>();
        var outcome = new OperationOutcome
        {
            Issue = [Outcomes.Issue(urls, OutcomeCodes.NotificationQueued, OperationOutcome.IssueSeverity.Information,
                n.NeedsPoll ? $"{n.Kind}: a poll was requested." : $"{n.Kind}: {observations.Count} Observation(s) queued.")],
        };
        if (unreadBody is not null)
            outcome.Issue.Add(Outcomes.Issue(urls, OutcomeCodes.Unparseable, OperationOutcome.IssueSeverity.Warning,
                $"The body could not be read ({unreadBody}); the resource the URL names was queued, and its current version is read from the FHIR server."));
        return new FhirResult(outcome, FhirFormat.Json);
    }

    private static async ValueTask<object?> RequireSecret(EndpointFilterInvocationContext ctx, EndpointFilterDelegate next)
    {
        var s = ctx.HttpContext.RequestServices.GetRequiredService<IOptions<WorkerOptions>>().Value.Subscription;
        if (string.IsNullOrEmpty(s.Secret))
            throw new FhirRequestException(StatusCodes.Status403Forbidden, OutcomeCodes.Forbidden,
                "Notifications are refused until MagCds:Worker:Subscription:Secret is set.");
        if (!Security.Secrets.Same(ctx.HttpContext.Request.Headers[s.SecretHeader].ToString(), s.Secret))
            throw new FhirRequestException(StatusCodes.Status401Unauthorized, OutcomeCodes.Unauthorized, $"Missing or wrong {s.SecretHeader} header.");
        return await next(ctx);
    }
}
