using System.Diagnostics;

namespace MagCds.Tests.Startup;

/// <summary>
/// The deployment files, checked without a Docker engine: docker-compose.yml must pass Compose's own schema and
/// interpolation check (`docker-compose config`, Debian package docker-compose, installed by .ci/run), and keep the
/// safety settings the operations guide promises.
/// </summary>
public sealed class DeploymentFilesTests
{
    private static readonly string Root = PackageBuilder.PackageBuilder.RepositoryRoot();

    private static async Task<(int Exit, string Out, string Err)> ComposeAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("docker-compose", ["-f", Path.Combine(Root, "docker-compose.yml"), .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Root,
        };
        Process p;
        try { p = Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception)
        {
            Assert.Fail("docker-compose is not installed: apt-get install -y docker-compose (.ci/run does this)");
            throw;
        }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync();
            return (p.ExitCode, await stdout, await stderr);
        }
    }

    [Test]
    public async Task The_compose_file_is_valid_with_and_without_the_observability_profile()
    {
        var plain = await ComposeAsync("config", "-q");
        Assert.That(plain.Exit, Is.Zero, plain.Err);
        var resolved = await ComposeAsync("--profile", "observability", "config");
        Assert.That(resolved.Exit, Is.Zero, resolved.Err);
        Assert.That(resolved.Out, Does.Contain("dashboard:").And.Contain("magcds:").And.Contain("hapi:").And.Contain("postgres:"));
    }

    [Test]
    public async Task The_compose_file_runs_MagCds_read_only_with_authentication_a_memory_limit_and_ports_on_loopback()
    {
        var (exit, config, err) = await ComposeAsync("config");
        Assert.That(exit, Is.Zero, err);
        string magcds = config[config.IndexOf("  magcds:", StringComparison.Ordinal)..];
        magcds = magcds[..magcds.IndexOf("\n  postgres:", StringComparison.Ordinal)];
        Assert.That(magcds, Does.Contain("read_only: true"));
        // The memory limit the 10,000-Observation load test is run under (docs/performance.md).
        Assert.That(magcds, Does.Match(@"mem_limit: ""?(536870912|512m)\b"));
        // MagCds listens on all interfaces in its container, which it refuses to do without authentication.
        Assert.That(magcds, Does.Contain("MagCds__Security__ApiKeys__0__Key"));
        // Every published port is bound to the host's loopback only.
        var ports = System.Text.RegularExpressions.Regex.Matches(config, @"^\s+- (\S+:\d+:\d+\S*)\s*$", System.Text.RegularExpressions.RegexOptions.Multiline)
            .Select(m => m.Groups[1].Value).ToList();
        Assert.That(ports, Is.Not.Empty);
        Assert.That(ports, Has.All.StartsWith("127.0.0.1:"));
    }

    [Test]
    public void The_image_runs_as_a_non_root_user()
    {
        var lines = File.ReadAllLines(Path.Combine(Root, "Dockerfile")).Select(l => l.Trim()).ToList();
        int lastFrom = lines.FindLastIndex(l => l.StartsWith("FROM ", StringComparison.Ordinal));
        var user = lines.Skip(lastFrom).LastOrDefault(l => l.StartsWith("USER ", StringComparison.Ordinal));
        Assert.That(user, Is.Not.Null.And.Not.EqualTo("USER root").And.Not.EqualTo("USER 0"));

        // That user can write the embedded store: its file is in the folder the image hands to it (and a volume),
        // not beside the program in /app, which belongs to root (the service would not start).
        var runtime = lines.Skip(lastFrom).ToList();
        Assert.That(runtime, Has.Some.Contains("MagCds__Store__SqliteConnectionString=\"Data Source=/data/magcds.db\""));
        Assert.That(runtime, Has.Some.EqualTo("RUN mkdir -p /data && chown app /data"));
        Assert.That(runtime, Has.Some.EqualTo("VOLUME [\"/data\"]"));
        Assert.That(user, Is.EqualTo("USER app"));
    }
}
