namespace MagCds.Tests.Support;

/// <summary>
/// A fixture with MagCds in-process and a real FHIR test server beside it (the CDS Hooks fallback queries): both
/// started once before the fixture's own set-up, stopped after it, and the service's logs and outputs checked after
/// each test.
/// </summary>
public abstract class ServiceWithFhirServer
{
    protected FhirTestServer Fhir { get; private set; } = null!;
    protected MagCdsFactory Service { get; private set; } = null!;
    protected HttpClient Client { get; private set; } = null!;

    protected abstract Dictionary<string, string?> Settings { get; }

    /// <summary>The bearer token the FHIR server demands, if any.</summary>
    protected virtual string? RequiredToken => null;

    [OneTimeSetUp]
    public async Task StartBoth()
    {
        Fhir = new FhirTestServer(requiredToken: RequiredToken);
        await Fhir.StartAsync();
        Service = new MagCdsFactory(Settings);
        Client = Service.CreateClient();
    }

    [TearDown]
    public void ServiceStayedClean() => Service.AssertClean();

    [OneTimeTearDown]
    public async Task StopBoth()
    {
        Client.Dispose();
        await Service.DisposeAsync();
        await Fhir.DisposeAsync();
    }
}
