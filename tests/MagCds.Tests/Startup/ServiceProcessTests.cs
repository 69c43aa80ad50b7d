using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Hl7.Fhir.Model;
using MagCds.Tests.Support;

namespace MagCds.Tests.Startup;

/// <summary>The built service as a real process on a real Kestrel socket, as an operator starts it.</summary>
public class ServiceProcessTests
{
    private static string ServiceDll => Path.Combine(AppContext.BaseDirectory, "MagCds.Service.dll");

    internal static Process Start(int port, params (string Key, string Value)[] env)
    {
        var psi = new ProcessStartInfo("dotnet", [ServiceDll, "--urls", $"http://127.0.0.1:{port}"])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        psi.Environment["MagCds__Store__SqliteConnectionString"] = "Data Source=" + Path.Combine(Path.GetTempPath(), $"magcds-process-{Guid.NewGuid():N}.db");
        foreach (var (k, v) in env) psi.Environment[k] = v;
        return Process.Start(psi)!;
    }

    /// <summary>Posts the BTU sample as soon as the service listens (tried for 20 s); null when it never did.</summary>
    private static async Task<HttpResponseMessage?> PostSampleOnceListeningAsync(int port)
    {
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        for (int i = 0; i < 100; i++)
        {
            try { return await client.PostAsync(Http.Evaluate, Http.Raw(TestFiles.Text("Observation-btu-medium.json"), "application/fhir+json")); }
            catch (HttpRequestException) { await Task.Delay(200); }
        }
        return null;
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    [Test]
    public async Task A_broken_knowledge_file_stops_the_service_with_a_clear_message()
    {
        string path = Path.Combine(Path.GetTempPath(), $"broken-knowledge-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(path, "{ \"version\": \"x\" ");
        try
        {
            using var p = Start(FreePort(), ("MagCds__KnowledgeFile", path));
            string stderr = await p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
            Assert.That(p.ExitCode, Is.EqualTo(78));
            Assert.That(stderr, Does.StartWith("MagCds cannot start: ").And.Contain(path).And.Not.Contain("   at "));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public async Task A_malformed_local_code_setting_stops_the_service_with_a_clear_message()
    {
        using var p = Start(FreePort(), ("MagCds__AdditionalCodes__0", "MAGM-without-system"));
        string stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.That(p.ExitCode, Is.EqualTo(78));
        Assert.That(stderr, Does.Contain("'system|code'"));
    }

    [TestCase("MagCds__CanonicalBase", "https://fhir.example.org/magcds/", "MagCds:CanonicalBase must be an absolute")]
    [TestCase("MagCds__CanonicalBase", "not a url", "MagCds:CanonicalBase must be an absolute")]
    [TestCase("MagCds__Worker__FhirServerUrl", "not a url", "FhirServerUrl must be an absolute")]
    [TestCase("MagCds__Worker__Auth", "Bearer", "BearerToken is required")]
    [TestCase("MagCds__Worker__Subscription__Create", "true", "Subscription:Create needs")]
    [TestCase("MagCds__Worker__Subscription__Secret", "short-secret", "Secret must be at least 16 characters")]
    [TestCase("MagCds__Store__Provider", "Postgres", "PostgresConnectionString is required")]
    [TestCase("MagCds__Security__Jwt__Authority", "http://idp.hospital.example/", "Jwt:Authority must be an https URL")]
    [TestCase("MagCds__Worker__PollIntervalSeconds", "abc", "at 'MagCds:Worker:PollIntervalSeconds' to type 'System.Int32'")]
    [TestCase("MagCds__Worker__PollFrom", "2026-11-27 18:00 UTC+typo", "MagCds:Worker:PollFrom must be a FHIR date or instant")]
    [TestCase("MagCds__Worker__PollFrom", "12/11/2026", "MagCds:Worker:PollFrom must be a FHIR date or instant")]
    [TestCase("MagCds__Worker__PollFrom", "2999-01-01T00:00:00Z", "lies in the future")]
    [TestCase("MagCds__RateLimit__PermitsPerSecond", "lots", "at 'MagCds:RateLimit:PermitsPerSecond' to type")]
    [TestCase("MagCds__Worker__Concurrency", "0", "'Concurrency'")]
    [TestCase("MagCds__Worker__Concurrency", "0", "(settings under MagCds:Worker)")]
    [TestCase("MagCds__Telemetry__OtlpEndpoint", "not a url", "OtlpEndpoint must be an absolute URL")]
    [TestCase("MagCds__Store__SqliteConnectionString", "Bogus=1", "Sqlite connection string (MagCds:Store) is not valid")]
    public async Task A_worker_or_store_misconfiguration_stops_the_service_with_a_clear_message(string key, string value, string message)
    {
        using var p = Start(FreePort(), ("MagCds__Worker__Enabled", "true"), ("MagCds__Worker__FhirServerUrl", "http://127.0.0.1:9/fhir"), (key, value));
        string stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.That(p.ExitCode, Is.EqualTo(78));
        Assert.That(stderr, Does.StartWith("MagCds cannot start: ").And.Contain(message).And.Not.Contain("   at "));
    }

    /// <summary>
    /// An API key whose Admin is not true or false was dropped by the configuration binder without a word: the service
    /// started without it (found by an operator's probe). It now stops, naming the setting.
    /// </summary>
    [Test]
    public async Task An_API_key_with_a_value_of_the_wrong_type_stops_the_service_naming_it()
    {
        using var p = Start(FreePort(),
            ("MagCds__Security__ApiKeys__0__Name", "lab-engine"), ("MagCds__Security__ApiKeys__0__Key", "lab-engine-key-0123456789"),
            ("MagCds__Security__ApiKeys__1__Name", "oncall"), ("MagCds__Security__ApiKeys__1__Key", "oncall-admin-key-0123456789"),
            ("MagCds__Security__ApiKeys__1__Admin", "yes"));
        var stderrRead = p.StandardError.ReadToEndAsync();
        // Before the fix the service started (without the key) and ran on: that must fail the test, not hang it.
        if (!p.WaitForExit(TimeSpan.FromSeconds(60))) { p.Kill(entireProcessTree: true); Assert.Fail("The service started with an API key it could not read."); }
        string stderr = await stderrRead;
        Assert.That(p.ExitCode, Is.EqualTo(78));
        Assert.That(stderr, Does.StartWith("MagCds cannot start: ").And.Contain("'MagCds:Security:ApiKeys:1:Admin'").And.Not.Contain("   at "));
        Assert.That(stderr, Does.Not.Contain("0123456789"), "the keys are not echoed");
    }

    /// <summary>
    /// A port already taken stops the service with one plain line that says so (exit 69), not an unhandled exception
    /// (exit 134) and a "BackgroundService failed" error about the conformance warm-up. Found by a black-box probe.
    /// </summary>
    [Test]
    public async Task A_port_already_in_use_stops_the_service_with_a_clear_message()
    {
        var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        try
        {
            int port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
            using var p = Start(port);
            var stdout = p.StandardOutput.ReadToEndAsync();
            string stderr = await p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
            Assert.That(p.ExitCode, Is.EqualTo(69));
            Assert.That(stderr, Does.StartWith("MagCds cannot start: ").And.Contain("address already in use").And.Contain($"127.0.0.1:{port}").And.Not.Contain("   at "));
            Assert.That(await stdout, Does.Not.Contain("BackgroundService failed"));
        }
        finally
        {
            taken.Stop();
        }
    }

    [TestCase("Bearer", "http://fhir.hospital.example/r4", "https://auth.hospital.example/token")]
    [TestCase("SmartBackend", "https://fhir.hospital.example/r4", "http://auth.hospital.example/token")]
    public async Task Worker_credentials_in_clear_text_beyond_this_machine_stop_the_service(string auth, string fhirServer, string tokenUrl)
    {
        // A bearer token or a SMART client's access token read on the way gives the reader the server's patient data.
        string key = Path.GetTempFileName();
        try
        {
            using var p = Start(FreePort(), ("MagCds__Worker__Enabled", "true"), ("MagCds__Worker__FhirServerUrl", fhirServer),
                ("MagCds__Worker__Auth", auth), ("MagCds__Worker__BearerToken", "not-a-real-token-0123456789"),
                ("MagCds__Worker__Smart__TokenUrl", tokenUrl), ("MagCds__Worker__Smart__ClientId", "magcds"), ("MagCds__Worker__Smart__PrivateKeyFile", key));
            string stderr = await p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
            Assert.That(p.ExitCode, Is.EqualTo(78));
            Assert.That(stderr, Does.StartWith("MagCds cannot start: ").And.Contain("sends credentials (Auth Bearer or SmartBackend) only over https")
                .And.Not.Contain("not-a-real-token"));
        }
        finally { File.Delete(key); }
    }

    [Test]
    public async Task A_SMART_private_key_that_cannot_be_read_stops_the_service_with_a_clear_message()
    {
        // Read only at the first token request, it would fail every request, and every item would be a dead letter.
        string key = Path.GetTempFileName();
        await File.WriteAllTextAsync(key, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n");
        try
        {
            using var p = Start(FreePort(), ("MagCds__Worker__Enabled", "true"), ("MagCds__Worker__FhirServerUrl", "https://fhir.hospital.example/r4"),
                ("MagCds__Worker__Auth", "SmartBackend"), ("MagCds__Worker__Smart__TokenUrl", "https://auth.hospital.example/token"),
                ("MagCds__Worker__Smart__ClientId", "magcds"), ("MagCds__Worker__Smart__PrivateKeyFile", key));
            // Bounded: a service that does not stop would keep its error stream open.
            if (!p.WaitForExit(TimeSpan.FromSeconds(60)))
            {
                p.Kill(entireProcessTree: true);
                Assert.Fail("the service started with a key it cannot read");
            }
            string stderr = await p.StandardError.ReadToEndAsync();
            Assert.That(p.ExitCode, Is.EqualTo(78));
            Assert.That(stderr, Does.StartWith("MagCds cannot start: ").And.Contain("cannot be read as a PEM private key").And.Not.Contain("   at "));
        }
        finally { File.Delete(key); }
    }

    [Test]
    public async Task A_store_that_cannot_be_opened_stops_the_service_with_a_clear_message()
    {
        // As in a container whose store folder is not writable: a message saying what to check, no stack trace.
        string missing = Path.Combine(Path.GetTempPath(), $"magcds-no-such-folder-{Guid.NewGuid():N}", "magcds.db");
        using var p = Start(FreePort(), ("MagCds__Store__SqliteConnectionString", $"Data Source={missing}"));
        string stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.That(p.ExitCode, Is.EqualTo(69));
        Assert.That(stderr, Does.StartWith("MagCds cannot start: the store (MagCds:Store, provider Sqlite) could not be opened: ")
            .And.Contain("unable to open database file").And.Not.Contain("   at "));
    }

    /// <summary>A file that is no SQLite database says a restart will not mend it, not "check the folder" (found by an operator's probe).</summary>
    [Test]
    public async Task A_store_file_that_is_no_database_says_to_restore_it()
    {
        string garbage = Path.Combine(Path.GetTempPath(), $"magcds-garbage-{Guid.NewGuid():N}.db");
        await File.WriteAllTextAsync(garbage, new string('x', 8192));
        try
        {
            using var p = Start(FreePort(), ("MagCds__Store__SqliteConnectionString", $"Data Source={garbage}"));
            var stderrRead = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(TimeSpan.FromSeconds(60))) { p.Kill(entireProcessTree: true); Assert.Fail("The service started on a file that is no database."); }
            string stderr = await stderrRead;
            Assert.That(p.ExitCode, Is.EqualTo(69));
            Assert.That(stderr, Does.Contain("is not a SQLite database or is damaged").And.Contain("restore it from a backup").And.Not.Contain("exists and this user may write it"));
        }
        finally { File.Delete(garbage); }
    }

    [Test]
    public async Task A_cds_hooks_key_url_in_clear_text_beyond_this_machine_stops_the_service()
    {
        // Keys fetched over http could be swapped on the way, and with them any EHR's identity forged.
        using var p = Start(FreePort(), ("MagCds__CdsHooks__PublicBaseUrl", "https://magcds.hospital.example"),
            ("MagCds__CdsHooks__TrustedIssuers__0__Issuer", "https://ehr.example.org"),
            ("MagCds__CdsHooks__TrustedIssuers__0__JwksUrl", "http://ehr.example.org/jwks"));
        string stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.That(p.ExitCode, Is.EqualTo(78));
        Assert.That(stderr, Does.StartWith("MagCds cannot start: ").And.Contain("must be https URLs"));
    }

    [Test]
    public async Task A_trusted_cds_hooks_issuer_without_a_public_base_url_stops_the_service()
    {
        // The aud a JWT must carry is this service's registered URL, never one taken from the caller's Host header.
        using var p = Start(FreePort(), ("MagCds__CdsHooks__TrustedIssuers__0__Issuer", "https://ehr.example.org"),
            ("MagCds__CdsHooks__TrustedIssuers__0__JwksUrl", "https://ehr.example.org/jwks"));
        string stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.That(p.ExitCode, Is.EqualTo(78));
        Assert.That(stderr, Does.StartWith("MagCds cannot start: ").And.Contain("PublicBaseUrl (the absolute URL EHRs call"));
    }

    /// <summary>
    /// On loopback, but behind a trusted proxy: callers from beyond this machine come in through it, so the loopback
    /// rules do not hold (found by a security probe: development mode answered unsigned calls through the proxy).
    /// </summary>
    [TestCase("KnownProxies", "127.0.0.1", false)]
    [TestCase("KnownNetworks", "127.0.0.0/8", false)]
    [TestCase("KnownProxies", "127.0.0.1", true)]
    public async Task A_trusted_proxy_without_authentication_or_with_development_mode_is_refused(string setting, string value, bool cdsHooksDevelopmentMode)
    {
        var env = new List<(string, string)> { ($"MagCds__Proxies__{setting}__0", value) };
        if (cdsHooksDevelopmentMode)
            env.AddRange([("MagCds__Security__ApiKeys__0__Name", "engine"), ("MagCds__Security__ApiKeys__0__Key", "an-api-key-of-some-length"),
                ("MagCds__CdsHooks__AllowUnsignedCalls", "true")]);
        using var p = Start(FreePort(), [.. env]);
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(60_000))
        {
            p.Kill();
            Assert.Fail("the service did not stop");
        }
        Assert.That(p.ExitCode, Is.EqualTo(78));
        Assert.That(await stderr, Does.StartWith("MagCds cannot start: ").And.Contain(cdsHooksDevelopmentMode
            ? "allowed only while MagCds listens on loopback (127.0.0.1) with no trusted proxy"
            : "MagCds:Proxies names a trusted proxy"));
    }

    /// <summary>Told to listen on every interface by URL, or by the container image's way (no URL, HTTP_PORTS).</summary>
    [TestCase("urls", false)]
    [TestCase("HTTP_PORTS", false)]
    [TestCase("urls", true)]
    [TestCase("HTTP_PORTS", true)]
    public async Task Listening_beyond_loopback_without_authentication_is_refused(string how, bool cdsHooksDevelopmentMode)
    {
        int port = FreePort();
        var psi = new ProcessStartInfo("dotnet", how == "urls" ? [ServiceDll, "--urls", $"http://0.0.0.0:{port}"] : [ServiceDll])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        if (how == "HTTP_PORTS")
        {
            psi.Environment["ASPNETCORE_URLS"] = "";
            psi.Environment["Urls"] = "";
            psi.Environment["ASPNETCORE_HTTP_PORTS"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        psi.Environment["MagCds__Store__SqliteConnectionString"] = "Data Source=" + Path.Combine(Path.GetTempPath(), $"magcds-process-{Guid.NewGuid():N}.db");
        if (cdsHooksDevelopmentMode)
        {
            // The REST door has a key, but CDS Hooks calls without a JWT would be answered from anywhere (and make
            // MagCds query any fhirServer a caller names).
            psi.Environment["MagCds__Security__ApiKeys__0__Name"] = "engine";
            psi.Environment["MagCds__Security__ApiKeys__0__Key"] = "an-api-key-of-some-length";
            psi.Environment["MagCds__CdsHooks__AllowUnsignedCalls"] = "true";
        }
        using var p = Process.Start(psi)!;
        string stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.That(p.ExitCode, Is.EqualTo(78));
        Assert.That(stderr, Does.Contain(cdsHooksDevelopmentMode ? "AllowUnsignedCalls (development mode: calls without a JWT) is allowed only while MagCds listens on loopback"
            : "non-loopback address but no authentication is configured"));
    }

    [Test]
    public async Task The_service_answers_over_a_real_socket()
    {
        int port = FreePort();
        using var p = Start(port);
        try
        {
            using var resp = await PostSampleOnceListeningAsync(port);
            Assert.That(resp, Is.Not.Null, "the service did not start listening within 20 s");
            Assert.That(resp!.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            var body = (Parameters)await Http.ReadAsync(resp);
            Assert.That(body.Parameter.Select(x => x.Name), Does.Contain("detectedIssue"));
        }
        finally
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync();
        }
    }

    /// <summary>
    /// Extra Serilog sinks come from the standard Serilog section, here as an operator sets it (environment variables),
    /// and get the same redaction as the console: a file written for real, and what the Seq and OTLP sinks send over
    /// HTTP, captured by a plain listener (no Seq or collector runs here: the test checks what leaves the process).
    /// The console output of the whole run is searched for the test data's PHI too.
    /// </summary>
    [Test]
    public async Task File_Seq_and_OTLP_log_sinks_from_settings_receive_the_redacted_events()
    {
        string file = Path.Combine(Path.GetTempPath(), $"magcds-log-{Guid.NewGuid():N}.json");
        await using var capture = await HttpCapture.StartAsync();
        int port = FreePort();
        using var p = Start(port,
            ("Serilog__WriteTo__0__Name", "File"),
            ("Serilog__WriteTo__0__Args__path", file),
            ("Serilog__WriteTo__0__Args__formatter", "Serilog.Formatting.Compact.RenderedCompactJsonFormatter, Serilog.Formatting.Compact"),
            ("Serilog__WriteTo__1__Name", "Seq"),
            ("Serilog__WriteTo__1__Args__serverUrl", capture.BaseUrl + "seq"),
            ("Serilog__WriteTo__2__Name", "OpenTelemetry"),
            ("Serilog__WriteTo__2__Args__endpoint", capture.BaseUrl + "otlp/v1/logs"),
            ("Serilog__WriteTo__2__Args__protocol", "HttpProtobuf"));
        var console = p.StandardOutput.ReadToEndAsync();
        try
        {
            using var resp = await PostSampleOnceListeningAsync(port);
            Assert.That(resp?.StatusCode, Is.EqualTo(HttpStatusCode.OK), "the service did not answer within 20 s");
        }
        finally
        {
            // A normal stop (SIGTERM) flushes the sinks, as in a container shutdown.
            using (var term = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) await term.WaitForExitAsync();
            await p.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
        }

        const string route = "/fhir/Observation/$mag-evaluate";
        string written = await File.ReadAllTextAsync(file);
        File.Delete(file);
        Assert.That(written, Does.Contain($"\"RequestRoute\":\"{route}\"").And.Contain("\"KnowledgeVersion\""));
        string seq = capture.Bodies("/seq");
        Assert.That(seq, Does.Contain(route));
        string otlp = capture.Bodies("/otlp/v1/logs"); // protobuf: its strings are in it as UTF-8
        Assert.That(otlp, Does.Contain(route));
        string consoleText = await console;
        Assert.That(consoleText, Does.Contain(route));
        foreach (var (sink, text) in new[] { ("file", written), ("Seq", seq), ("OTLP", otlp), ("console", consoleText) })
            Assert.That(PhiScan.Hits(text.Split('\n')), Is.Empty, $"PHI in the {sink} log");
    }
}
