using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

// Usage: MagCds.LoadTools <out-dir> <audience-url> <token-count>
// Writes, into out-dir: jwks.json (public ES384 key of a test EHR), tokens.txt (token-count JWTs with unique jti,
// valid for 30 minutes, one per line) and patient-view.json (a patient-view call with 20 prefetched Observations).
if (args.Length != 3) { Console.Error.WriteLine("usage: MagCds.LoadTools <out-dir> <audience-url> <token-count>"); return 2; }
string dir = args[0], audience = args[1];
int count = int.Parse(args[2], CultureInfo.InvariantCulture);
Directory.CreateDirectory(dir);
const string issuer = "https://load-test-ehr.example";

using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP384);
var key = new ECDsaSecurityKey(ec) { KeyId = "load-test-key" };
var jwk = JsonWebKeyConverter.ConvertFromSecurityKey(key);
File.WriteAllText(Path.Combine(dir, "jwks.json"), new JsonObject
{
    ["keys"] = new JsonArray(new JsonObject { ["kty"] = "EC", ["kid"] = jwk.Kid, ["use"] = "sig", ["crv"] = jwk.Crv, ["x"] = jwk.X, ["y"] = jwk.Y, ["alg"] = "ES384" }),
}.ToJsonString());
File.WriteAllText(Path.Combine(dir, "issuer.txt"), issuer);

var handler = new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false };
var now = DateTime.UtcNow;
var credentials = new SigningCredentials(key, SecurityAlgorithms.EcdsaSha384);
using (var w = new StreamWriter(Path.Combine(dir, "tokens.txt")))
{
    for (int i = 0; i < count; i++)
    {
        w.WriteLine(handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer, Audience = audience, IssuedAt = now, NotBefore = now, Expires = now.AddMinutes(30),
            Claims = new Dictionary<string, object> { ["jti"] = Guid.NewGuid().ToString() },
            SigningCredentials = credentials, TokenType = "JWT",
        }));
    }
}

// 20 results of one patient over 20 months, newest first, falling titres (Buhlmann BTU).
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
            Subject = new ResourceReference("Patient/load-patient"),
            Effective = new FhirDateTime(when),
            Issued = when.AddDays(1),
            Value = new Quantity { Value = 20000 + 3000 * i, Unit = "BTU", System = "http://unitsofmeasure.org", Code = "[arb'U]" },
        },
    });
}
var call = new JsonObject
{
    ["hook"] = "patient-view",
    ["hookInstance"] = "a3c1f1e2-5b6d-4e7f-8a9b-0c1d2e3f4a5b",
    ["context"] = new JsonObject { ["userId"] = "Practitioner/load", ["patientId"] = "load-patient" },
    ["prefetch"] = new JsonObject { ["antiMagResults"] = JsonNode.Parse(bundle.ToJson()) },
};
File.WriteAllText(Path.Combine(dir, "patient-view.json"), call.ToJsonString());
Console.WriteLine($"wrote {count} tokens, jwks.json and patient-view.json to {dir}");
return 0;
