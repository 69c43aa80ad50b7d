using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
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
        // One line says what happened; no stack trace from the framework's middleware.
        Assert.That(f.Logs.Lines, Has.One.Contains("before its answer started: answered 504 timeout"));
        Assert.That(f.Logs.Lines, Has.None.Contains("TimeoutExceptionHandled"));
    }

    [Test]
    public async Task An_answer_the_limit_stops_while_it_is_being_sent_is_cut_off_visibly_and_logged_in_one_line()
    {
        // The service as a process: the in-memory test host holds every answer back to check its conformance, so it
        // never streams. 1,500 results answer about 16 MB. The caller reads nothing until the 3 s limit has passed
        // (the answer starts well within it), and its small receive buffer keeps the answer from fitting into the
        // sockets, so the answer has started and cannot finish.
        int port = WorkerHarness.FreePort();
        using var service = Startup.ServiceProcessTests.Start(port, ("MagCds__RequestTimeout__Seconds", "3"));
        var logs = new System.Collections.Concurrent.ConcurrentQueue<string>();
        service.OutputDataReceived += (_, e) => { if (e.Data is not null) logs.Enqueue(e.Data); };
        service.BeginOutputReadLine();
        try
        {
            await WaitForAsync(() => logs.Any(l => l.Contains("Now listening", StringComparison.Ordinal)), "the service to listen");
            var batch = new Bundle { Type = Bundle.BundleType.Batch };
            for (int i = 0; i < 1500; i++)
            {
                var obs = WorkerHarness.Result("p" + (i / 5), 2 + i % 9, "acc-" + i);
                obs.Id = "o" + i;
                batch.Entry.Add(new Bundle.EntryComponent { Resource = obs, Request = new Bundle.RequestComponent { Method = Bundle.HTTPVerb.POST, Url = "Observation" } });
            }
            byte[] body = Encoding.UTF8.GetBytes(batch.ToJson());

            using var tcp = new TcpClient { ReceiveBufferSize = 4096 };
            await tcp.ConnectAsync("127.0.0.1", port);
            var stream = tcp.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes(
                $"POST /fhir/Observation/$mag-evaluate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/fhir+json\r\nContent-Length: {body.Length}\r\n\r\n"));
            await stream.WriteAsync(body);
            await Task.Delay(TimeSpan.FromSeconds(6));

            var received = new MemoryStream();
            using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var buffer = new byte[65536];
            try
            {
                int n;
                while ((n = await stream.ReadAsync(buffer, patience.Token)) > 0)
                {
                    received.Write(buffer, 0, n);
                    if (buffer.AsSpan(0, n).EndsWith("\r\n0\r\n\r\n"u8)) break; // a complete answer
                }
            }
            catch (IOException) { } // the connection reset by the server: what a cut-off answer looks like to some clients
            catch (OperationCanceledException) { }
            Assert.That(patience.IsCancellationRequested, Is.False, "the server ended the answer or the connection in time");
            string answer = Encoding.UTF8.GetString(received.ToArray());
            Assert.That(answer, Does.StartWith("HTTP/1.1 200"), "the answer had started");
            Assert.That(answer, Does.Not.EndWith("\r\n0\r\n\r\n"), "no last chunk: the caller can tell the answer is incomplete");

            await WaitForAsync(() => logs.Any(l => l.Contains("responded 200", StringComparison.Ordinal)), "the request's log line");
            Assert.That(logs, Has.One.Contains("while its answer was being sent: the connection was closed"));
            Assert.That(logs.Where(l => l.Contains("responded 200", StringComparison.Ordinal)), Has.All.Contains("\"@l\":\"Error\""),
                "the request line of a cut-off answer is an error");
            Assert.That(logs, Has.None.Contains("responded 500"));
            Assert.That(logs, Has.None.Contains("\"@x\""), "no stack traces");
        }
        finally
        {
            service.Kill();
            service.WaitForExit(10_000);
        }
    }

    private static async Task WaitForAsync(Func<bool> condition, string what)
    {
        for (int i = 0; i < 300 && !condition(); i++) await Task.Delay(100);
        Assert.That(condition(), Is.True, "timed out waiting for " + what);
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
