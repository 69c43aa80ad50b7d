using System.Globalization;
using MagCds.LoadTools;
using Microsoft.IdentityModel.JsonWebTokens;

// Usage: MagCds.LoadTools <out-dir> <audience-url> <token-count> [ES384|RS384]
// Writes, into out-dir: jwks.json (public key of a test EHR; ES384 unless RS384 is asked for), issuer.txt, tokens.txt (token-count JWTs with
// unique jti, valid for 30 minutes, one per line) and patient-view.json (a patient-view call with 20 prefetched
// Observations). The inputs themselves are built by LoadInputs, which the benchmarks use too.
if (args.Length is not (3 or 4)) { Console.Error.WriteLine("usage: MagCds.LoadTools <out-dir> <audience-url> <token-count> [ES384|RS384]"); return 2; }
string dir = args[0], audience = args[1];
int count = int.Parse(args[2], CultureInfo.InvariantCulture);
Directory.CreateDirectory(dir);

var key = LoadInputs.NewEhrKey(args.Length == 4 ? args[3] : Microsoft.IdentityModel.Tokens.SecurityAlgorithms.EcdsaSha384);
File.WriteAllText(Path.Combine(dir, "jwks.json"), LoadInputs.Jwks(key));
File.WriteAllText(Path.Combine(dir, "issuer.txt"), LoadInputs.Issuer);

var handler = new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false };
var now = DateTime.UtcNow;
using (var w = new StreamWriter(Path.Combine(dir, "tokens.txt")))
{
    for (int i = 0; i < count; i++) w.WriteLine(LoadInputs.Token(handler, key, audience, now, TimeSpan.FromMinutes(30)));
}

File.WriteAllText(Path.Combine(dir, "patient-view.json"), LoadInputs.PatientViewCall());
Console.WriteLine($"wrote {count} tokens, jwks.json and patient-view.json to {dir}");
return 0;
