namespace MagCds.Tests.Support;

/// <summary>Base of the test classes that talk to one in-memory service for the whole fixture.</summary>
public abstract class ServiceTests
{
    protected MagCdsFactory Factory { get; private set; } = null!;
    protected HttpClient Client { get; private set; } = null!;

    /// <summary>Settings for this fixture's service (configuration keys as in appsettings.json).</summary>
    protected virtual IReadOnlyDictionary<string, string?>? Settings => null;

    [OneTimeSetUp]
    public void StartService()
    {
        Factory = new MagCdsFactory(Settings);
        Client = Factory.CreateClient();
    }

    /// <summary>The shared service's outputs and logs are checked after each test, so a failure counts against that test.</summary>
    [TearDown]
    public void ServiceStayedClean() => Factory.AssertClean();

    [OneTimeTearDown]
    public void StopService()
    {
        Client.Dispose();
        Factory.Dispose();
    }

    /// <summary>Settings that let hook calls in without a JWT (the JWT itself is tested in JwtTests).</summary>
    protected static Dictionary<string, string?> Unsigned(params (string Key, string Value)[] more)
    {
        var d = new Dictionary<string, string?> { ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true" };
        foreach (var (k, v) in more) d[k] = v;
        return d;
    }
}
