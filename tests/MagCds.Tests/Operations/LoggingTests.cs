using Hl7.Fhir.Model;
using MagCds.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MagCds.Tests.Operations;

/// <summary>The log redaction policy.</summary>
public sealed class LoggingTests
{
    [Test]
    public void A_FHIR_resource_or_token_given_to_a_log_call_is_written_as_its_type_only()
    {
        using var f = new MagCdsFactory();
        var logger = f.Services.GetRequiredService<ILoggerFactory>().CreateLogger("careless");
        var obs = TestFiles.Resource<Observation>("Observation-btu-medium.json");
        var token = new Microsoft.IdentityModel.JsonWebTokens.JsonWebToken(CdsKit.UnsignedToken("https://magcds.example/cds-services/x"));
#pragma warning disable CA2254 // the point is a careless call
        logger.LogWarning("Got {@Observation} and {Plain} with {Token}", obs, obs, token);
#pragma warning restore CA2254
        var line = f.Logs.Lines.Single(l => l.Contains("careless", StringComparison.Ordinal));
        Assert.That(line, Does.Contain("[Observation redacted]").And.Contain("[token redacted]"));
        Assert.That(line, Does.Not.Contain("pat-oakhaven").And.Not.Contain("25000").And.Not.Contain("ACC-BTU-MEDIUM").And.Not.Contain("eyJ"));
    }

    [Test]
    public async Task Request_lines_name_the_route_never_the_path_or_query()
    {
        using var f = new MagCdsFactory();
        using var client = f.CreateClient();
        using (var r = await client.GetAsync("/fhir/Patient/pat-oakhaven?identifier=MRN-77231904")) Assert.That((int)r.StatusCode, Is.EqualTo(404));
        using (var r = await client.GetAsync("/fhir/StructureDefinition/magcds-observation")) Assert.That((int)r.StatusCode, Is.EqualTo(200));
        var lines = f.Logs.Lines;
        Assert.That(lines, Has.Some.Contains("\"RequestRoute\":\"/fhir/StructureDefinition/{id}\""));
        Assert.That(lines, Has.Some.Contains("\"RequestRoute\":\"(no route)\"").Or.Some.Contains("\"RequestRoute\":\"{*path"));
        Assert.That(lines, Has.None.Contains("pat-oakhaven").And.None.Contains("MRN-77231904").And.None.Contains("\"RequestPath\""));
    }

    [Test]
    public void The_suite_wide_check_fails_a_test_whose_service_logged_PHI()
    {
        // What every test's service is checked for (MagCdsFactory.AssertClean): a name written into a message by
        // string concatenation is not a property the redaction can see, so only the scan catches it.
        using var f = new MagCdsFactory();
        var logger = f.Services.GetRequiredService<ILoggerFactory>().CreateLogger("careless");
#pragma warning disable CA2254, CA1848 // the point is a careless call
        logger.LogWarning("Patient " + "Oakhaven" + " evaluated");
#pragma warning restore CA2254, CA1848
        var e = Assert.Throws<AssertionException>(f.AssertClean);
        Assert.That(e!.Message, Does.Contain("Oakhaven"));
        Assert.DoesNotThrow(f.AssertClean, "each line is reported once");
    }
}
