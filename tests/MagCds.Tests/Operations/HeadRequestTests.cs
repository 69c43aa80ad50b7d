using System.Net;
using MagCds.Tests.Support;

namespace MagCds.Tests.Operations;

/// <summary>
/// Every read route answers HEAD as it answers GET, without the body (RFC 9110 §9.1; load balancers and uptime
/// monitors probe with HEAD). On a real Kestrel port, because the in-memory test server would send the body.
/// </summary>
[NonParallelizable]
public sealed class HeadRequestTests
{
    private static MagCdsFactory _factory = null!;
    private static HttpClient _client = null!;

    [OneTimeSetUp]
    public static void Start()
    {
        int port = WorkerHarness.FreePort();
        _factory = new MagCdsFactory();
        _factory.UseKestrel(port);
        _factory.StartServer();
        _client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
    }

    [OneTimeTearDown]
    public static void Stop()
    {
        _client.Dispose();
        _factory.Dispose();
    }

    [TestCase("/fhir/metadata")]
    [TestCase("/fhir/metadata?_format=xml")]
    [TestCase("/fhir/StructureDefinition/magcds-risk-assessment")]
    [TestCase("/cds-services")]
    [TestCase("/knowledge")]
    [TestCase("/console/")]
    [TestCase("/health/live")]
    public async Task HEAD_answers_as_GET_does_without_a_body(string path)
    {
        using var get = await _client.GetAsync(path);
        Assert.That(get.StatusCode, Is.EqualTo(HttpStatusCode.OK), path);
        Assert.That(await get.Content.ReadAsByteArrayAsync(), Is.Not.Empty);

        using var head = await _client.SendAsync(new HttpRequestMessage(HttpMethod.Head, path));
        Assert.That(head.StatusCode, Is.EqualTo(HttpStatusCode.OK), path);
        Assert.That(head.Content.Headers.ContentType?.MediaType, Is.EqualTo(get.Content.Headers.ContentType?.MediaType));
        Assert.That(await head.Content.ReadAsByteArrayAsync(), Is.Empty);
    }

    [Test]
    public async Task HEAD_on_a_route_that_takes_only_POST_gets_405_naming_POST()
    {
        using var head = await _client.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/fhir/Observation/$mag-evaluate"));
        Assert.That(head.StatusCode, Is.EqualTo(HttpStatusCode.MethodNotAllowed));
        Assert.That(head.Content.Headers.Allow, Is.EquivalentTo(new[] { "POST" }));
    }
}
