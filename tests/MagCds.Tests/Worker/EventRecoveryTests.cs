using MagCds.Service.Storage;
using MagCds.Service.Worker;
using MagCds.Tests.Support;
using Microsoft.Extensions.Options;

namespace MagCds.Tests.Worker;

/// <summary>
/// Whether an <c>$events</c> answer recovered a whole gap. The FHIR test server has no <c>$events</c> (so the
/// end-to-end tests take the catch-up poll path); this is the rule that decides between the two for servers that do.
/// </summary>
public class EventRecoveryTests
{
    [TestCase(new long[] { 5, 6, 7 }, 5, 7, true)]
    [TestCase(new long[] { 7, 5, 6, 6 }, 5, 7, true)]
    [TestCase(new long[] { 4, 5, 6, 7, 8 }, 5, 7, true)]
    [TestCase(new long[] { 6, 7 }, 5, 7, false)]   // the server no longer keeps event 5
    [TestCase(new long[] { 5, 7 }, 5, 7, false)]
    [TestCase(new long[] { }, 5, 5, false)]
    [TestCase(new long[] { 4, 8 }, 5, 7, false)]
    public void An_events_answer_clears_a_gap_only_when_it_holds_every_missed_number(long[] numbers, long from, long to, bool covered) =>
        Assert.That(EventRecovery.Covers(numbers, from, to), Is.EqualTo(covered));

    /// <summary>Every call fails as the pause gate fails it: not sent, because the server asked for a pause.</summary>
    private sealed class Paused : IHttpClientFactory
    {
        private sealed class Refuse : HttpMessageHandler
        {
            protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
                Task.FromException<HttpResponseMessage>(new ServerPausedException());
        }

        public HttpClient CreateClient(string name) => new(new Refuse());
    }

    /// <summary>
    /// A handshake restarts the count (a Subscription made again numbers its events from its start: the highest
    /// number of its predecessor hid every gap), and a number no server sends (negative, beyond 2^53) is not taken as
    /// the last one seen (it hid every later gap, and the next number overflowed). Found by a black-box probe.
    /// </summary>
    [Test]
    public async Task A_handshake_restarts_the_count_and_an_implausible_event_number_is_not_taken()
    {
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(StoreProvider.Sqlite));
        var queue = new WorkQueue(db, TimeProvider.System);
        var recovery = new EventRecovery(queue, new WorkerFhirClient(new Paused(), Options.Create(new WorkerOptions { FhirServerUrl = "https://fhir.example/R4" })), new WorkerSignal(), Microsoft.Extensions.Logging.Abstractions.NullLogger<EventRecovery>.Instance);
        var ct = CancellationToken.None;
        static Notification Event(long number) => new("event-notification", "Subscription/s1", null, [number], [], false);

        Assert.That(await recovery.NoteAsync(Event(5), ct), Is.Null);
        Assert.That(await recovery.NoteAsync(new Notification("handshake", "Subscription/s1", 0, [], [], false), ct), Is.Null);
        Assert.That(await recovery.NoteAsync(Event(1), ct), Is.Null, "the first event of the Subscription made again");
        Assert.That(await recovery.NoteAsync(Event(4), ct), Is.EqualTo(((long)2, (long)3)), "events 2 and 3 missed");

        Assert.That(await recovery.NoteAsync(Event(long.MaxValue), ct), Is.Null);
        Assert.That(await recovery.NoteAsync(Event(-3), ct), Is.Null);
        Assert.That(await recovery.NoteAsync(Event(7), ct), Is.EqualTo(((long)5, (long)6)), "gaps are still seen after them");
    }

    /// <summary>
    /// Notifications that arrive at once (a server delivering in parallel) are recorded one at a time: the last number
    /// seen never goes back, and every gap is kept. Before, one that read the last number before another wrote a
    /// higher one set it back (a later gap went unseen), and two gaps could overwrite each other. Found by a black-box
    /// probe. On both stores, many rounds; only PostgreSQL (several connections at once) fails reliably without the
    /// fix: this process's SQLite writers already queue behind one gate, so there the race showed only now and then.
    /// </summary>
    [TestCase(StoreProvider.Sqlite)]
    [TestCase(StoreProvider.Postgres)]
    public async Task Concurrent_notifications_neither_set_the_last_number_back_nor_lose_a_gap(StoreProvider provider)
    {
        const string server = "https://fhir.example/R4";
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(provider));
        var queue = new WorkQueue(db, TimeProvider.System);
        var recovery = new EventRecovery(queue, new WorkerFhirClient(new Paused(), Options.Create(new WorkerOptions { FhirServerUrl = server })), new WorkerSignal(), Microsoft.Extensions.Logging.Abstractions.NullLogger<EventRecovery>.Instance);
        var ct = CancellationToken.None;
        for (int round = 0; round < 15; round++)
        {
            string subscription = $"Subscription/race{round}";
            await recovery.NoteAsync(new Notification("handshake", subscription, 0, [], [], false), ct);
            // Events 10, 20, ..., 100 at once: 1-9, 11-19, ..., 91-99 were missed.
            await Task.WhenAll(Enumerable.Range(1, 10).Select(i => Task.Run(() => recovery.NoteAsync(new Notification("event-notification", subscription, null, [i * 10L], [], false), ct))));
            Assert.That(await queue.GetStateAsync(server, "events-last:" + subscription, ct), Is.EqualTo("100"), $"round {round}: the last number seen");
            Assert.That(await queue.GetStateAsync(server, "events-gap:" + subscription, ct), Is.EqualTo("1-99"), $"round {round}: the gap spans every missed number");
        }
    }

    /// <summary>
    /// Moving the state of a former server address: a value only made to be locked (empty: not set) at the new address,
    /// as a notification there makes one before the move, does not keep the old address's open gap out.
    /// </summary>
    [TestCase(StoreProvider.Sqlite)]
    [TestCase(StoreProvider.Postgres)]
    public async Task A_gap_of_the_former_address_moves_over_an_empty_value(StoreProvider provider)
    {
        const string from = "http://fhir.example/R4", to = "https://fhir.example/R4";
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(provider));
        var queue = new WorkQueue(db, TimeProvider.System);
        var ct = CancellationToken.None;
        await queue.SetStateAsync(from, "events-gap:Subscription/s1", "3-5", ct);
        await queue.SetStateAsync(from, "events-last:Subscription/s1", "9", ct);
        await queue.SetStateAsync(to, "events-gap:Subscription/s1", "", ct);
        await queue.SetStateAsync(to, "events-last:Subscription/s1", "12", ct);

        await queue.MoveServerAsync(from, to, ct);

        Assert.That(await queue.GetStateAsync(to, "events-gap:Subscription/s1", ct), Is.EqualTo("3-5"), "an empty value is not set");
        Assert.That(await queue.GetStateAsync(to, "events-last:Subscription/s1", ct), Is.EqualTo("12"), "a value set at the new address stays");
    }

    [Test]
    public async Task A_gap_met_by_a_pause_the_server_asked_for_is_kept_for_later_not_turned_into_a_poll()
    {
        const string server = "https://fhir.example/R4";
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(StoreProvider.Sqlite));
        var queue = new WorkQueue(db, TimeProvider.System);
        await queue.EnqueueAsync(server, [], "subscription", new Dictionary<string, string> { ["events-gap:Subscription/s1"] = "3-5" }, CancellationToken.None);
        var recovery = new EventRecovery(queue, new WorkerFhirClient(new Paused(), Options.Create(new WorkerOptions { FhirServerUrl = server })), new WorkerSignal(), Microsoft.Extensions.Logging.Abstractions.NullLogger<EventRecovery>.Instance);

        // A server without $events (or one that fails it) gets a catch-up poll instead; a pause says nothing about $events.
        await Assert.ThrowsAsync<ServerPausedException>(() => recovery.RecoverAsync(CancellationToken.None));
        Assert.That(await queue.StatesAsync(server, "events-gap:", CancellationToken.None), Is.EquivalentTo(new Dictionary<string, string> { ["events-gap:Subscription/s1"] = "3-5" }));
        Assert.That(await queue.GetStateAsync(server, Poller.RequestKey, CancellationToken.None), Is.Null, "no poll asked for in its place");
    }
}
