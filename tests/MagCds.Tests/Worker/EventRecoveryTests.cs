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

    [Test]
    public async Task A_gap_met_by_a_pause_the_server_asked_for_is_kept_for_later_not_turned_into_a_poll()
    {
        const string server = "https://fhir.example/R4";
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(StoreProvider.Sqlite));
        var queue = new WorkQueue(db, TimeProvider.System);
        await queue.EnqueueAsync(server, [], "subscription", new Dictionary<string, string> { ["events-gap:Subscription/s1"] = "3-5" }, CancellationToken.None);
        var recovery = new EventRecovery(queue, new WorkerFhirClient(new Paused(), Options.Create(new WorkerOptions { FhirServerUrl = server })), new WorkerSignal());

        // A server without $events (or one that fails it) gets a catch-up poll instead; a pause says nothing about $events.
        await Assert.ThrowsAsync<ServerPausedException>(() => recovery.RecoverAsync(CancellationToken.None));
        Assert.That(await queue.StatesAsync(server, "events-gap:", CancellationToken.None), Is.EquivalentTo(new Dictionary<string, string> { ["events-gap:Subscription/s1"] = "3-5" }));
        Assert.That(await queue.GetStateAsync(server, Poller.RequestKey, CancellationToken.None), Is.Null, "no poll asked for in its place");
    }
}
