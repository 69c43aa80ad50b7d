using System.Net;
using System.Net.Http.Headers;
using Hl7.Fhir.Model;
using MagCds.Tests.Support;

namespace MagCds.Tests.FhirRest;

/// <summary>
/// Characters FHIR strings may not hold (controls but tab, CR and LF; U+FFFE, U+FFFF), which a JSON body can carry as
/// escapes and XML cannot write at all: refused at the door (a Bundle entry as a bad entry), so that no answer fails
/// half-written in XML; and error answers that never quote the caller's text, whatever it holds.
/// </summary>
public sealed class ControlCharacterTests : ServiceTests
{
    private const string Observation = """
        {"resourceType":"Observation","id":"cc-{0}","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"39087-2"}]},
         "subject":{"reference":"Patient/pat-cc"},"effectiveDateTime":"2026-03-02T09:15:00Z","valueQuantity":{"value":25000,"unit":"{1}"}}
        """;

    private static string Obs(string id, string unit) => Observation.Replace("{0}", id).Replace("{1}", unit);

    private async Task<HttpResponseMessage> PostAsync(string json, string accept)
    {
        using var req = new HttpRequestMessage(HttpMethod.Post, Http.Evaluate) { Content = Http.Raw(json, "application/fhir+json") };
        req.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(accept));
        return await Client.SendAsync(req);
    }

    [TestCase(@"BT\u0001U")]
    [TestCase(@"BT\bU")]
    [TestCase(@"BT\u001fU")]
    [TestCase(@"BT\uFFFEU")]
    public async Task An_Observation_holding_one_is_refused_with_400_in_either_format(string unit)
    {
        foreach (string accept in new[] { "application/fhir+xml", "application/fhir+json" })
        {
            using var resp = await PostAsync(Obs("one", unit), accept);
            Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), accept);
            Assert.That(resp.Content.Headers.ContentType?.MediaType, Is.EqualTo(accept));
            var oo = (OperationOutcome)await Http.ReadAsync(resp);
            Assert.That(Http.Codes(oo), Is.EqualTo(new[] { "unparseable" }));
            Assert.That(oo.Issue[0].Details?.Text, Does.Contain("control character").And.Contain("line 2"));
        }
    }

    [Test]
    public async Task Tab_CR_and_LF_are_allowed()
    {
        using var resp = await PostAsync(Obs("ok", @"BTU\t"), "application/fhir+xml");
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task A_Bundle_entry_holding_one_is_a_bad_entry_and_the_others_are_answered_in_XML()
    {
        string bundle = $$"""{"resourceType":"Bundle","type":"collection","entry":[{"resource":{{Obs("good", "BTU")}}},{"resource":{{Obs("bad", @"BT\u0001U")}}}]}""";
        using var resp = await PostAsync(bundle, "application/fhir+xml");
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var answer = (Parameters)await Http.ReadAsync(resp);
        Assert.That(answer.Parameter.Select(p => p.Resource).OfType<RiskAssessment>().Select(r => r.Basis[0].Reference), Is.EqualTo(new[] { "Observation/cc-good" }));
        var outcome = answer.Parameter.Select(p => p.Resource).OfType<OperationOutcome>().Single();
        var bad = outcome.Issue.Single(i => i.Details != null && i.Details.Coding.Any(c => c.Code == "unparseable-entry"));
        Assert.That(bad.Expression.Single(), Does.Contain("entry[1]"));
    }

    [Test]
    public async Task One_in_the_Bundle_itself_refuses_the_body()
    {
        string bundle = $$"""{"resourceType":"Bundle","type":"collection","identifier":{"value":"B\u0002"},"entry":[{"resource":{{Obs("good", "BTU")}}}]}""";
        using var resp = await PostAsync(bundle, "application/fhir+xml");
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
    }

    [Test]
    public async Task An_unknown_parameter_name_is_not_quoted_even_with_a_control_character_in_it()
    {
        const string name = @"Zyxwv Qwerty MRN 4455\u0001";
        using var resp = await PostAsync($$"""{"resourceType":"Parameters","parameter":[{"name":"{{name}}","valueString":"x"}]}""", "application/fhir+xml");
        string text = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), text);
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Is.EqualTo(new[] { "unparseable" }), "the body itself holds the character");
        Assert.That(text, Does.Not.Contain("Zyxwv"));

        using var plain = await PostAsync("""{"resourceType":"Parameters","parameter":[{"name":"Zyxwv Qwerty","valueString":"x"}]}""", "application/fhir+xml");
        string plainText = await plain.Content.ReadAsStringAsync();
        Assert.That(plain.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(plain)), Is.EqualTo(new[] { "invalid-parameters" }));
        Assert.That(plainText, Does.Not.Contain("Zyxwv"));
        Assert.That(Factory.Logs.Lines, Has.None.Contains("Zyxwv"));
    }

    [TestCase("/fhir/StructureDefinition/Zyxwv-MRN-7788%01?_format=xml")]
    [TestCase("/fhir/OperationDefinition/Zyxwv%01b?_format=xml")]
    public async Task A_read_of_an_unknown_id_answers_404_in_XML_without_quoting_it(string path)
    {
        using var resp = await Client.GetAsync(path);
        string text = await resp.Content.ReadAsStringAsync();
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.NotFound), text);
        Assert.That(resp.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/fhir+xml"));
        Assert.That(resp.Headers.Contains("X-Request-Id"), Is.True);
        Assert.That(Http.Codes((OperationOutcome)await Http.ReadAsync(resp)), Is.EqualTo(new[] { "not-found" }));
        Assert.That(text, Does.Not.Contain("Zyxwv"));
        Assert.That(Factory.Logs.Lines, Has.None.Contains("Zyxwv"));
    }

    [Test]
    public void Printable_replaces_what_XML_cannot_write_and_keeps_the_rest()
    {
        Assert.That(MagCds.Service.FhirRest.Outcomes.Printable("a\u0001b\tc\uFFFEd\uD800e µ 😀"), Is.EqualTo("a\uFFFDb\tc\uFFFDd\uFFFDe µ 😀"));
        const string clean = "nothing to replace";
        Assert.That(MagCds.Service.FhirRest.Outcomes.Printable(clean), Is.SameAs(clean));
    }
}
