using System.ComponentModel;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Hl7.Fhir.Model;
using Hl7.Fhir.Rest;

namespace MagCds.Tests.Support;

/// <summary>One request the test FHIR server received (GET /admin/requests). The token itself is never recorded.</summary>
/// <param name="Method">HTTP method.</param>
/// <param name="Url">Path and query as sent, e.g. <c>/fhir/R4/Observation?patient=p1</c>.</param>
/// <param name="HasAuthorization">Whether an Authorization header was present.</param>
/// <param name="Status">The HTTP status the server answered with; null while the answer is still being sent.</param>
/// <summary>One request the FHIR test server received; <paramref name="At"/> is its arrival, in ms since the Unix epoch.</summary>
public sealed record FhirTestServerRequest(string Method, string Url, bool HasAuthorization, int? Status, long At);

/// <summary>
/// A real FHIR R4 server for integration tests: tests/fhir-test-server (Medplum's in-memory FHIR engine
/// behind a small Node host) as a child process on a free loopback port. Needs node and npm on PATH;
/// the first start on a fresh clone runs <c>npm ci</c> from the committed lockfile.
/// </summary>
/// <example>
/// <code>
/// await using var fhir = new FhirTestServer();
/// await fhir.StartAsync();
/// await fhir.SeedAsync(observation);
/// // point the code under test at fhir.BaseUrl, then: await fhir.RequestsAsync()
/// </code>
/// </example>
/// <param name="requiredToken">When set, the server answers 401 to any request without
/// <c>Authorization: Bearer {requiredToken}</c>; this helper's own calls send it.</param>
/// <param name="environment">More settings of the host (e.g. FHIR_INTROSPECT_URL: tokens checked by an authorization server).</param>
/// <param name="clientToken">The Bearer token this helper's own calls send, when it is not <paramref name="requiredToken"/>.</param>
/// <param name="port">A fixed loopback port (e.g. one the code under test already points at); 0 = any free port.</param>
public sealed class FhirTestServer(string? requiredToken = null, IReadOnlyDictionary<string, string>? environment = null, string? clientToken = null, int port = 0)
    : IAsyncDisposable, IDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan NpmCiTimeout = TimeSpan.FromMinutes(5);
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);
    // Fixtures may start servers in parallel; only one of them may run npm ci in the shared folder.
    private static readonly SemaphoreSlim NpmCiGate = new(1, 1);

    private readonly StringBuilder _log = new();
    private Process? _process;
    private HttpClient? _admin;
    private FhirClient? _client;
    private string? _baseUrl;

    public string? RequiredToken { get; } = requiredToken;

    /// <summary>The FHIR base, e.g. <c>http://127.0.0.1:41234/fhir/R4</c>.</summary>
    public string BaseUrl => _baseUrl ?? throw new InvalidOperationException("Call StartAsync first.");

    /// <summary>The server root, where /admin/... lives, e.g. <c>http://127.0.0.1:41234</c>.</summary>
    public string RootUrl => BaseUrl[..^"/fhir/R4".Length];

    /// <summary>What the server wrote to stdout and stderr so far (for failure messages).</summary>
    public string Log { get { lock (_log) return _log.ToString(); } }

    /// <summary>A FHIR client for the server (JSON, with the token when one is required). The client is shared: do not dispose it.</summary>
    public FhirClient Client => _client ?? throw new InvalidOperationException("Call StartAsync first.");

    /// <summary>The folder of the Node host: tests/fhir-test-server under the directory holding MagCds.sln.</summary>
    public static string HostDirectory
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "MagCds.sln")))
                    return Path.Combine(dir.FullName, "tests", "fhir-test-server");
            }
            throw new InvalidOperationException($"No MagCds.sln in {AppContext.BaseDirectory} or any parent directory.");
        }
    }

    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_process is not null) throw new InvalidOperationException("Already started.");
        string dir = HostDirectory;
        await EnsurePackagesAsync(dir, cancellationToken);

        // Port 0: the host binds a free loopback port itself and prints it, so there is no
        // pick-then-bind race with other servers starting at the same time.
        var psi = new ProcessStartInfo("bash", [Path.Combine(dir, "start.sh"), port.ToString(System.Globalization.CultureInfo.InvariantCulture)])
        {
            WorkingDirectory = dir,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.Environment.Remove("FHIR_PORT");
        psi.Environment.Remove("FHIR_REQUIRE_TOKEN");
        if (RequiredToken is not null) psi.Environment["FHIR_REQUIRE_TOKEN"] = RequiredToken;
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        // The host exits when our end of its stdin closes, so a crashed test run leaves no orphan.
        psi.Environment["FHIR_EXIT_WITH_STDIN"] = "1";

        var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            Append(e.Data);
            if (e.Data.StartsWith("listening ", StringComparison.Ordinal)) listening.TrySetResult(e.Data["listening ".Length..].Trim());
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Append(e.Data); };
        process.Exited += (_, _) => listening.TrySetException(new InvalidOperationException($"exited with code {process.ExitCode}"));

        try { process.Start(); }
        catch (Win32Exception e) { throw new InvalidOperationException("Cannot run bash to start the FHIR test server.", e); }
        _process = process;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        try
        {
            _baseUrl = await listening.Task.WaitAsync(StartTimeout, cancellationToken);
        }
        catch (Exception e)
        {
            Kill();
            if (e is OperationCanceledException) throw;
            string why = e is TimeoutException ? $"did not print 'listening ...' within {StartTimeout.TotalSeconds:0} s" : e.Message;
            throw new InvalidOperationException($"The FHIR test server ({psi.FileName} {string.Join(' ', psi.ArgumentList)} in {dir}) {why}. Its output:\n{Log}", e);
        }

        _admin = new HttpClient { BaseAddress = new Uri(RootUrl + "/"), Timeout = TimeSpan.FromSeconds(30) };
        if (RequiredToken is not null) _admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", RequiredToken);
        _client = CreateClient();
    }

    /// <summary>A new FHIR client for this server (the caller disposes it). With a token unless <paramref name="withToken"/> is false.</summary>
    public FhirClient CreateClient(bool withToken = true, FhirClientSettings? settings = null)
    {
        var client = new FhirClient(BaseUrl, settings ?? new FhirClientSettings { PreferredFormat = ResourceFormat.Json });
        if (withToken && (clientToken ?? RequiredToken) is { } token)
            client.RequestHeaders!.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    /// <summary>Empties the repository and the request log.</summary>
    public async Task ResetAsync(CancellationToken cancellationToken = default)
    {
        using var resp = await Admin.PostAsync("admin/reset", null, cancellationToken);
        await EnsureOkAsync(resp, cancellationToken);
    }

    /// <summary>
    /// Behaviours of other servers (until the next reset): searches that ignore <c>_sort</c> (and say so in their self
    /// link), searches that ignore <c>_lastUpdated</c>, next links that point at <paramref name="nextLinkBase"/> instead
    /// of this server, a server clock <paramref name="clockOffset"/> away from this machine's (its lastUpdated
    /// stamps and its Date header), and transactions run entry by entry, answered 200 with each entry's own status.
    /// </summary>
    public async Task QuirksAsync(bool ignoreSort = false, string? nextLinkBase = null, bool ignoreLastUpdated = false, TimeSpan clockOffset = default,
        bool transactionAsBatch = false, string? endlessPaging = null, bool noVersions = false, CancellationToken cancellationToken = default)
    {
        using var resp = await Admin.PostAsync("admin/quirks",
            JsonContent.Create(new { ignoreSort, nextLinkBase, ignoreLastUpdated, clockOffsetMs = (long)clockOffset.TotalMilliseconds, transactionAsBatch, endlessPaging, noVersions }), cancellationToken);
        await EnsureOkAsync(resp, cancellationToken);
    }

    /// <summary>
    /// Makes the server answer <paramref name="status"/> (0: answered normally) to the next <paramref name="count"/>
    /// requests of that method under that path, after <paramref name="delayMs"/>, with a <c>Retry-After</c> header when
    /// <paramref name="retryAfter"/> is given, and with <paramref name="body"/> (JSON) instead of an OperationOutcome.
    /// <paramref name="rawBody"/>: the body as JSON text, sent as written (text .NET cannot hold as a string, such as
    /// half of a UTF-16 surrogate pair escaped, reaches the server that way).
    /// </summary>
    public async Task FaultAsync(int status, int count, string method, string path, int delayMs = 0, string? retryAfter = null,
        System.Text.Json.Nodes.JsonNode? body = null, CancellationToken cancellationToken = default, string? rawBody = null, string? location = null)
    {
        // A body may be nested deeper than System.Text.Json writes by default (an answer too deep for a client to read).
        string fault = System.Text.Json.JsonSerializer.Serialize(new { status, count, method, path, delayMs, retryAfter, location, body }, new System.Text.Json.JsonSerializerOptions { MaxDepth = 512 });
        if (rawBody is not null) fault = fault[..fault.LastIndexOf(",\"body\":", StringComparison.Ordinal)] + ",\"body\":" + rawBody + "}";
        using var resp = await Admin.PostAsync("admin/faults", new StringContent(fault, System.Text.Encoding.UTF8, "application/json"), cancellationToken);
        await EnsureOkAsync(resp, cancellationToken);
    }

    /// <summary>Removes every injected failure that has not run out.</summary>
    public async Task ClearFaultsAsync(CancellationToken cancellationToken = default)
    {
        using var resp = await Admin.DeleteAsync("admin/faults", cancellationToken);
        await EnsureOkAsync(resp, cancellationToken);
    }

    /// <summary>Empties only the request log, e.g. after seeding, so a test sees just what the code under test asked for.</summary>
    public async Task ClearRequestsAsync(CancellationToken cancellationToken = default)
    {
        using var resp = await Admin.DeleteAsync("admin/requests", cancellationToken);
        await EnsureOkAsync(resp, cancellationToken);
    }

    /// <summary>The FHIR requests received since the start or the last reset/clear, oldest first (seeding included).</summary>
    public async Task<IReadOnlyList<FhirTestServerRequest>> RequestsAsync(CancellationToken cancellationToken = default)
    {
        using var resp = await Admin.GetAsync("admin/requests", cancellationToken);
        await EnsureOkAsync(resp, cancellationToken);
        return await resp.Content.ReadFromJsonAsync<List<FhirTestServerRequest>>(Json, cancellationToken)
               ?? throw new InvalidOperationException("GET /admin/requests returned null.");
    }

    /// <summary>Creates <paramref name="resource"/> (POST) and returns it as stored, with its server id.</summary>
    public async Task<T> SeedAsync<T>(T resource) where T : Resource =>
        await Client.CreateAsync(resource) ?? throw new InvalidOperationException($"Creating {resource.TypeName} returned no resource.");

    /// <summary>Every resource of a type on the server, all pages read.</summary>
    public async Task<List<T>> AllAsync<T>() where T : Resource, new()
    {
        var list = new List<T>();
        var page = await Client.SearchAsync<T>(pageSize: 100);
        while (page is not null)
        {
            list.AddRange(page.Entry.Select(e => e.Resource).OfType<T>());
            page = page.NextLink is null ? null : await Client.ContinueAsync(page);
        }
        return list;
    }

    /// <summary>Sends a transaction (or batch) Bundle and returns the response Bundle.</summary>
    public async Task<Bundle> SeedAsync(Bundle transaction)
    {
        if (transaction.Type is not (Bundle.BundleType.Transaction or Bundle.BundleType.Batch))
            throw new ArgumentException($"Bundle.type must be transaction or batch, not {transaction.Type}.", nameof(transaction));
        return await Client.TransactionAsync(transaction) ?? throw new InvalidOperationException("The transaction returned no Bundle.");
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    public void Dispose()
    {
        _client?.Dispose();
        _admin?.Dispose();
        Kill();
        _process?.Dispose();
        _client = null;
        _admin = null;
        _process = null;
    }

    private HttpClient Admin => _admin ?? throw new InvalidOperationException("Call StartAsync first.");

    private void Append(string line)
    {
        lock (_log) if (_log.Length < 100_000) _log.AppendLine(line);
    }

    private void Kill()
    {
        var p = _process;
        if (p is null) return;
        try
        {
            if (!p.HasExited)
            {
                p.Kill(entireProcessTree: true);
                p.WaitForExit(5_000);
            }
        }
        catch (InvalidOperationException) { } // already gone
    }

    private static async Task EnsureOkAsync(HttpResponseMessage resp, CancellationToken cancellationToken)
    {
        if (!resp.IsSuccessStatusCode)
        {
            string body = await resp.Content.ReadAsStringAsync(cancellationToken);
            throw new InvalidOperationException($"{resp.RequestMessage?.Method} {resp.RequestMessage?.RequestUri} answered {(int)resp.StatusCode}: {body}");
        }
    }

    /// <summary>Runs <c>npm ci</c> once when node_modules lacks the engine (fresh clone).</summary>
    private static async Task EnsurePackagesAsync(string dir, CancellationToken cancellationToken)
    {
        static bool Installed(string d) => File.Exists(Path.Combine(d, "node_modules", "@medplum", "fhir-router", "package.json"));
        if (Installed(dir)) return;
        await NpmCiGate.WaitAsync(cancellationToken);
        try
        {
            if (Installed(dir)) return;
            var psi = new ProcessStartInfo("npm", ["ci", "--no-audit", "--no-fund"])
            {
                WorkingDirectory = dir,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            Process npm;
            try { npm = Process.Start(psi) ?? throw new InvalidOperationException("npm did not start."); }
            catch (Win32Exception e) { throw new InvalidOperationException($"The FHIR test server needs node and npm on PATH to install {dir}/node_modules.", e); }
            using (npm)
            {
                var stdout = npm.StandardOutput.ReadToEndAsync(cancellationToken);
                var stderr = npm.StandardError.ReadToEndAsync(cancellationToken);
                try { await npm.WaitForExitAsync(cancellationToken).WaitAsync(NpmCiTimeout, cancellationToken); }
                catch (TimeoutException)
                {
                    npm.Kill(entireProcessTree: true);
                    throw new InvalidOperationException($"npm ci in {dir} did not finish within {NpmCiTimeout.TotalMinutes:0} min.");
                }
                if (npm.ExitCode != 0)
                    throw new InvalidOperationException($"npm ci in {dir} failed with exit code {npm.ExitCode}:\n{await stdout}\n{await stderr}");
            }
        }
        finally { NpmCiGate.Release(); }
    }
}
