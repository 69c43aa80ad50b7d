using MagCds.Service.Storage;

namespace MagCds.Tests.Support;

/// <summary>
/// Base of the worker test fixtures: one real FHIR test server per fixture, and before each test a fresh
/// <see cref="WorkerHarness"/> (server emptied, new store of the fixture's kind). Derived fixtures run once per store
/// kind: <c>[TestFixture(StoreProvider.Sqlite)] [TestFixture(StoreProvider.Postgres)]</c>.
/// </summary>
[NonParallelizable]
public abstract class WorkerTestBase(StoreProvider provider)
{
    protected StoreProvider Provider => provider;
    protected FhirTestServer Fhir { get; private set; } = null!;
    protected WorkerHarness H { get; private set; } = null!;

    [OneTimeSetUp]
    public async Task StartFhirServer()
    {
        Fhir = new FhirTestServer();
        await Fhir.StartAsync();
    }

    [OneTimeTearDown]
    public async Task StopFhirServer() => await Fhir.DisposeAsync();

    [SetUp]
    public async Task FreshWorld()
    {
        H = await WorkerHarness.CreateAsync(Fhir, provider);
        await PrepareAsync();
    }

    /// <summary>What every test of the fixture starts from, after the fresh world is made (nothing by default).</summary>
    protected virtual Task PrepareAsync() => Task.CompletedTask;

    [TearDown]
    public async Task StopService() => await H.DisposeAsync();

    /// <summary>See <see cref="FhirTestServer.FaultAsync"/>.</summary>
    protected Task InjectAsync(int status, int count, string method, string path, int delayMs = 0, string? retryAfter = null) =>
        Fhir.FaultAsync(status, count, method, path, delayMs, retryAfter);
}
