using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace MagCds.Tests.Support;

/// <summary>
/// What a test EHR needs: signing keys generated in the test (ES384 and RS384) published as a JWKS file, tokens
/// minted with Microsoft.IdentityModel, and hook request bodies.
/// </summary>
public sealed class CdsKit : IDisposable
{
    public const string Issuer = "https://ehr.test.example";
    public const string Base = "http://localhost";

    public ECDsa Ec { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP384);
    public RSA Rsa { get; } = RSA.Create(2048);
    public string JwksPath { get; } = Path.Combine(Path.GetTempPath(), $"magcds-jwks-{Guid.NewGuid():N}.json");
    public SecurityKey EcKey { get; }
    public SecurityKey RsaKey { get; }

    public CdsKit()
    {
        EcKey = new ECDsaSecurityKey(Ec) { KeyId = "ec-key" };
        RsaKey = new RsaSecurityKey(Rsa) { KeyId = "rsa-key" };
        File.WriteAllText(JwksPath, Jwks(EcKey, RsaKey));
    }

    public static string Jwks(params SecurityKey[] keys)
    {
        var arr = new JsonArray();
        foreach (var k in keys)
        {
            var jwk = JsonWebKeyConverter.ConvertFromSecurityKey(k);
            var o = new JsonObject { ["kty"] = jwk.Kty, ["kid"] = jwk.Kid, ["use"] = "sig" };
            if (jwk.Kty == "EC") { o["crv"] = jwk.Crv; o["x"] = jwk.X; o["y"] = jwk.Y; o["alg"] = "ES384"; }
            else { o["n"] = jwk.N; o["e"] = jwk.E; o["alg"] = "RS384"; }
            arr.Add(o);
        }
        return new JsonObject { ["keys"] = arr }.ToJsonString();
    }

    /// <summary>Settings that trust this kit's issuer through its JWKS file.</summary>
    public Dictionary<string, string?> TrustSettings(string? jku = null) => new()
    {
        ["MagCds:CdsHooks:PublicBaseUrl"] = Base,
        ["MagCds:CdsHooks:TrustedIssuers:0:Issuer"] = Issuer,
        ["MagCds:CdsHooks:TrustedIssuers:0:JwksFile"] = JwksPath,
        ["MagCds:CdsHooks:TrustedIssuers:0:AllowedJku:0"] = jku,
        ["MagCds:CdsHooks:AllowInsecureFhirServer"] = "true",
    };

    /// <summary>
    /// A token as the CDS Hooks spec's example has it: iss, aud, iat, exp and jti, and no nbf (so a check of iat is not
    /// stood in for by the nbf check); <paramref name="notBefore"/> adds one.
    /// </summary>
    public string Token(string audience, SecurityKey? key = null, string alg = SecurityAlgorithms.EcdsaSha384, string issuer = Issuer,
        DateTime? issued = null, DateTime? expires = null, string? jti = null, IDictionary<string, object>? header = null, DateTime? notBefore = null)
    {
        var now = DateTime.UtcNow;
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            IssuedAt = issued ?? now,
            NotBefore = notBefore,
            Expires = expires ?? now.AddMinutes(5),
            Claims = new Dictionary<string, object> { ["jti"] = jti ?? Guid.NewGuid().ToString() },
            SigningCredentials = new SigningCredentials(key ?? EcKey, alg),
            AdditionalHeaderClaims = header,
            TokenType = "JWT",
        };
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(descriptor);
    }

    /// <summary>An unsigned token (alg none), which must always be refused.</summary>
    public static string UnsignedToken(string audience)
    {
        static string B64(string s) => Base64UrlEncoder.Encode(Encoding.UTF8.GetBytes(s));
        long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return B64("{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"ec-key\"}") + "." +
               B64($"{{\"iss\":\"{Issuer}\",\"aud\":\"{audience}\",\"iat\":{now},\"exp\":{now + 300},\"jti\":\"{Guid.NewGuid()}\"}}") + ".";
    }

    /// <summary>
    /// A token with exactly this header JSON, signed ES384 with <see cref="Ec"/> (JWS compact form, raw r||s signature):
    /// for headers the token handler would not write, such as one without typ.
    /// </summary>
    public string TokenWithHeader(string audience, string headerJson)
    {
        long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return SignedByHand(headerJson, $"{{\"iss\":\"{Issuer}\",\"aud\":\"{audience}\",\"iat\":{now},\"exp\":{now + 300},\"jti\":\"{Guid.NewGuid()}\"}}");
    }

    /// <summary>
    /// A token with this payload JSON and the usual header (ES384, typ JWT, kid ec-key), signed with <see cref="Ec"/>:
    /// for payloads the token handler would not write, such as one without iat.
    /// </summary>
    public string TokenWithPayload(string payloadJson) => SignedByHand("{\"alg\":\"ES384\",\"typ\":\"JWT\",\"kid\":\"ec-key\"}", payloadJson);

    /// <summary>The payload of a valid token for <paramref name="audience"/> issued now, less the claims named.</summary>
    public static string PayloadWithout(string audience, params string[] omitted)
    {
        long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        var claims = new JsonObject { ["iss"] = Issuer, ["aud"] = audience, ["iat"] = now, ["exp"] = now + 300, ["jti"] = Guid.NewGuid().ToString() };
        foreach (var name in omitted) if (!claims.Remove(name)) throw new ArgumentException($"no claim {name}");
        return claims.ToJsonString();
    }

    /// <summary>JWS compact form with a raw r||s ES384 signature by <see cref="Ec"/>.</summary>
    private string SignedByHand(string headerJson, string payloadJson)
    {
        static string B64(byte[] b) => Base64UrlEncoder.Encode(b);
        string input = B64(Encoding.UTF8.GetBytes(headerJson)) + "." + B64(Encoding.UTF8.GetBytes(payloadJson));
        byte[] signature = Ec.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA384, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return input + "." + B64(signature);
    }

    public static HttpRequestMessage Post(string path, string body, string? token)
    {
        var req = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (token is not null) req.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
        return req;
    }

    /// <summary>A patient-view request whose prefetch holds these Observations (a searchset Bundle), or no key when null.</summary>
    public static string PatientView(string patientId, IEnumerable<Resource>? results, string? fhirServer = null, string? accessToken = null,
        bool includeResultsKey = true, JsonNode? resultsSlot = null)
    {
        var body = new JsonObject
        {
            ["hook"] = "patient-view",
            ["hookInstance"] = "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            ["context"] = new JsonObject { ["userId"] = "Practitioner/example", ["patientId"] = patientId },
        };
        if (fhirServer is not null) body["fhirServer"] = fhirServer;
        if (accessToken is not null)
            body["fhirAuthorization"] = new JsonObject
            {
                ["access_token"] = accessToken, ["token_type"] = "Bearer", ["expires_in"] = 300,
                ["scope"] = "user/Patient.read user/Observation.read", ["subject"] = "magcds",
            };
        var prefetch = new JsonObject();
        if (includeResultsKey)
            prefetch["antiMagResults"] = resultsSlot ?? (results is null ? null : JsonNode.Parse(Searchset(results).ToJson()));
        body["prefetch"] = prefetch;
        return body.ToJsonString();
    }

    public static Bundle Searchset(IEnumerable<Resource> resources) => new()
    {
        Type = Bundle.BundleType.Searchset,
        Entry = resources.Select(r => new Bundle.EntryComponent { Resource = r, FullUrl = $"http://ehr.test.example/fhir/{r.TypeName}/{r.Id}" }).ToList(),
    };

    /// <summary>An order hook request with one draft ServiceRequest of the given code.</summary>
    public static string OrderHook(string hook, string patientId, Coding orderCode, bool selected, IEnumerable<Resource>? results)
    {
        var sr = new ServiceRequest
        {
            Id = "draft-1", Status = RequestStatus.Draft, Intent = RequestIntent.Order,
            Code = new CodeableConcept { Coding = [orderCode] }, Subject = new ResourceReference("Patient/" + patientId),
        };
        var draft = new Bundle { Type = Bundle.BundleType.Collection, Entry = [new Bundle.EntryComponent { Resource = sr }] };
        var ctx = new JsonObject { ["userId"] = "Practitioner/example", ["patientId"] = patientId, ["draftOrders"] = JsonNode.Parse(draft.ToJson()) };
        if (hook == "order-select") ctx["selections"] = new JsonArray(selected ? "ServiceRequest/draft-1" : "ServiceRequest/other");
        var body = new JsonObject
        {
            ["hook"] = hook, ["hookInstance"] = "0f0e3cd8-8b50-4f0f-9d85-3a0e1b8c7d11", ["context"] = ctx,
            ["prefetch"] = new JsonObject { ["antiMagResults"] = results is null ? null : JsonNode.Parse(Searchset(results).ToJson()) },
        };
        return body.ToJsonString();
    }

    public void Dispose()
    {
        Ec.Dispose();
        Rsa.Dispose();
        File.Delete(JwksPath);
    }
}

/// <summary>The card rules of CDS Hooks 2.0 that a response must satisfy, checked on the raw JSON.</summary>
public static class CardRules
{
    // The members CDS Hooks 2.0 defines for a response, a card and its parts: a misspelt member ("overrideReason")
    // would be ignored by an EHR without a word.
    private static readonly string[] ResponseMembers = ["cards", "systemActions"];
    private static readonly string[] CardMembers = ["uuid", "summary", "detail", "indicator", "source", "suggestions", "selectionBehavior", "overrideReasons", "links", "extension"];
    private static readonly string[] SourceMembers = ["label", "url", "icon", "topic"];
    private static readonly string[] SuggestionMembers = ["label", "uuid", "isRecommended", "actions"];
    private static readonly string[] ActionMembers = ["type", "description", "resource", "resourceId"];
    private static readonly string[] LinkMembers = ["label", "url", "type", "appContext"];

    private static void OnlyMembers(JsonElement o, string[] allowed, string what, List<string> v)
    {
        foreach (var m in o.EnumerateObject()) if (!allowed.Contains(m.Name)) v.Add($"{what} member '{m.Name}' is not a CDS Hooks 2.0 member");
    }

    public static IReadOnlyList<string> Violations(JsonElement response)
    {
        var v = new List<string>();
        NoNullOrEmpty(response, "$", v);
        if (!response.TryGetProperty("cards", out var cards) || cards.ValueKind != JsonValueKind.Array) { v.Add("cards array missing"); return v; }
        OnlyMembers(response, ResponseMembers, "response", v);
        foreach (var c in cards.EnumerateArray())
        {
            OnlyMembers(c, CardMembers, "card", v);
            if (c.TryGetProperty("source", out var source))
            {
                OnlyMembers(source, SourceMembers, "source", v);
                if (source.TryGetProperty("url", out var su) && !Uri.IsWellFormedUriString(su.GetString(), UriKind.Absolute)) v.Add("source.url not absolute");
            }
            string summary = c.TryGetProperty("summary", out var s) ? s.GetString() ?? "" : "";
            if (summary.Length is 0 or >= 140) v.Add($"summary length {summary.Length}");
            if (!c.TryGetProperty("uuid", out var u) || !Guid.TryParse(u.GetString(), out _)) v.Add("card uuid");
            if (!c.TryGetProperty("indicator", out var ind) || ind.GetString() is not ("info" or "warning" or "critical")) v.Add("indicator");
            if (!c.TryGetProperty("source", out var src) || !src.TryGetProperty("label", out _)) v.Add("source.label");
            if (c.TryGetProperty("suggestions", out var sugg))
            {
                if (!c.TryGetProperty("selectionBehavior", out var sb) || sb.GetString() is not ("at-most-one" or "any")) v.Add("selectionBehavior missing with suggestions");
                foreach (var sg in sugg.EnumerateArray())
                {
                    OnlyMembers(sg, SuggestionMembers, "suggestion", v);
                    if (!sg.TryGetProperty("label", out _)) v.Add("suggestion label");
                    if (!sg.TryGetProperty("uuid", out var su) || !Guid.TryParse(su.GetString(), out _)) v.Add("suggestion uuid");
                    foreach (var a in sg.TryGetProperty("actions", out var acts) ? acts.EnumerateArray() : default)
                    {
                        OnlyMembers(a, ActionMembers, "action", v);
                        if (a.GetProperty("type").GetString() is not ("create" or "update" or "delete")) v.Add("action type");
                        if (!a.TryGetProperty("description", out _)) v.Add("action description");
                        if (a.GetProperty("type").GetString() == "create" && (!a.TryGetProperty("resource", out var r) || r.ValueKind != JsonValueKind.Object)) v.Add("create without resource object");
                    }
                }
            }
            if (c.TryGetProperty("overrideReasons", out var ors))
                foreach (var o in ors.EnumerateArray())
                    if (!o.TryGetProperty("display", out _) || !o.TryGetProperty("code", out _) || !o.TryGetProperty("system", out _)) v.Add("overrideReason needs code, system, display");
            if (c.TryGetProperty("links", out var links))
                foreach (var l in links.EnumerateArray())
                {
                    OnlyMembers(l, LinkMembers, "link", v);
                    if (l.GetProperty("type").GetString() is not ("absolute" or "smart")) v.Add("link type");
                    if (!l.TryGetProperty("label", out _) || !Uri.IsWellFormedUriString(l.GetProperty("url").GetString(), UriKind.Absolute)) v.Add("link label/url");
                }
        }
        return v;
    }

    /// <summary>CDS Hooks: no JSON element may be null or empty, except the top-level cards array.</summary>
    private static void NoNullOrEmpty(JsonElement e, string path, List<string> v)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Null: v.Add($"null at {path}"); break;
            case JsonValueKind.String when e.GetString()!.Length == 0: v.Add($"empty string at {path}"); break;
            case JsonValueKind.Object:
                if (!e.EnumerateObject().Any()) v.Add($"empty object at {path}");
                foreach (var p in e.EnumerateObject()) NoNullOrEmpty(p.Value, path + "." + p.Name, v);
                break;
            case JsonValueKind.Array:
                if (e.GetArrayLength() == 0 && path != "$.cards") v.Add($"empty array at {path}");
                int i = 0;
                foreach (var x in e.EnumerateArray()) NoNullOrEmpty(x, $"{path}[{i++}]", v);
                break;
        }
    }

    /// <summary>
    /// The card's source names the knowledge version and points at the knowledge this service publishes (which must
    /// answer with that version); its links are the references the source document cites, as absolute URLs; its one
    /// suggestion is "Record this assessment".
    /// </summary>
    public static async Task AssertSourceLinksAndSuggestion(HttpClient client, JsonElement card)
    {
        var kb = CoreUnderTest.Knowledge;
        var source = card.GetProperty("source");
        Assert.That(source.GetProperty("label").GetString(), Is.EqualTo($"MagCds, knowledge {kb.Version}"));
        string url = source.GetProperty("url").GetString()!;
        Assert.That(url, Is.EqualTo("http://localhost/knowledge"));
        using (var published = JsonDocument.Parse(await client.GetStringAsync(url)))
            Assert.That(published.RootElement.GetProperty("version").GetString(), Is.EqualTo(kb.Version), "the source URL serves the knowledge the card was made with");

        var links = card.GetProperty("links").EnumerateArray()
            .Select(l => (l.GetProperty("label").GetString(), l.GetProperty("url").GetString(), l.GetProperty("type").GetString())).ToList();
        var cited = kb.SourceReferences.Select(kb.Citation).Select(x => ((string?)x.Label, (string?)x.Url, (string?)"absolute")).ToList();
        Assert.That(cited.Select(x => (x.Item1, x.Item2)), Is.EqualTo(new[]
        {
            ("Svahn 2018", "https://doi.org/10.1136/jnnp-2017-316715"), ("Quarles 2007", "https://pubmed.ncbi.nlm.nih.gov/17241126/"),
        }), "the two references the source document cites");
        Assert.That(links, Is.EqualTo(cited));
        Assert.That(links.Select(l => Uri.TryCreate(l.Item2, UriKind.Absolute, out var u) && u.Scheme == "https"), Is.All.True);

        var suggestion = card.GetProperty("suggestions").EnumerateArray().Single();
        Assert.That(suggestion.GetProperty("label").GetString(), Is.EqualTo("Record this assessment"));
    }
}
