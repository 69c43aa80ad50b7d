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

    /// <summary>
    /// A body Kestrel itself cannot read (a chunk size that is not hexadecimal) is 400 unparseable: Kestrel's own
    /// refusal, told apart from a query parameter that did not bind (400 invalid-query) by its exception type.
    /// </summary>
    [Test]
    public async Task A_body_Kestrel_cannot_read_is_400_unparseable()
    {
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync("127.0.0.1", _client.BaseAddress!.Port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(
            "POST /fhir/Observation/$mag-evaluate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n"));
        using var reader = new StreamReader(stream);
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        string answer = await reader.ReadToEndAsync(patience.Token);
        Assert.That(answer, Does.StartWith("HTTP/1.1 400"));
        Assert.That(answer, Does.Contain("\"code\":\"unparseable\""));
    }

    [Test]
    public async Task HEAD_on_a_route_that_takes_only_POST_gets_405_naming_POST()
    {
        using var head = await _client.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/fhir/Observation/$mag-evaluate"));
        Assert.That(head.StatusCode, Is.EqualTo(HttpStatusCode.MethodNotAllowed));
        Assert.That(head.Content.Headers.Allow, Is.EquivalentTo(new[] { "POST" }));
    }
}
