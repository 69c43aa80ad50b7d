using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace MagCds.Tests.Support;

/// <summary>
/// A real PostgreSQL server for the tests, started once per test run from the Debian package's binaries
/// (<c>apt-get install postgresql</c>; <c>.ci/run</c> installs it): a private cluster in a temporary folder, on a
/// free loopback port, with trust authentication. PostgreSQL refuses to run as root, so under root the cluster runs
/// as the package's <c>postgres</c> user. Each test fixture gets a database of its own from <see cref="CreateDatabaseAsync"/>.
/// </summary>
public sealed class PostgresServer : IDisposable
{
    private static readonly Lazy<PostgresServer> SharedInstance = new(() => new PostgresServer());
    private static int _databases;

    private readonly string _bin;
    private readonly string _dataDir;
    private readonly string? _runAs;
    private bool _running;

    /// <summary>The server every test of this run uses, started on first use and stopped by <see cref="TestRunHooks"/>.</summary>
    public static PostgresServer Shared => SharedInstance.Value;

    public static bool IsStarted => SharedInstance.IsValueCreated;

    public int Port { get; }

    /// <summary>Connection string to the maintenance database.</summary>
    public string AdminConnectionString => $"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres;Pooling=false";

    private PostgresServer()
    {
        _bin = FindBinaries();
        _runAs = Environment.UserName == "root" ? "postgres" : null;
        _dataDir = Path.Combine(Path.GetTempPath(), $"magcds-pg-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_dataDir);
        if (_runAs is not null) Run("chown", [_runAs, _dataDir], asServerUser: false);
        Run(Path.Combine(_bin, "initdb"), ["-D", Path.Combine(_dataDir, "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);

        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            Port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }
        // fsync off: the tests need a real server, not durable test data; it is wiped at the end anyway.
        Run(Path.Combine(_bin, "pg_ctl"), ["-D", Path.Combine(_dataDir, "data"), "-l", Path.Combine(_dataDir, "server.log"), "-w", "-t", "60",
            "-o", $"-p {Port} -k {_dataDir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start"]);
        _running = true;
    }

    /// <summary>Drops the database of <paramref name="connectionString"/>, cutting its open connections (a store that is gone).</summary>
    public async Task DropDatabaseAsync(string connectionString)
    {
        string name = new NpgsqlConnectionStringBuilder(connectionString).Database!;
        await using var c = new NpgsqlConnection(AdminConnectionString);
        await c.OpenAsync();
        await using var cmd = new NpgsqlCommand($"DROP DATABASE {name} WITH (FORCE)", c);
        await cmd.ExecuteNonQueryAsync();
    }

    /// <summary>A new, empty database; returns its connection string.</summary>
    public async Task<string> CreateDatabaseAsync()
    {
        string name = $"magcds_test_{Environment.ProcessId}_{Interlocked.Increment(ref _databases)}";
        await using var c = new NpgsqlConnection(AdminConnectionString);
        await c.OpenAsync();
        await using var cmd = new NpgsqlCommand($"CREATE DATABASE {name}", c);
        await cmd.ExecuteNonQueryAsync();
        return $"Host=127.0.0.1;Port={Port};Username=postgres;Database={name}";
    }

    public void Dispose()
    {
        if (!_running) return;
        _running = false;
        try { Run(Path.Combine(_bin, "pg_ctl"), ["-D", Path.Combine(_dataDir, "data"), "-m", "immediate", "-w", "stop"]); }
        finally { try { Directory.Delete(_dataDir, recursive: true); } catch (IOException) { } }
    }

    private static string FindBinaries()
    {
        string? onPath = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
            .FirstOrDefault(d => File.Exists(Path.Combine(d, "initdb")) && File.Exists(Path.Combine(d, "pg_ctl")));
        if (onPath is not null) return onPath;
        var debian = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "initdb")))
                .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), out int v) ? v : 0).FirstOrDefault()
            : null;
        return debian ?? throw new InvalidOperationException(
            "The store tests need a PostgreSQL server: install the Debian package (apt-get install -y postgresql) so initdb and pg_ctl exist.");
    }

    private void Run(string file, IReadOnlyList<string> args, bool asServerUser = true)
    {
        var psi = _runAs is not null && asServerUser
            ? new ProcessStartInfo("runuser", ["-u", _runAs, "--", file, .. args])
            : new ProcessStartInfo(file, args);
        psi.RedirectStandardOutput = true;
        psi.RedirectStandardError = true;
        psi.UseShellExecute = false;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"{file} did not start.");
        var stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = p.StandardError.ReadToEnd();
        if (!p.WaitForExit(120_000)) { p.Kill(true); throw new TimeoutException($"{file} did not finish in 120 s."); }
        if (p.ExitCode != 0)
        {
            string log = File.Exists(Path.Combine(_dataDir, "server.log")) ? File.ReadAllText(Path.Combine(_dataDir, "server.log")) : "";
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited with {p.ExitCode}:\n{stdout.Result}\n{stderr}\n{log}");
        }
    }
}
