using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using MagCds.Service.CdsHooks;
using MagCds.Service.Storage;
using MagCds.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace MagCds.Tests.CdsHooks;

/// <summary>The examples of the CDS Hooks 2.0 specification (shared/docs/cds-hooks-2.0-checklist.md), used as fixtures.</summary>
public class SpecFixtureTests
{
    // Section "JWT Signing Algorithm › Example": the spec's ES384 token and the public JWKS that verifies it.
    private const string SpecToken = "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImV4YW1wbGUta2lkIiwiamt1IjoiaHR0cHM6Ly9maGlyLWVoci5leGFtcGxlLmNvbS9qd2tfdXJpIn0.eyJpc3MiOiJodHRwczovL2ZoaXItZWhyLmV4YW1wbGUuY29tLyIsImF1ZCI6Imh0dHBzOi8vY2RzLmV4YW1wbGUub3JnL2Nkcy1zZXJ2aWNlcy9zb21lLXNlcnZpY2UiLCJleHAiOjE0MjI1Njg4NjAsImlhdCI6MTMxMTI4MDk3MCwianRpIjoiZWUyMmIwMjEtZTFiNy00NjExLWJhNWItOGVlYzZhMzNhYzFlIiwidGVuYW50IjoiMmRkZDZjM2EtOGU5YS00NGM2LWEzMDUtNTIxMTFhZDMwMmEyIn0.d1WfLjGRKlcWB94l9do4cM8REXeYJLL6SGUBO8VHZhfM8mwKYP70EMxJ67War4TQblEpaQrp11wx5p7oPFm2ETYgCicS84vXWEIYTdjooZdooCSDf2L8-i4awdoUwiEb";
    private const string SpecJwks = """{"keys":[{"kty":"EC","use":"sig","crv":"P-384","kid":"example-kid","x":"46SDH7Znh821wblCBglA61sNE9ZrHYKKt3qRtRTmSXyOI_FIGBLWrWa0GPUkDCEk","y":"XMcRuuoGW7CXjQdy-F5i3FeBE0x9hPLdeFdSoDd3ELmx404tLX0VRRcqzAsPhXcI","alg":"ES384"}]}""";

    private static Dictionary<string, string?> SpecIssuer(string jwksPath) => new()
    {
        ["MagCds:CdsHooks:PublicBaseUrl"] = "https://cds.example.org",
        ["MagCds:CdsHooks:TrustedIssuers:0:Issuer"] = "https://fhir-ehr.example.com/",
        ["MagCds:CdsHooks:TrustedIssuers:0:AllowedJku:0"] = "https://fhir-ehr.example.com/jwk_uri",
        ["MagCds:CdsHooks:TrustedIssuers:0:JwksFile"] = jwksPath,
    };

    [Test]
    public async Task The_spec_token_verifies_at_its_own_time_and_is_refused_as_expired_today()
    {
        string jwks = Path.Combine(Path.GetTempPath(), $"spec-jwks-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(jwks, SpecJwks);
        try
        {
            // Half an hour before its exp (2015-01-29T22:01:00Z) the token is valid: the call gets past the check and
            // meets the next rule, that there is no service "some-service" here (404, not 401).
            var then = new FixedClock(DateTimeOffset.FromUnixTimeSeconds(1422568860 - 1800));
            await using (var f = new MagCdsFactory(SpecIssuer(jwks), then))
            {
                var r = await f.CreateClient().SendAsync(CdsKit.Post("/cds-services/some-service", "{}", SpecToken));
                Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            }
            // Same time, but its jku is not allow-listed: refused.
            var noJku = SpecIssuer(jwks);
            noJku.Remove("MagCds:CdsHooks:TrustedIssuers:0:AllowedJku:0");
            await using (var f = new MagCdsFactory(noJku, then))
            {
                var r = await f.CreateClient().SendAsync(CdsKit.Post("/cds-services/some-service", "{}", SpecToken));
                Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            }
            // Today: expired.
            await using (var f = new MagCdsFactory(SpecIssuer(jwks)))
            {
                var r = await f.CreateClient().SendAsync(CdsKit.Post("/cds-services/some-service", "{}", SpecToken));
                Assert.That(r.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            }
        }
        finally { File.Delete(jwks); }
    }

    [Test]
    public void The_spec_card_response_example_satisfies_the_card_rules_the_tests_apply()
    {
        const string example = """
        { "cards": [
          { "uuid": "4e0a3a1e-3283-4575-ab82-028d55fe2719", "summary": "Example Card", "indicator": "info", "detail": "This is an example card.",
            "source": { "label": "Static CDS Service Example", "url": "https://example.com", "icon": "https://example.com/img/icon-100px.png" },
            "links": [ { "label": "Google", "url": "https://google.com", "type": "absolute" }, { "label": "Github", "url": "https://github.com", "type": "absolute" },
                       { "label": "SMART Example App", "url": "https://smart.example.com/launch", "type": "smart", "appContext": "{\"session\":3456356,\"settings\":{\"module\":4235}}" } ] },
          { "uuid": "9368d37b-283f-44a0-93ea-547cebab93ed", "summary": "Another card", "indicator": "warning", "source": { "label": "Static CDS Service Example" },
            "overrideReasons": [ { "code": "reason-code-provided-by-service", "system": "http://example.org/cds-services/fhir/CodeSystem/override-reasons", "display": "Patient refused" },
                                 { "code": "12354", "system": "http://example.org/cds-services/fhir/CodeSystem/override-reasons", "display": "Contraindicated" } ] } ] }
        """;
        Assert.That(CardRules.Violations(JsonDocument.Parse(example).RootElement), Is.Empty);
        // ...and the rules can fail: a null member, an over-long summary, a misspelt member and a relative source URL.
        string bad = example.Replace("\"detail\": \"This is an example card.\"", "\"detail\": null", StringComparison.Ordinal)
            .Replace("\"Another card\"", "\"" + new string('x', 150) + "\"", StringComparison.Ordinal)
            .Replace("\"overrideReasons\"", "\"overrideReason\"", StringComparison.Ordinal)
            .Replace("\"url\": \"https://example.com\", \"icon\"", "\"url\": \"/cds\", \"icon\"", StringComparison.Ordinal);
        Assert.That(CardRules.Violations(JsonDocument.Parse(bad).RootElement), Is.EquivalentTo(new[]
        {
            "null at $.cards[0].detail", "summary length 150", "card member 'overrideReason' is not a CDS Hooks 2.0 member", "source.url not absolute",
        }));
    }

    [Test]
    public async Task The_spec_feedback_examples_are_accepted_and_stored_once_even_when_sent_twice()
    {
        await using var f = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true" });
        var client = f.CreateClient();
        const string accepted = """{ "feedback": [ { "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719", "outcome": "accepted", "acceptedSuggestions": [ { "id": "e56e1945-20b3-4393-8503-a1a20fd73152" } ], "outcomeTimestamp": "2021-12-11T10:05:31Z" } ] }""";
        const string overridden = """{ "feedback": [ { "card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "overridden", "overrideReason": { "reason": { "code": "d7ecf885", "system": "https://example.com/cds-hooks/override-reason-system" }, "userComment": "A comment entered by the clinician." }, "outcomeTimestamp": "2020-12-11T00:00:00Z" } ] }""";
        foreach (var body in new[] { accepted, overridden, accepted })
        {
            var resp = await client.SendAsync(CdsKit.Post("/cds-services/magcds-patient-view/feedback", body, null));
            Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
        var counts = await f.Services.GetRequiredService<FeedbackStore>().CountsAsync(CancellationToken.None);
        Assert.That(counts.Select(c => (c.Outcome, c.OverrideCode, c.Count)),
            Is.EquivalentTo(new[] { ("accepted", (string?)null, 1L), ("overridden", "d7ecf885", 1L) }));
    }

    // Section "Calling a CDS Service › Example", verbatim.
    private const string SpecRequest = """
    { "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "fhirServer": "http://hooks.smarthealthit.org:9080", "hook": "patient-view",
      "fhirAuthorization": { "access_token": "some-opaque-fhir-access-token", "token_type": "Bearer", "expires_in": 300, "scope": "user/Patient.read user/Observation.read", "subject": "cds-service4" },
      "context": { "userId": "Practitioner/example", "patientId": "1288992", "encounterId": "89284" },
      "prefetch": { "patientToGreet": { "resourceType": "Patient", "gender": "male", "birthDate": "1925-12-23", "id": "1288992", "active": true } } }
    """;

    [Test]
    public async Task The_spec_request_example_is_refused_for_its_plain_http_fhirServer_in_the_secure_default()
    {
        const string example = SpecRequest;
        await using var f = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true" });
        var resp = await f.CreateClient().SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", example, null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        string text = await resp.Content.ReadAsStringAsync();
        Assert.That(text, Does.Contain("https").And.Not.Contain("some-opaque-fhir-access-token"));
    }

    // Section "Discovery › Example", verbatim.
    private const string SpecDiscovery = """
    { "services": [
        { "hook": "patient-view", "title": "Static CDS Service Example", "description": "An example of a CDS Service that returns a static set of cards",
          "id": "static-patient-greeter", "prefetch": { "patientToGreet": "Patient/{{context.patientId}}" } },
        { "hook": "order-select", "title": "Order Echo CDS Service", "description": "An example of a CDS Service that simply echoes the order(s) being placed",
          "id": "order-echo", "prefetch": { "patient": "Patient/{{context.patientId}}", "medications": "MedicationRequest?patient={{context.patientId}}" } },
        { "hook": "order-sign", "title": "Pharmacogenomics CDS Service", "description": "An example of a more advanced, precision medicine CDS Service",
          "id": "pgx-on-order-sign", "usageRequirements": "Note: functionality of this CDS Service is degraded without access to a FHIR Restful API as part of CDS recommendation generation." } ] }
    """;

    [Test]
    public async Task Discovery_is_written_as_the_spec_example_is()
    {
        // The spec's discovery document read into MagCds's model and written back is the same JSON: no member renamed,
        // lost, or added as null (its third service has no prefetch, its first no usageRequirements).
        var model = JsonSerializer.Deserialize<DiscoveryResponse>(SpecDiscovery, CdsJson.Options)!;
        Assert.That(JsonNode.DeepEquals(JsonSerializer.SerializeToNode(model, CdsJson.Options), JsonNode.Parse(SpecDiscovery)), Is.True,
            JsonSerializer.Serialize(model, CdsJson.Options));

        // MagCds's own discovery uses only members the example uses, with the same JSON types.
        await using var f = new MagCdsFactory();
        var ours = JsonNode.Parse(await f.CreateClient().GetStringAsync("/cds-services"))!.AsObject();
        Assert.That(ours.Select(m => m.Key), Is.EqualTo(new[] { "services" }));
        var specMembers = JsonNode.Parse(SpecDiscovery)!["services"]!.AsArray().SelectMany(x => x!.AsObject().Select(m => m.Key)).ToHashSet();
        foreach (var service in ours["services"]!.AsArray().Select(x => x!.AsObject()))
        {
            Assert.That(service.Select(m => m.Key), Is.SubsetOf(specMembers));
            Assert.That(new[] { "hook", "description", "id" }.All(service.ContainsKey), Is.True, "the members the spec requires");
            Assert.That(service.Where(m => m.Key != "prefetch").Select(m => m.Value!.GetValueKind()), Is.All.EqualTo(JsonValueKind.String));
            Assert.That(service["prefetch"]!.AsObject().Select(m => m.Value!.GetValueKind()), Is.All.EqualTo(JsonValueKind.String));
        }
    }

    /// <summary>
    /// The spec's request example as a production EHR would send it (its fhirServer on https) and with MagCds's own
    /// prefetch key added: its other members (fhirAuthorization's expires_in, scope and subject, context.encounterId,
    /// the prefetch key MagCds does not ask for) are accepted and ignored, and no query is made for what was prefetched.
    /// The fhirServer is a closed port on this machine, not the spec's host: a query would fail (412), never leave it.
    /// </summary>
    [TestCase(true)]
    [TestCase(false)]
    public async Task The_spec_request_example_with_MagCds_prefetch_is_answered(bool raisedResultOnFile)
    {
        var body = JsonNode.Parse(SpecRequest)!.AsObject();
        body["fhirServer"] = "https://127.0.0.1:9/fhir";
        var result = TestFiles.Resource<Hl7.Fhir.Model.Observation>("Observation-btu-medium.json");
        result.Subject = new Hl7.Fhir.Model.ResourceReference("Patient/1288992");
        // A raised result, or null: "the EHR searched and found nothing".
        body["prefetch"]!["antiMagResults"] = raisedResultOnFile
            ? JsonNode.Parse(JsonNode.Parse(CdsKit.PatientView("1288992", [result]))!["prefetch"]!["antiMagResults"]!.ToJsonString())
            : null;
        await using var f = new MagCdsFactory(new Dictionary<string, string?> { ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true" });
        var resp = await f.CreateClient().SendAsync(CdsKit.Post("/cds-services/magcds-patient-view", body.ToJsonString(), null));
        string text = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), text);
        var cards = JsonDocument.Parse(text).RootElement.GetProperty("cards");
        Assert.That(CardRules.Violations(JsonDocument.Parse(text).RootElement), Is.Empty);
        Assert.That(cards.GetArrayLength(), Is.EqualTo(raisedResultOnFile ? 1 : 0));
        if (raisedResultOnFile) Assert.That(cards[0].GetProperty("indicator").GetString(), Is.EqualTo("warning"));
        Assert.That(text, Does.Not.Contain("some-opaque-fhir-access-token"));
    }
}
