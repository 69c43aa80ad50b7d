using System.Net;
using System.Text;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Service.Worker;
using MagCds.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace MagCds.Tests.Worker;

/// <summary>
/// What the worker takes as written: only an answer that confirms every entry of its transaction with a 2xx status
/// (R4: one response entry per request entry, in order). The answers here are ones no server in the tests gives (the
/// FHIR test server answers transactions conformantly; its batch-like quirk is covered end to end in WorkerTests), so
/// a handler stands in for the server: it answers the reads with one raised result and nothing earlier, and the
/// transaction with the answer under test.
/// </summary>
public sealed class WriteBackAnswerTests
{
    private const string Server = "https://fhir.example/R4";

    private sealed class OneResultServer(Func<Bundle, Bundle?> answerTransaction) : HttpMessageHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            string path = request.RequestUri!.AbsolutePath;
            Resource? body = request.Method == HttpMethod.Post
                ? answerTransaction(new FhirJsonDeserializer().Deserialize<Bundle>(await request.Content!.ReadAsStringAsync(cancellationToken)))
                : path.EndsWith("/Observation/obs-1", StringComparison.Ordinal) ? Result()
                : new Bundle { Type = Bundle.BundleType.Searchset }; // every search: nothing earlier
            var r = new HttpResponseMessage(HttpStatusCode.OK);
            if (body is not null) r.Content = new StringContent(body.ToJson(), Encoding.UTF8, "application/fhir+json");
            return r;
        }
    }

    private static Observation Result()
    {
        var obs = WorkerHarness.Result("p1", 23.5m, "ACC-1");
        obs.Id = "obs-1";
        obs.Meta = new Meta { VersionId = "1" };
        return obs;
    }

    private sealed class Factory(HttpMessageHandler handler) : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => new(handler, disposeHandler: false);
    }

    private static Task<Assessment> AssessAsync(Func<Bundle, Bundle?> answer)
    {
        var options = Options.Create(new WorkerOptions { FhirServerUrl = Server });
        var writer = new AssessmentWriter(CoreUnderTest.Evaluator, new WorkerFhirClient(new Factory(new OneResultServer(answer)), options), options, NullLogger<AssessmentWriter>.Instance);
        return writer.AssessAsync("obs-1", CancellationToken.None);
    }

    private static Bundle Answer(Bundle tx, params string?[] statuses) => new()
    {
        Type = Bundle.BundleType.TransactionResponse,
        Entry = [.. statuses.Select(s => new Bundle.EntryComponent { Response = s is null ? null : new Bundle.ResponseComponent { Status = s } })],
    };

    [Test]
    public async Task Every_entry_confirmed_is_written()
    {
        var done = await AssessAsync(tx => Answer(tx, [.. tx.Entry.Select(_ => "201 Created")]));
        Assert.That(done.Outcome, Is.EqualTo("evaluated-elevated"));
        Assert.That(done.Outputs, Has.Count.EqualTo(2), "the RiskAssessment and the DetectedIssue");
    }

    [TestCase("fewer entries", "unconfirmed-write", true)]
    [TestCase("an entry without a status", "unconfirmed-write", true)]
    [TestCase("no body", "unconfirmed-write", true)]
    [TestCase("a failed entry, with a space", "http-412", true)]
    [TestCase("a refused entry", "http-422", false)]
    [TestCase("a status that is no number", "unreadable-response", false)]
    public async Task An_answer_that_does_not_confirm_every_entry_is_not_taken_as_written(string answer, string reason, bool retried)
    {
        Func<Bundle, Bundle?> respond = answer switch
        {
            "fewer entries" => tx => Answer(tx, "201 Created"),
            "an entry without a status" => tx => Answer(tx, "201 Created", null),
            "no body" => _ => null,
            "a failed entry, with a space" => tx => Answer(tx, "201 Created", " 412 Precondition Failed"),
            "a refused entry" => tx => Answer(tx, "201 Created", "422 Unprocessable Entity"),
            _ => tx => Answer(tx, "201 Created", "Created"),
        };
        var e = await Assert.ThrowsAsync<WorkFailure>(() => AssessAsync(respond));
        Assert.That((e.Reason, e.Retryable), Is.EqualTo((reason, retried)));
    }
}
