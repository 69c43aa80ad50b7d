using System.Globalization;
using MagCds.LoadTools;
using Microsoft.IdentityModel.JsonWebTokens;

// Usage: MagCds.LoadTools <out-dir> <audience-url> <token-count>
// Writes, into out-dir: jwks.json (public ES384 key of a test EHR), issuer.txt, tokens.txt (token-count JWTs with
// unique jti, valid for 30 minutes, one per line) and patient-view.json (a patient-view call with 20 prefetched
// Observations). The inputs themselves are built by LoadInputs, which the benchmarks use too.
if (args.Length != 3) { Console.Error.WriteLine("usage: MagCds.LoadTools <out-dir> <audience-url> <token-count>"); return 2; }
string dir = args[0], audience = args[1];
int count = int.Parse(args[2], CultureInfo.InvariantCulture);
Directory.CreateDirectory(dir);

var key = LoadInputs.NewEhrKey();
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
