using MagCds.Tests.Support;

namespace MagCds.Tests;

/// <summary>Stops what the run started once (the shared PostgreSQL server), after the last test.</summary>
[SetUpFixture]
public sealed class TestRunHooks
{
    [OneTimeTearDown]
    public void StopSharedServers()
    {
        if (PostgresServer.IsStarted) PostgresServer.Shared.Dispose();
    }
}
