using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MagCds.LoadTools;

/// <summary>
/// The inputs of the CDS Hooks load test, shared by the load scripts (through Program) and the benchmarks, so both
/// measure the same call: a test EHR's signing key (ES384 or RS384), its JWTs, and a patient-view call with 20 prefetched results.
/// </summary>
public static class LoadInputs
{
    public const string Issuer = "https://load-test-ehr.example";
    public const string PatientId = "load-patient";

    /// <summary>
    /// A new signing key of the test EHR for <paramref name="algorithm"/>, one of the two CDS Hooks allows: ES384 (a P-384
    /// key) or RS384 (a 2048-bit RSA key, as Epic signs). Their signature checks differ in cost by a factor of about 30.
    /// </summary>
    public static AsymmetricSecurityKey NewEhrKey(string algorithm = SecurityAlgorithms.EcdsaSha384) => algorithm switch
    {
        SecurityAlgorithms.EcdsaSha384 => new ECDsaSecurityKey(ECDsa.Create(ECCurve.NamedCurves.nistP384)) { KeyId = "load-test-key" },
        SecurityAlgorithms.RsaSha384 => new RsaSecurityKey(RSA.Create(2048)) { KeyId = "load-test-key" },
        _ => throw new ArgumentException($"CDS Hooks JWTs are signed with ES384 or RS384, not {algorithm}.", nameof(algorithm)),
    };

    /// <summary>The public half of <paramref name="key"/> as the JWKS an EHR publishes.</summary>
    public static string Jwks(AsymmetricSecurityKey key)
    {
        var jwk = JsonWebKeyConverter.ConvertFromSecurityKey(key);
        var entry = key is RsaSecurityKey
            ? new JsonObject { ["kty"] = "RSA", ["kid"] = jwk.Kid, ["use"] = "sig", ["n"] = jwk.N, ["e"] = jwk.E, ["alg"] = SecurityAlgorithms.RsaSha384 }
            : new JsonObject { ["kty"] = "EC", ["kid"] = jwk.Kid, ["use"] = "sig", ["crv"] = jwk.Crv, ["x"] = jwk.X, ["y"] = jwk.Y, ["alg"] = SecurityAlgorithms.EcdsaSha384 };
        return new JsonObject { ["keys"] = new JsonArray(entry) }.ToJsonString();
    }

    /// <summary>A CDS Hooks JWT as an EHR signs it: ES384 or RS384 by the key, the given audience, a unique jti.</summary>
    public static string Token(JsonWebTokenHandler handler, AsymmetricSecurityKey key, string audience, DateTime issuedAt, TimeSpan lifetime) =>
        handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = Issuer, Audience = audience, IssuedAt = issuedAt, NotBefore = issuedAt, Expires = issuedAt + lifetime,
            Claims = new Dictionary<string, object> { ["jti"] = Guid.NewGuid().ToString() },
            SigningCredentials = new SigningCredentials(key, key is RsaSecurityKey ? SecurityAlgorithms.RsaSha384 : SecurityAlgorithms.EcdsaSha384),
            TokenType = "JWT",
        });

    /// <summary>A patient-view call: 20 results of one patient over 20 months, newest first, falling titres (Bühlmann BTU).</summary>
    public static string PatientViewCall()
    {
        var bundle = new Bundle { Type = Bundle.BundleType.Searchset };
        for (int i = 0; i < 20; i++)
        {
            var when = new DateTimeOffset(2026, 3, 1, 9, 0, 0, TimeSpan.Zero).AddMonths(-i);
            bundle.Entry.Add(new Bundle.EntryComponent
            {
                FullUrl = $"https://ehr.example/fhir/Observation/load-{i}",
                Resource = new Observation
                {
                    Id = $"load-{i}",
                    Meta = new Meta { VersionId = "1" },
                    Identifier = [new Identifier("urn:oid:2.16.840.1.113883.19.5.99", $"LOAD-{i}")],
                    Status = ObservationStatus.Final,
                    Category = [new CodeableConcept("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")],
                    Code = new CodeableConcept("http://loinc.org", "39087-2", "Anti-MAG IgM"),
                    Subject = new ResourceReference("Patient/" + PatientId),
                    Effective = new FhirDateTime(when),
                    Issued = when.AddDays(1),
                    Value = new Quantity { Value = 20000 + 3000 * i, Unit = "BTU", System = "http://unitsofmeasure.org", Code = "[arb'U]" },
                },
            });
        }
        return new JsonObject
        {
            ["hook"] = "patient-view",
            ["hookInstance"] = "a3c1f1e2-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
            ["context"] = new JsonObject { ["userId"] = "Practitioner/load", ["patientId"] = PatientId },
            ["prefetch"] = new JsonObject { ["antiMagResults"] = JsonNode.Parse(bundle.ToJson()) },
        }.ToJsonString();
    }
}
