using System.Net;
using MagCds.Service.Worker;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace MagCds.Tests.Worker;

/// <summary>
/// A 429 or 503 with Retry-After from the watched server holds back every later call to it until then, calls of
/// rows already in progress included (the end-to-end case is in WorkerTests); other hosts are not held back.
/// </summary>
public sealed class ServerPauseTests
{
    private const string Server = "https://fhir.example/R4";

    /// <summary>Answers each request with the next status, a Retry-After and a Date; counts what reached it.</summary>
    private sealed class Answers(FakeTimeProvider clock, params (HttpStatusCode Status, string? RetryAfter)[] answers) : HttpMessageHandler
    {
        public int Received { get; private set; }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var (status, retryAfter) = answers[Math.Min(Received++, answers.Length - 1)];
            var r = new HttpResponseMessage(status);
            r.Headers.Date = clock.GetUtcNow();
            if (retryAfter is not null) r.Headers.TryAddWithoutValidation("Retry-After", retryAfter);
            return Task.FromResult(r);
        }
    }

    private static (HttpClient Client, ServerClock Clock) Pipeline(FakeTimeProvider time, Answers answers, double maxDelaySeconds = 300)
    {
        var options = Options.Create(new WorkerOptions { FhirServerUrl = Server, RetryMaxDelaySeconds = maxDelaySeconds });
        var clock = new ServerClock(time);
        // As the service builds it: the gate outside, the handler that reads the answers inside.
        var gate = new ServerPauseGate(clock, options) { InnerHandler = new ServerClockHandler(clock, options) { InnerHandler = answers } };
        return (new HttpClient(gate), clock);
    }

    [TestCase(HttpStatusCode.TooManyRequests, "8")]
    [TestCase(HttpStatusCode.ServiceUnavailable, "Mon, 01 Jun 2026 08:00:08 GMT")]
    public async Task A_pause_asked_for_holds_back_calls_to_the_server_until_it_ends(HttpStatusCode status, string retryAfter)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 6, 1, 8, 0, 0, TimeSpan.Zero));
        var answers = new Answers(time, (status, retryAfter), (HttpStatusCode.OK, null));
        var (client, clock) = Pipeline(time, answers);

        using (var refused = await client.GetAsync(Server + "/Observation/1")) Assert.That(refused.StatusCode, Is.EqualTo(status));
        Assert.That(clock.PausedUntil, Is.EqualTo(time.GetUtcNow().AddSeconds(8)));

        time.Advance(TimeSpan.FromSeconds(7.9));
        await Assert.ThrowsAsync<ServerPausedException>(() => client.GetAsync(Server + "/Observation/2"));
        // Through the FHIR client as the worker makes it: the exception arrives as it is, so the worker classifies
        // the failure as 'paused' (an outage), not as 'unreachable'.
        using var fhir = new Hl7.Fhir.Rest.FhirClient(Server, client, new Hl7.Fhir.Rest.FhirClientSettings { VerifyFhirVersion = false });
        await Assert.ThrowsAsync<ServerPausedException>(() => fhir.ReadAsync<Hl7.Fhir.Model.Observation>("Observation/2"));
        Assert.That(answers.Received, Is.EqualTo(1), "the held-back calls were not sent");

        time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.That(clock.PausedUntil, Is.Null);
        using (var after = await client.GetAsync(Server + "/Observation/2")) Assert.That(after.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(answers.Received, Is.EqualTo(2));
    }

    [Test]
    public async Task A_pause_is_at_most_the_longest_configured_wait_and_other_hosts_are_not_held_back()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 6, 1, 8, 0, 0, TimeSpan.Zero));
        var answers = new Answers(time, (HttpStatusCode.TooManyRequests, "86400"), (HttpStatusCode.OK, null));
        var (client, clock) = Pipeline(time, answers, maxDelaySeconds: 60);

        using (await client.GetAsync(Server + "/Observation/1")) { }
        Assert.That(clock.PausedUntil, Is.EqualTo(time.GetUtcNow().AddSeconds(60)), "a day asked for, RetryMaxDelaySeconds honoured");
        using (var other = await client.GetAsync("https://auth.example/token")) Assert.That(other.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(answers.Received, Is.EqualTo(2));
    }

    [TestCase(HttpStatusCode.TooManyRequests, "0")]
    [TestCase(HttpStatusCode.TooManyRequests, "Mon, 01 Jun 2026 07:59:00 GMT")] // a time already past
    [TestCase(HttpStatusCode.BadGateway, "30")] // Retry-After means a pause only with 429 and 503
    public async Task No_pause_without_a_wait_still_to_come(HttpStatusCode status, string retryAfter)
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 6, 1, 8, 0, 0, TimeSpan.Zero));
        var (client, clock) = Pipeline(time, new Answers(time, (status, retryAfter)));
        using (await client.GetAsync(Server + "/Observation/1")) { }
        Assert.That(clock.PausedUntil, Is.Null);
    }
}
