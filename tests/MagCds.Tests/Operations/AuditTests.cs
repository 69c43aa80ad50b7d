using System.Net;
using System.Text.Json;
using MagCds.Service.Audit;
using MagCds.Service.Storage;
using MagCds.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace MagCds.Tests.Operations;

/// <summary>Every evaluation leaves an audit entry in the store (both kinds), queryable by an admin, without clinical values.</summary>
[TestFixture(StoreProvider.Sqlite)]
[TestFixture(StoreProvider.Postgres)]
public sealed class AuditTests(StoreProvider provider)
{
    private const string EngineKey = "engine-key-0123456789";
    private const string AdminKey = "operator-key-0123456789";

    [Test]
    public async Task REST_and_CDS_Hooks_evaluations_are_audited_with_caller_door_resource_version_and_outputs()
    {
        var settings = await StoreUnderTest.SettingsAsync(provider);
        settings["MagCds:Security:ApiKeys:0:Name"] = "lab-engine";
        settings["MagCds:Security:ApiKeys:0:Key"] = EngineKey;
        settings["MagCds:Security:ApiKeys:1:Name"] = "operator";
        settings["MagCds:Security:ApiKeys:1:Key"] = AdminKey;
        settings["MagCds:Security:ApiKeys:1:Admin"] = "true";
        settings["MagCds:CdsHooks:AllowUnsignedCalls"] = "true";
        using var f = new MagCdsFactory(settings);
        using var client = f.CreateClient();

        var medium = TestFiles.Resource<Hl7.Fhir.Model.Observation>("Observation-btu-medium.json");
        medium.Meta = new Hl7.Fhir.Model.Meta { VersionId = "7" };
        using (var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Body(medium, MagCds.Service.FhirRest.FhirFormat.Json) })
        {
            req.Headers.Add("X-API-Key", EngineKey);
            req.Headers.Add("X-Request-Id", "MSG-AUDIT-1");
            using var r = await client.SendAsync(req);
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        using (var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(TestFiles.Text("Observation-missing-value.json"), "application/fhir+json") })
        {
            req.Headers.Add("X-API-Key", EngineKey);
            using var r = await client.SendAsync(req);
            Assert.That((int)r.StatusCode, Is.EqualTo(422));
        }
        var obs = TestFiles.Resource<Hl7.Fhir.Model.Observation>("Observation-btu-high.json");
        // Development mode checks no token, so the issuer this (unsigned) one claims must not be audited as the caller.
        string unverified = CdsKit.UnsignedToken(CdsKit.Base + "/cds-services/magcds-patient-view");
        using (var r = await client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", CdsKit.PatientView("pat-oakhaven", [obs]), unverified)))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));

        List<JsonElement> entries = [], admin = [];
        await WorkerHarness.WaitUntilAsync(async () =>
        {
            using var req = new HttpRequestMessage(HttpMethod.Get, "/admin/audit");
            req.Headers.Add("X-API-Key", AdminKey);
            using var r = await client.SendAsync(req);
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            string text = await r.Content.ReadAsStringAsync();
            var all = JsonDocument.Parse(text).RootElement.EnumerateArray().ToList();
            // Reading the audit trail is itself audited (door "admin").
            (entries, admin) = (all.Where(e => e.GetProperty("door").GetString() != "admin").ToList(), all.Where(e => e.GetProperty("door").GetString() == "admin").ToList());
            return entries.Count == 3 && admin.Count > 0;
        }, "the three evaluations are audited");
        Assert.That(admin.Select(e => $"{e.GetProperty("caller").GetString()} {e.GetProperty("resource").GetString()}"), Has.All.EqualTo("operator GET /admin/audit"));

        // An input not evaluated is audited with the reason, as its outcome code.
        var refused = entries.Single(e => e.GetProperty("door").GetString() == "fhir-rest" && e.GetProperty("outputs").GetArrayLength() == 0);
        Assert.That(refused.GetProperty("outcome").GetString(), Is.EqualTo("missing-value"));
        var rest = entries.Single(e => e.GetProperty("door").GetString() == "fhir-rest" && e.GetProperty("outputs").GetArrayLength() > 0);
        Assert.That(rest.GetProperty("caller").GetString(), Is.EqualTo("lab-engine"), "the key's name, never the key");
        Assert.That(rest.GetProperty("correlationId").GetString(), Is.EqualTo("MSG-AUDIT-1"));
        Assert.That(rest.GetProperty("resource").GetString(), Is.EqualTo("Observation/btu-medium"));
        Assert.That(rest.GetProperty("outcome").GetString(), Is.EqualTo("Elevated"));
        Assert.That(rest.GetProperty("outputs").EnumerateArray().Select(o => o.GetString()![..3]), Is.EqualTo(new[] { "ra-", "di-" }));
        Assert.That(rest.GetProperty("version").GetString(), Is.EqualTo("7"), "the version of the Observation evaluated");
        Assert.That(rest.GetProperty("knowledgeVersion").GetString(), Is.EqualTo(CoreUnderTest.Knowledge.Version));
        var cds = entries.Single(e => e.GetProperty("door").GetString() == "magcds-patient-view");
        Assert.That(cds.GetProperty("caller").GetString(), Is.EqualTo("unsigned-development-call"));
        Assert.That(cds.GetProperty("resource").GetString(), Is.EqualTo("Observation/btu-high"));
        Assert.That(cds.GetProperty("outcome").GetString(), Is.EqualTo("Elevated"));
        Assert.That(cds.GetProperty("knowledgeVersion").GetString(), Is.EqualTo(CoreUnderTest.Knowledge.Version));
        Assert.That(cds.GetProperty("outputs").EnumerateArray().Select(o => o.GetString()![..3]), Is.EqualTo(new[] { "ra-", "di-" }));

        string all = string.Join(",", entries.Select(e => e.GetRawText()));
        Assert.That(all, Does.Not.Contain("25000").And.Not.Contain("pat-oakhaven").And.Not.Contain("ACC-BTU").And.Not.Contain(EngineKey));

        using var anonymous = await client.GetAsync("/admin/audit");
        Assert.That(anonymous.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
    }

    [Test]
    public async Task A_CDS_Hooks_call_is_audited_with_the_trusted_issuer_of_its_JWT()
    {
        using var kit = new CdsKit();
        var settings = await StoreUnderTest.SettingsAsync(provider);
        foreach (var (k, v) in kit.TrustSettings()) settings[k] = v;
        settings["MagCds:Security:ApiKeys:0:Name"] = "operator";
        settings["MagCds:Security:ApiKeys:0:Key"] = AdminKey;
        settings["MagCds:Security:ApiKeys:0:Admin"] = "true";
        using var f = new MagCdsFactory(settings);
        using var client = f.CreateClient();

        const string path = "/cds-services/magcds-patient-view";
        var obs = TestFiles.Resource<Hl7.Fhir.Model.Observation>("Observation-btu-high.json");
        string token = kit.Token(CdsKit.Base + path, kit.RsaKey, Microsoft.IdentityModel.Tokens.SecurityAlgorithms.RsaSha384);
        using (var r = await client.SendAsync(CdsKit.Post(path, CdsKit.PatientView("pat-oakhaven", [obs]), token)))
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));

        JsonElement cds = default;
        await WorkerHarness.WaitUntilAsync(async () =>
        {
            using var req = new HttpRequestMessage(HttpMethod.Get, "/admin/audit");
            req.Headers.Add("X-API-Key", AdminKey);
            using var r = await client.SendAsync(req);
            var found = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.EnumerateArray()
                .Where(e => e.GetProperty("door").GetString() == "magcds-patient-view").ToList();
            if (found.Count == 1) cds = found[0].Clone();
            return found.Count == 1;
        }, "the call is audited");
        Assert.That(cds.GetProperty("caller").GetString(), Is.EqualTo("ehr:" + CdsKit.Issuer));
        Assert.That(cds.GetRawText(), Does.Not.Contain(token.Split('.')[1]).And.Not.Contain(token.Split('.')[2]), "no part of the token");
    }

    [Test]
    public async Task An_entry_with_a_NUL_from_the_caller_does_not_stop_the_trail()
    {
        // PostgreSQL refuses NUL in text: an entry carrying one (from anything a caller sent) must not block the
        // batch, and every entry after it, for good.
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(provider));
        var now = new DateTimeOffset(2026, 11, 26, 8, 0, 0, TimeSpan.Zero);
        var audit = new AuditTrail(db, new FixedClock(now), Options.Create(new AuditOptions { BatchWindowMs = 10 }), NullLogger<AuditTrail>.Instance);
        await audit.StartAsync(CancellationToken.None);
        audit.Record(new AuditEntry(now, "fhir-rest", "test", "NUL-1", "urn:x\u0000y", null, "k1", "Elevated", ["ra-1"]));
        audit.Record(new AuditEntry(now, "fhir-rest", "test", "AFTER-1", "Observation/a", "1", "k1", "Elevated", ["ra-2"]));

        await WorkerHarness.WaitUntilAsync(async () => (await audit.QueryAsync(null, 10, CancellationToken.None)).Count == 2, "both entries are stored", 20);
        var stored = await audit.QueryAsync(null, 10, CancellationToken.None);
        Assert.That(stored.Single(e => e.CorrelationId == "NUL-1").Resource, Is.EqualTo("urn:x\uFFFDy"));
        await audit.StopAsync(CancellationToken.None);
    }

    [Test]
    public async Task Entries_that_meet_a_store_failure_are_kept_until_the_store_takes_them()
    {
        // The table gone for a while (as with a rotated password, a read-only standby or a missing database, the store
        // answers every insert with an error that says nothing about the entries): after three failed batches the
        // entries are tried one by one, and none of them may be dropped as "refused".
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(provider));
        var now = new DateTimeOffset(2026, 11, 26, 8, 0, 0, TimeSpan.Zero);
        var log = new Microsoft.Extensions.Logging.Testing.FakeLogger<AuditTrail>();
        var audit = new AuditTrail(db, new FixedClock(now), Options.Create(new AuditOptions { BatchWindowMs = 10 }), log);
        Assert.That(await audit.QueryAsync(null, 10, CancellationToken.None), Is.Empty); // the schema is made
        await ExecuteAsync(db, "ALTER TABLE audit_event RENAME TO audit_event_away");
        await audit.StartAsync(CancellationToken.None);
        for (int i = 0; i < 3; i++) audit.Record(new AuditEntry(now, "fhir-rest", "test", $"KEPT-{i}", $"Observation/k{i}", "1", "k", "Elevated", ["ra-1"]));

        await WorkerHarness.WaitUntilAsync(() => Task.FromResult(log.Collector.GetSnapshot().Count(r => r.Message.Contains("not stored yet", StringComparison.Ordinal)) >= 5),
            "the writer failed past its one-by-one pass", 30);
        // A store that stays down is not logged every second (an operator's probe saw a line a second during an outage).
        await Task.Delay(TimeSpan.FromSeconds(4));
        Assert.That(log.Collector.GetSnapshot().Count(r => r.Message.Contains("not stored yet", StringComparison.Ordinal)), Is.EqualTo(5),
            "after five failed tries, one line a minute");
        await ExecuteAsync(db, "ALTER TABLE audit_event_away RENAME TO audit_event");
        await WorkerHarness.WaitUntilAsync(async () => (await audit.QueryAsync(null, 10, CancellationToken.None)).Count == 3, "all three entries are stored once the store takes them", 30);
        Assert.That(log.Collector.GetSnapshot().Select(r => r.Message), Has.None.Contains("dropped"));
        Assert.That(log.Collector.GetSnapshot().Select(r => r.Message), Has.One.Contains("Audit entries stored again after"));
        await audit.StopAsync(CancellationToken.None);
    }

    [Test]
    public async Task A_queued_entry_keeps_no_more_of_what_the_caller_sent_than_the_store_would()
    {
        // While the store does not take entries, they wait in memory: a 2 MB fullUrl standing for the resource must not
        // wait with them (the store keeps 1,024 characters of it).
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(provider));
        var now = new DateTimeOffset(2026, 11, 26, 8, 0, 0, TimeSpan.Zero);
        var audit = new AuditTrail(db, new FixedClock(now), Options.Create(new AuditOptions { BatchWindowMs = 10 }), NullLogger<AuditTrail>.Instance);
        Assert.That(await audit.QueryAsync(null, 10, CancellationToken.None), Is.Empty);
        await ExecuteAsync(db, "ALTER TABLE audit_event RENAME TO audit_event_away");
        await audit.StartAsync(CancellationToken.None);
        var sent = RecordLarge(audit, now);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        Assert.That(sent.IsAlive, Is.False, "the queue holds only the part the store keeps");

        await ExecuteAsync(db, "ALTER TABLE audit_event_away RENAME TO audit_event");
        await WorkerHarness.WaitUntilAsync(async () => (await audit.QueryAsync(null, 10, CancellationToken.None)).Count == 1, "the entry is stored", 30);
        Assert.That((await audit.QueryAsync(null, 10, CancellationToken.None)).Single().Resource, Has.Length.EqualTo(1024));
        await audit.StopAsync(CancellationToken.None);

        // Not inlined, so that no local of the test keeps the large text alive.
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
        static WeakReference RecordLarge(AuditTrail audit, DateTimeOffset now)
        {
            string fullUrl = "urn:uuid:" + new string('x', 2 * 1024 * 1024);
            audit.Record(new AuditEntry(now, "fhir-rest", "test", "LARGE-1", fullUrl, null, "k", "Elevated", []));
            return new WeakReference(fullUrl);
        }
    }

    private static async Task ExecuteAsync(Database db, string sql)
    {
        await using var c = await db.OpenAsync(CancellationToken.None);
        await using var cmd = c.Command(sql);
        await cmd.ExecuteNonQueryAsync();
    }

    [Test]
    public async Task Entries_older_than_the_retention_period_are_deleted_and_newer_ones_kept()
    {
        var settings = await StoreUnderTest.SettingsAsync(provider);
        settings["MagCds:Audit:KeepDays"] = "30";
        var clock = new FixedClock(new DateTimeOffset(2026, 1, 1, 8, 0, 0, TimeSpan.Zero));
        using var f = new MagCdsFactory(settings, clock);
        using var client = f.CreateClient();
        var audit = f.Services.GetRequiredService<AuditTrail>();
        var retention = f.Services.GetRequiredService<Retention>();

        async Task EvaluateAsync(string requestId)
        {
            using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(TestFiles.Text("Observation-btu-medium.json"), "application/fhir+json") };
            req.Headers.Add("X-Request-Id", requestId);
            using var r = await client.SendAsync(req);
            Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        async Task<List<string>> StoredAsync() =>
            (await audit.QueryAsync(null, 100, CancellationToken.None)).Select(e => e.CorrelationId).ToList();

        // Retention (at start-up, then hourly) deletes what is older than 30 days by the service's clock.
        await EvaluateAsync("OLD-1");
        await WorkerHarness.WaitUntilAsync(async () => (await StoredAsync()).SequenceEqual(["OLD-1"]), "the first entry is stored", 10);
        clock.Now = clock.Now.AddDays(20);
        await EvaluateAsync("MIDDLE-1");
        await WorkerHarness.WaitUntilAsync(async () => (await StoredAsync()).Count == 2, "the second entry is stored", 10);
        await retention.ApplyAsync(CancellationToken.None);
        Assert.That((await StoredAsync()).Order(), Is.EqualTo(new[] { "MIDDLE-1", "OLD-1" }), "OLD-1 (20 days old) is kept");
        clock.Now = clock.Now.AddDays(15); // OLD-1 is now 35 days old, MIDDLE-1 15
        await EvaluateAsync("NEW-1");
        await WorkerHarness.WaitUntilAsync(async () => (await StoredAsync()).Count == 3, "the third entry is stored", 10);
        await retention.ApplyAsync(CancellationToken.None);
        Assert.That((await StoredAsync()).Order(), Is.EqualTo(new[] { "MIDDLE-1", "NEW-1" }), "OLD-1 is deleted and the others kept");
        Assert.That(f.Logs.Lines.Count(l => l.Contains("Retention: audit entries deleted: 1 (older than 30 days)", StringComparison.Ordinal)), Is.EqualTo(1));
    }

    [Test]
    public async Task Entries_gathered_for_a_batch_are_written_when_the_service_stops()
    {
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(provider));
        var now = new DateTimeOffset(2026, 11, 26, 8, 0, 0, TimeSpan.Zero);
        // A window far longer than the test: the entry can only be stored by the writing that stopping does.
        var window = TimeSpan.FromMinutes(1);
        var clock = new WindowClock(now, window);
        var audit = new AuditTrail(db, clock, Options.Create(new AuditOptions { BatchWindowMs = (int)window.TotalMilliseconds }), NullLogger<AuditTrail>.Instance);
        await audit.StartAsync(CancellationToken.None);
        audit.Record(new AuditEntry(now, "fhir-rest", "test", "STOP-1", "Observation/a", "1", "k1", "Elevated", ["ra-1"]));

        await clock.WindowStarted.WaitAsync(TimeSpan.FromSeconds(10)); // the writer has the entry and is gathering
        Assert.That(await audit.QueryAsync(null, 10, CancellationToken.None), Is.Empty, "nothing is written while the window is open");
        await audit.StopAsync(CancellationToken.None);

        Assert.That((await audit.QueryAsync(null, 10, CancellationToken.None)).Select(e => e.CorrelationId).ToList(), Is.EqualTo(new[] { "STOP-1" }));
    }

    /// <summary>A fixed clock that says when a timer as long as the batch window is started (real timers otherwise).</summary>
    private sealed class WindowClock(DateTimeOffset now, TimeSpan window) : TimeProvider
    {
        private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task WindowStarted => _started.Task;

        public override DateTimeOffset GetUtcNow() => now;

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = base.CreateTimer(callback, state, dueTime, period);
            if (dueTime == window) _started.TrySetResult();
            return timer;
        }
    }
}
