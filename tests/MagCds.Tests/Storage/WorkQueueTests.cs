using MagCds.Service.Storage;
using MagCds.Tests.Support;

namespace MagCds.Tests.Storage;

/// <summary>The worker's durable queue, on both databases: the same tests, the same expectations.</summary>
[TestFixture(StoreProvider.Sqlite)]
[TestFixture(StoreProvider.Postgres)]
public sealed class WorkQueueTests(StoreProvider provider)
{
    private const string Server = "http://fhir.example/r4";
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(30);
    private FixedClock _clock = null!;
    private StoreOptions _options = null!;
    private Database _db = null!;
    private WorkQueue _queue = null!;

    [SetUp]
    public async Task FreshStore()
    {
        _clock = new FixedClock(new DateTimeOffset(2026, 11, 26, 8, 0, 0, TimeSpan.Zero));
        _options = await StoreUnderTest.OptionsAsync(provider);
        _db = StoreUnderTest.Open(_options);
        _queue = new WorkQueue(_db, _clock);
    }

    [TearDown]
    public async Task Close() => await _db.DisposeAsync();

    [Test]
    public async Task On_SQLite_the_queue_takes_its_turn_with_the_other_writers_of_the_process()
    {
        // A CDS Hooks call's jti insert or an audit batch holds the turn: a queue write waits for it instead of
        // colliding in SQLite (which makes the loser sleep and retry). PostgreSQL writers do not wait for each other.
        var other = await _db.OpenWriterAsync(CancellationToken.None);
        var enqueue = _queue.EnqueueAsync(Server, [("Observation", "a")], "poll", CancellationToken.None);
        var done = await Task.WhenAny(enqueue, Task.Delay(provider == StoreProvider.Sqlite ? 500 : 10_000));
        if (provider == StoreProvider.Sqlite) Assert.That(done, Is.Not.SameAs(enqueue), "the queue write waits for the turn");
        else Assert.That(done, Is.SameAs(enqueue), "no gate on PostgreSQL");
        await other.DisposeAsync();
        await enqueue;
        Assert.That((await _queue.StatsAsync(CancellationToken.None)).Pending, Is.EqualTo(1));
    }

    [Test]
    public async Task An_event_for_a_resource_already_waiting_does_not_add_a_second_row()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a"), ("Observation", "a"), ("Observation", "b")], "poll", CancellationToken.None);
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "subscription", CancellationToken.None);

        var leased = await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None);
        Assert.That(leased.Select(i => i.ResourceId), Is.EqualTo(new[] { "a", "b" }));
        Assert.That(leased[0].Generation, Is.EqualTo(1), "the second event for 'a' is remembered as a new generation");
    }

    [Test]
    public async Task A_claim_is_held_by_one_owner_until_released_or_expired()
    {
        var hold = TimeSpan.FromSeconds(60);
        Assert.That(await _queue.TryClaimAsync(Server, "subscription-setup", "r1", hold, CancellationToken.None), Is.True, "free: claimed");
        Assert.That(await _queue.TryClaimAsync(Server, "subscription-setup", "r2", hold, CancellationToken.None), Is.False, "held by r1");
        await _queue.ReleaseClaimAsync(Server, "subscription-setup", "r2", CancellationToken.None);
        Assert.That(await _queue.TryClaimAsync(Server, "subscription-setup", "r2", hold, CancellationToken.None), Is.False, "only the holder releases it");

        await _queue.ReleaseClaimAsync(Server, "subscription-setup", "r1", CancellationToken.None);
        Assert.That(await _queue.TryClaimAsync(Server, "subscription-setup", "r2", hold, CancellationToken.None), Is.True, "released: claimed by the next");

        _clock.Now += TimeSpan.FromSeconds(59);
        Assert.That(await _queue.TryClaimAsync(Server, "subscription-setup", "r3", hold, CancellationToken.None), Is.False, "not yet expired");
        _clock.Now += TimeSpan.FromSeconds(2);
        Assert.That(await _queue.TryClaimAsync(Server, "subscription-setup", "r3", hold, CancellationToken.None), Is.True, "expired: a crashed holder does not block for ever");
        Assert.That(await _queue.TryClaimAsync("http://other.example/fhir", "subscription-setup", "r1", hold, CancellationToken.None), Is.True, "per server");
    }

    [Test]
    public async Task A_state_value_is_cleared_only_if_it_still_holds_what_was_read()
    {
        // Event recovery read the gap "5-6"; a notification widened it to "5-9" before recovery finished.
        await _queue.EnqueueAsync(Server, [], "subscription", new Dictionary<string, string> { ["events-gap:Subscription/s"] = "5-9" }, CancellationToken.None);
        await _queue.EnqueueAndClearStateAsync(Server, [("Observation", "a")], "events", "events-gap:Subscription/s", "5-6", CancellationToken.None);
        Assert.That(await _queue.GetStateAsync(Server, "events-gap:Subscription/s", CancellationToken.None), Is.EqualTo("5-9"), "the widened gap stays");
        Assert.That(await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None), Has.Count.EqualTo(1), "the recovered resource is queued");

        await _queue.EnqueueAndClearStateAsync(Server, [], "events", "events-gap:Subscription/s", "5-9", CancellationToken.None);
        Assert.That(await _queue.GetStateAsync(Server, "events-gap:Subscription/s", CancellationToken.None), Is.EqualTo(""));
    }

    [Test]
    public async Task Only_failed_attempts_count_towards_the_dead_letter_limit()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "poll", CancellationToken.None);
        var first = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        await _queue.RetryAsync(first, "w1", "shutdown", TimeSpan.Zero, CancellationToken.None, failed: false); // handed back at a stop
        var second = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        Assert.That(second.Attempts, Is.EqualTo(1), "a row handed back untried is not an attempt");

        await _queue.EnqueueAsync(Server, [("Observation", "a")], "subscription", CancellationToken.None); // amended meanwhile
        Assert.That(await _queue.CompleteAsync(second, "w1", "evaluated", CancellationToken.None), Is.True);
        var rerun = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        Assert.That(rerun.Attempts, Is.EqualTo(1), "the re-run for the newer event starts afresh");

        await _queue.RetryAsync(rerun, "w1", "http-503", TimeSpan.Zero, CancellationToken.None);
        Assert.That((await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single().Attempts, Is.EqualTo(2), "a failure counts");
    }

    [Test]
    public async Task A_renewed_lease_keeps_the_row_and_a_lost_one_cannot_be_renewed()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "poll", CancellationToken.None);
        var item = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        _clock.Now += Lease - TimeSpan.FromSeconds(5);
        Assert.That(await _queue.RenewAsync(item, "w1", Lease, CancellationToken.None), Is.True);
        _clock.Now += TimeSpan.FromSeconds(10); // past the first lease, within the renewed one
        Assert.That(await _queue.LeaseAsync("w2", 10, Lease, CancellationToken.None), Is.Empty, "the renewed row stays with w1");

        _clock.Now += Lease + TimeSpan.FromSeconds(1); // w1 stalled: the row comes back and w2 takes it
        Assert.That(await _queue.LeaseAsync("w2", 10, Lease, CancellationToken.None), Has.Count.EqualTo(1));
        Assert.That(await _queue.RenewAsync(item, "w1", Lease, CancellationToken.None), Is.False, "w1 learns it lost the row");
    }

    [Test]
    public async Task A_leased_row_is_not_leased_again_until_its_lease_runs_out()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "poll", CancellationToken.None);
        Assert.That(await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None), Has.Count.EqualTo(1));
        Assert.That(await _queue.LeaseAsync("w2", 10, Lease, CancellationToken.None), Is.Empty);

        _clock.Now += Lease + TimeSpan.FromSeconds(1); // w1 was killed: its row comes back
        var again = await _queue.LeaseAsync("w2", 10, Lease, CancellationToken.None);
        Assert.That(again.Single().Attempts, Is.EqualTo(2));
        Assert.That(await _queue.CompleteAsync(again[0], "w1", "evaluated", CancellationToken.None), Is.False, "w1 lost its lease");
        Assert.That(await _queue.CompleteAsync(again[0], "w2", "evaluated", CancellationToken.None), Is.True);
        Assert.That((await _queue.StatsAsync(CancellationToken.None)).Done, Is.EqualTo(1));
    }

    /// <summary>A row leased by w1, and an event for the same resource (an amendment) that arrives while w1 holds it.</summary>
    private async Task<WorkItem> LeasedThenNotifiedAgainAsync()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "poll", CancellationToken.None);
        var item = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "subscription", CancellationToken.None);
        return item;
    }

    [Test]
    public async Task An_event_that_arrives_while_a_row_is_processed_keeps_it_pending()
    {
        var item = await LeasedThenNotifiedAgainAsync();
        Assert.That(await _queue.CompleteAsync(item, "w1", "evaluated", CancellationToken.None), Is.True);
        var stats = await _queue.StatsAsync(CancellationToken.None);
        Assert.That((stats.Pending, stats.Done), Is.EqualTo((1L, 0L)), "read again, not marked done");
        var next = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        Assert.That(await _queue.CompleteAsync(next, "w1", "evaluated", CancellationToken.None), Is.True);
        Assert.That((await _queue.StatsAsync(CancellationToken.None)).Done, Is.EqualTo(1));
    }

    [Test]
    public async Task An_event_that_arrives_while_a_row_fails_for_good_is_not_buried_with_it()
    {
        var item = await LeasedThenNotifiedAgainAsync();
        Assert.That(await _queue.DeadLetterAsync(item, "w1", "http-422", CancellationToken.None), Is.False, "not a dead letter");
        var stats = await _queue.StatsAsync(CancellationToken.None);
        Assert.That((stats.Pending, stats.Dead), Is.EqualTo((1L, 0L)), "the newer event keeps the row pending");
        var next = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        Assert.That(next.Attempts, Is.EqualTo(1), "counted afresh for the newer event");

        Assert.That(await _queue.DeadLetterAsync(next, "w1", "http-422", CancellationToken.None), Is.True);
        Assert.That((await _queue.StatsAsync(CancellationToken.None)).Dead, Is.EqualTo(1), "with nothing newer, it is a dead letter");
    }

    [Test]
    public async Task A_new_event_does_not_wait_out_an_earlier_failures_backoff()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a"), ("Observation", "b")], "poll", CancellationToken.None);
        var items = await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None);
        await _queue.RetryAsync(items[0], "w1", "http-503", TimeSpan.FromMinutes(5), CancellationToken.None);
        await _queue.EnqueueAsync(Server, [("Observation", "b")], "subscription", CancellationToken.None); // while b was tried
        await _queue.RetryAsync(items[1], "w1", "http-503", TimeSpan.FromMinutes(5), CancellationToken.None);
        Assert.That((await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Select(i => i.ResourceId), Is.EqualTo(new[] { "b" }),
            "b had an event during its attempt: due now; a waits");

        await _queue.EnqueueAsync(Server, [("Observation", "a")], "subscription", CancellationToken.None); // while a waits
        Assert.That((await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Select(i => i.ResourceId), Is.EqualTo(new[] { "a" }),
            "a new event makes a waiting row due now");
    }

    [Test]
    public async Task Deployments_watching_different_servers_share_a_store_without_taking_each_others_rows()
    {
        const string other = "http://other.example/fhir";
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "poll", CancellationToken.None);
        await _queue.EnqueueAsync(other, [("Observation", "b")], "poll", CancellationToken.None);

        var mine = await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None, Server);
        Assert.That(mine.Select(i => (i.Server, i.ResourceId)), Is.EqualTo(new[] { (Server, "a") }));
        Assert.That((await _queue.StatsAsync(CancellationToken.None, other)).Pending, Is.EqualTo(1), "the other server's row is still waiting");
        Assert.That(await _queue.DeadLetterAsync(mine[0], "w1", "http-422", CancellationToken.None), Is.True);
        Assert.That(await _queue.DeadLettersAsync(10, CancellationToken.None, other), Is.Empty);
        Assert.That(await _queue.DeadLettersAsync(10, CancellationToken.None, Server), Has.Count.EqualTo(1));
    }

    [Test]
    public async Task Dead_letters_are_replayed_all_at_once_or_by_reason()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a"), ("Observation", "b"), ("Observation", "c")], "poll", CancellationToken.None);
        var items = await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None);
        await _queue.DeadLetterAsync(items[0], "w1", "http-401", CancellationToken.None);
        await _queue.DeadLetterAsync(items[1], "w1", "http-401", CancellationToken.None);
        await _queue.DeadLetterAsync(items[2], "w1", "http-422", CancellationToken.None);

        Assert.That(await _queue.ReplayAllAsync(Server, "http-401", CancellationToken.None), Is.EqualTo(2));
        Assert.That((await _queue.DeadLettersAsync(10, CancellationToken.None)).Select(d => d.Reason), Is.EqualTo(new[] { "http-422" }));
        Assert.That(await _queue.ReplayAllAsync(Server, null, CancellationToken.None), Is.EqualTo(1));
        Assert.That((await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Select(i => i.ResourceId).Order(), Is.EqualTo(new[] { "a", "b", "c" }));
    }

    [Test]
    public async Task Leases_that_run_out_are_counted_apart_from_failed_attempts()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "poll", CancellationToken.None);
        var item = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        await _queue.RetryAsync(item, "w1", "http-503", TimeSpan.Zero, CancellationToken.None); // a failure handed back
        item = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        Assert.That((item.Attempts, item.ExpiredLeases), Is.EqualTo((2, 0)));

        _clock.Now += Lease + TimeSpan.FromSeconds(1); // w1 died holding it
        item = (await _queue.LeaseAsync("w2", 10, Lease, CancellationToken.None)).Single();
        Assert.That((item.Attempts, item.ExpiredLeases), Is.EqualTo((3, 1)));
    }

    [Test]
    public async Task A_store_made_before_a_column_was_added_gets_it_when_opened()
    {
        await using (var c = await _db.OpenAsync(CancellationToken.None))
        await using (var drop = c.Command("ALTER TABLE work_item DROP COLUMN expired_leases"))
            await drop.ExecuteNonQueryAsync(CancellationToken.None);
        await _db.DisposeAsync();

        _db = StoreUnderTest.Open(_options);
        _queue = new WorkQueue(_db, _clock);
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "poll", CancellationToken.None);
        Assert.That((await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single().ExpiredLeases, Is.Zero);
    }

    /// <summary>
    /// A dead letter whose resource a later event brought in and the worker processed is settled: it was still listed
    /// and counted (a black-box probe), sending the operator to replay what was done. Another resource's stays.
    /// </summary>
    [Test]
    public async Task A_dead_letter_is_settled_when_its_resource_is_processed_later()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a"), ("Observation", "b")], "poll", CancellationToken.None);
        foreach (var dying in await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None))
            Assert.That(await _queue.DeadLetterAsync(dying, "w1", "http-422", CancellationToken.None), Is.True);

        await _queue.EnqueueAsync(Server, [("Observation", "a")], "subscription", CancellationToken.None);
        var item = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        Assert.That(await _queue.CompleteAsync(item, "w1", "evaluated-elevated", CancellationToken.None), Is.True);

        Assert.That((await _queue.DeadLettersAsync(10, CancellationToken.None)).Select(d => d.ResourceId), Is.EqualTo(new[] { "b" }));
        Assert.That((await _queue.StatsAsync(CancellationToken.None)).Dead, Is.EqualTo(1L));
    }

    [Test]
    public async Task Retry_waits_for_its_delay_and_dead_letters_can_be_replayed()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "poll", CancellationToken.None);
        var item = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        await _queue.RetryAsync(item, "w1", "http-503", TimeSpan.FromSeconds(10), CancellationToken.None);
        Assert.That(await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None), Is.Empty, "not due yet");
        _clock.Now += TimeSpan.FromSeconds(11);
        item = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();

        Assert.That(await _queue.DeadLetterAsync(item, "w1", "http-400", CancellationToken.None), Is.True);
        var dead = (await _queue.DeadLettersAsync(10, CancellationToken.None)).Single();
        Assert.That((dead.ResourceId, dead.Reason, dead.Attempts), Is.EqualTo(("a", "http-400", 2)));

        Assert.That(await _queue.ReplayAsync(dead.Id, "http://other.example/r4", CancellationToken.None), Is.False, "another server's deployment cannot replay it");
        Assert.That(await _queue.ReplayAsync(dead.Id, Server, CancellationToken.None), Is.True);
        Assert.That(await _queue.ReplayAsync(dead.Id, Server, CancellationToken.None), Is.False, "a dead letter is replayed once");
        var stats = await _queue.StatsAsync(CancellationToken.None);
        Assert.That((stats.Pending, stats.Dead), Is.EqualTo((1L, 0L)));
        Assert.That((await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single().Attempts, Is.EqualTo(1));
    }

    [Test]
    public async Task A_version_already_assessed_is_not_queued_again_but_a_new_version_or_an_unversioned_event_is()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "subscription", CancellationToken.None);
        var item = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        Assert.That(await _queue.CompleteAsync(item, "w1", "evaluated", CancellationToken.None, assessedVersion: "v1"), Is.True);

        Assert.That(await _queue.EnqueueVersionsAsync(Server, [("Observation", "a", "v1")], "poll", CancellationToken.None), Is.Zero, "v1 was assessed");
        Assert.That(await _queue.EnqueueVersionsAsync(Server, [("Observation", "a", "v2")], "poll", CancellationToken.None), Is.EqualTo(1), "v2 is new");
        var v2 = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        Assert.That(await _queue.CompleteAsync(v2, "w1", "evaluated", CancellationToken.None, assessedVersion: "v2"), Is.True);
        Assert.That(await _queue.EnqueueVersionsAsync(Server, [("Observation", "a", null)], "subscription", CancellationToken.None), Is.EqualTo(1),
            "an event that names no version is always queued");
    }

    [Test]
    public async Task A_reassessment_queues_the_results_assessed_with_other_knowledge_once_each()
    {
        const string Other = "http://other.example/fhir";
        await _queue.EnqueueAsync(Server, [("Observation", "old"), ("Observation", "unknown"), ("Observation", "current"), ("Observation", "waiting")], "poll", CancellationToken.None);
        await _queue.EnqueueAsync(Other, [("Observation", "theirs")], "poll", CancellationToken.None);
        foreach (var item in await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None))
        {
            string? knowledge = item.ResourceId switch { "unknown" => null, "current" => "2026.2", _ => "2026.1" };
            Assert.That(await _queue.CompleteAsync(item, "w1", "evaluated", CancellationToken.None, assessedVersion: "1", knowledgeVersion: knowledge), Is.True);
        }
        // A new event for one of them is waiting already: marked to be read again, not queued twice.
        await _queue.EnqueueAsync(Server, [("Observation", "waiting")], "subscription", CancellationToken.None);

        Assert.That(await _queue.AssessedWithOtherKnowledgeAsync(Server, "2026.2", CancellationToken.None), Is.EqualTo(3), "old, unknown and waiting");
        Assert.That(await _queue.EnqueueReassessmentAsync(Server, "2026.2", all: false, TimeSpan.Zero, CancellationToken.None), Is.EqualTo(2),
            "old and unknown; waiting is waiting already");
        var queued = await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None);
        Assert.That(queued.Select(i => i.ResourceId).Order(), Is.EqualTo(new[] { "old", "unknown", "waiting" }), "not the current one, nor another server's");
        Assert.That(queued.Single(i => i.ResourceId == "waiting").Generation, Is.Zero, "the waiting row is left as it is (it reads the result anyway)");
        foreach (var item in queued)
            await _queue.CompleteAsync(item, "w1", "evaluated", CancellationToken.None, assessedVersion: "1", knowledgeVersion: "2026.2");

        Assert.That(await _queue.AssessedWithOtherKnowledgeAsync(Server, "2026.2", CancellationToken.None), Is.Zero);
        Assert.That(await _queue.EnqueueReassessmentAsync(Server, "2026.2", all: false, TimeSpan.Zero, CancellationToken.None), Is.Zero, "nothing left to reassess");
        Assert.That(await _queue.EnqueueReassessmentAsync(Server, "2026.2", all: true, TimeSpan.Zero, CancellationToken.None), Is.EqualTo(4), "all: every result assessed");
        Assert.That((await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None, Other)), Is.Empty, "another server's results are left alone");
    }

    [Test]
    public async Task A_reassessment_is_spread_over_time_so_new_results_go_first()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a"), ("Observation", "b"), ("Observation", "c")], "poll", CancellationToken.None);
        foreach (var item in await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None))
            await _queue.CompleteAsync(item, "w1", "evaluated", CancellationToken.None, assessedVersion: "1", knowledgeVersion: "2026.1");

        Assert.That(await _queue.EnqueueReassessmentAsync(Server, "2026.2", all: false, TimeSpan.FromSeconds(10), CancellationToken.None), Is.EqualTo(3));
        await _queue.EnqueueAsync(Server, [("Observation", "new")], "subscription", CancellationToken.None);
        var first = await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None);
        Assert.That(first.Select(i => i.ResourceId).Order(), Is.EqualTo(new[] { "a", "new" }), "one reassessment is due now, the others later; the new result at once");
        foreach (var item in first) await _queue.CompleteAsync(item, "w1", "evaluated", CancellationToken.None, assessedVersion: "1", knowledgeVersion: "2026.2");
        _clock.Now = _clock.Now.AddSeconds(5);
        var waiting = await _queue.StatsAsync(CancellationToken.None);
        Assert.That((waiting.Pending, waiting.Lag), Is.EqualTo((2L, TimeSpan.Zero)), "a reassessment not due yet is no lag");

        // Asked again, more slowly: the two still waiting are paced anew (b now, c a minute later), not queued twice.
        Assert.That(await _queue.EnqueueReassessmentAsync(Server, "2026.2", all: false, TimeSpan.FromMinutes(1), CancellationToken.None), Is.EqualTo(2));
        Assert.That((await _queue.StatsAsync(CancellationToken.None)).Pending, Is.EqualTo(2));
        var b = (await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Single();
        Assert.That((b.ResourceId, b.Generation), Is.EqualTo(("b", 0)));
        await _queue.CompleteAsync(b, "w1", "evaluated", CancellationToken.None, assessedVersion: "1", knowledgeVersion: "2026.2");
        _clock.Now = _clock.Now.AddSeconds(30);
        Assert.That(await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None), Is.Empty, "c waits for the slower pace");
        _clock.Now = _clock.Now.AddSeconds(30);
        Assert.That((await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None)).Select(i => i.ResourceId), Is.EqualTo(new[] { "c" }));
    }

    [Test]
    public async Task Purging_removes_old_finished_rows_but_keeps_dead_letters_and_pending_work()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "done"), ("Observation", "dead")], "poll", CancellationToken.None);
        var items = await _queue.LeaseAsync("w1", 10, Lease, CancellationToken.None);
        await _queue.CompleteAsync(items.Single(i => i.ResourceId == "done"), "w1", "evaluated", CancellationToken.None);
        await _queue.DeadLetterAsync(items.Single(i => i.ResourceId == "dead"), "w1", "http-400", CancellationToken.None);
        await _queue.EnqueueAsync(Server, [("Observation", "pending")], "poll", CancellationToken.None);

        Assert.That(await _queue.PurgeAsync(TimeSpan.FromDays(7), CancellationToken.None), Is.Zero, "nothing is old yet");
        _clock.Now += TimeSpan.FromDays(8);
        Assert.That(await _queue.PurgeAsync(TimeSpan.FromDays(7), CancellationToken.None), Is.EqualTo(1));
        var stats = await _queue.StatsAsync(CancellationToken.None);
        Assert.That((stats.Done, stats.Dead, stats.Pending), Is.EqualTo((0L, 1L, 1L)));
    }

    [Test]
    public async Task Lag_is_the_age_of_the_oldest_pending_row()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "poll", CancellationToken.None);
        _clock.Now += TimeSpan.FromSeconds(5);
        await _queue.EnqueueAsync(Server, [("Observation", "b")], "poll", CancellationToken.None);
        _clock.Now += TimeSpan.FromSeconds(2);
        var stats = await _queue.StatsAsync(CancellationToken.None);
        Assert.That((stats.Pending, stats.Lag), Is.EqualTo((2L, TimeSpan.FromSeconds(7))));
    }

    [Test]
    public async Task A_poll_page_and_its_cursor_are_stored_together()
    {
        await _queue.EnqueueAsync(Server, [("Observation", "a")], "poll",
            new Dictionary<string, string> { ["poll-cursor"] = "2026-11-26T08:00:00.000Z" }, CancellationToken.None);
        await _queue.EnqueueAsync(Server, [], "poll", new Dictionary<string, string> { ["poll-cursor"] = "2026-11-26T09:00:00.000Z" }, CancellationToken.None);
        Assert.That(await _queue.GetStateAsync(Server, "poll-cursor", CancellationToken.None), Is.EqualTo("2026-11-26T09:00:00.000Z"));
        Assert.That(await _queue.GetStateAsync("http://other/fhir", "poll-cursor", CancellationToken.None), Is.Null, "state is per server");
    }

    [Test]
    public async Task Concurrent_workers_never_lease_the_same_row()
    {
        await _queue.EnqueueAsync(Server, Enumerable.Range(0, 200).Select(i => ("Observation", $"o{i}")), "poll", CancellationToken.None);
        var workers = Enumerable.Range(0, 6).Select(async w =>
        {
            var mine = new List<long>();
            // Each "replica" is a queue object of its own; they share nothing but the database.
            var queue = new WorkQueue(_db, _clock);
            for (int round = 0; round < 50; round++)
            {
                var batch = await queue.LeaseAsync($"w{w}", 7, Lease, CancellationToken.None);
                if (batch.Count == 0) break;
                foreach (var item in batch)
                {
                    Assert.That(await queue.CompleteAsync(item, $"w{w}", "evaluated", CancellationToken.None), Is.True);
                    mine.Add(item.Id);
                }
            }
            return mine;
        }).ToList();
        var all = (await Task.WhenAll(workers)).SelectMany(x => x).ToList();
        Assert.That(all, Has.Count.EqualTo(200));
        Assert.That(all.Distinct().Count(), Is.EqualTo(200), "no row processed twice");
    }
}
