using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using MagCds.Tests.Support;

namespace MagCds.Tests.Operations;

/// <summary>
/// A request that does not finish in MagCds:RequestTimeout:Seconds is stopped and answered 504 with an
/// OperationOutcome. The slow request here is a body that stops arriving half-way, sent on a raw socket to a real
/// Kestrel port; Kestrel's own slow-body guard waits 5 s before it acts, so an answer within that came from the limit.
/// </summary>
[NonParallelizable]
public sealed class RequestTimeoutTests
{
    private static async Task<(string Answer, TimeSpan After)> StalledPostAsync(int port, string path, string contentType)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", port);
        var stream = tcp.GetStream();
        string head = $"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {contentType}\r\nContent-Length: 4000\r\n\r\n{{\"resourceType\":";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        var clock = Stopwatch.StartNew();
        var buffer = new byte[8192];
        var answer = new StringBuilder();
        using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(4));
        try
        {
            int n;
            while ((n = await stream.ReadAsync(buffer, patience.Token)) > 0)
            {
                answer.Append(Encoding.UTF8.GetString(buffer, 0, n));
                if (answer.ToString().Contains("\r\n0\r\n\r\n", StringComparison.Ordinal) || answer.ToString().Contains("}]}", StringComparison.Ordinal)) break;
            }
        }
        catch (OperationCanceledException) { } // no (complete) answer within the patience
        return (answer.ToString(), clock.Elapsed);
    }

    private static MagCdsFactory Start(int port, int seconds)
    {
        var f = new MagCdsFactory(new Dictionary<string, string?>
        {
            ["MagCds:RequestTimeout:Seconds"] = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true",
        });
        f.UseKestrel(port);
        f.StartServer();
        return f;
    }

    [TestCase("/fhir/Observation/$mag-evaluate", "application/fhir+json")]
    [TestCase("/cds-services/magcds-patient-view", "application/json")]
    public async Task A_request_whose_body_stalls_is_answered_504_with_an_OperationOutcome_at_the_limit(string path, string contentType)
    {
        int port = WorkerHarness.FreePort();
        using var f = Start(port, seconds: 1);
        var (answer, after) = await StalledPostAsync(port, path, contentType);
        Assert.That(answer, Does.StartWith("HTTP/1.1 504"));
        Assert.That(answer, Does.Contain("\"resourceType\":\"OperationOutcome\"").And.Contain("\"code\":\"timeout\""));
        Assert.That(after, Is.LessThan(TimeSpan.FromSeconds(4)), "answered by the request limit, not by Kestrel's slow-body guard");
    }

    [Test]
    public async Task With_the_limit_off_the_same_request_is_still_waiting()
    {
        // The control: without the limit nothing answers within 2 s (Kestrel's own guard has not acted yet either).
        int port = WorkerHarness.FreePort();
        using var f = Start(port, seconds: 0);
        var (answer, _) = await StalledPostAsync(port, "/fhir/Observation/$mag-evaluate", "application/fhir+json");
        Assert.That(answer, Is.Empty);
    }
}
