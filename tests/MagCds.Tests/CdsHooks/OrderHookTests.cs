using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Hl7.Fhir.Model;
using MagCds.Tests.Support;

namespace MagCds.Tests.CdsHooks;

public class OrderHookTests : ServiceTests
{
    protected override IReadOnlyDictionary<string, string?> Settings => Unsigned();

    private static readonly Coding AntiMag = new("http://loinc.org", "39087-2");
    private static readonly Coding Glucose = new("http://loinc.org", "15074-8");

    private async Task<JsonElement> Cards(string service, string body)
    {
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/" + service, body, null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.OK), await resp.Content.ReadAsStringAsync());
        var root = JsonDocument.Parse(await resp.Content.ReadAsStringAsync()).RootElement;
        Assert.That(CardRules.Violations(root), Is.Empty);
        return root.GetProperty("cards");
    }

    private static Resource[] History() => TestFiles.Resource<Parameters>("Parameters-history-falling.json").Parameter.Select(p => p.Resource!).ToArray();

    [TestCase("order-select", "magcds-order-select")]
    [TestCase("order-sign", "magcds-order-sign")]
    public async Task An_anti_MAG_order_gets_an_info_card_with_the_latest_result_its_trend_and_what_the_test_is_for(string hook, string service)
    {
        var cards = await Cards(service, CdsKit.OrderHook(hook, "pat-oakhaven", AntiMag, selected: true, History()));
        var card = cards.EnumerateArray().Single();
        Assert.Multiple(() =>
        {
            Assert.That(card.GetProperty("indicator").GetString(), Is.EqualTo("info"));
            Assert.That(card.GetProperty("summary").GetString(), Does.StartWith("Latest anti-MAG IgM 20000 BTU: raised"));
            string detail = card.GetProperty("detail").GetString()!;
            Assert.That(detail, Does.Contain("useful for diagnosis and for monitoring therapy"));
            Assert.That(detail, Does.Contain("| 2026-03-02 | 20000 BTU (this result) |"));
        });
        await CardRules.AssertSourceLinksAndSuggestion(Client, card);
    }

    [Test]
    public async Task An_order_with_no_earlier_result_says_so_and_what_the_test_is_for()
    {
        var card = (await Cards("magcds-order-sign", CdsKit.OrderHook("order-sign", "pat-oakhaven", AntiMag, true, null))).EnumerateArray().Single();
        Assert.That(card.GetProperty("summary").GetString(), Is.EqualTo("No earlier anti-MAG IgM result on file for this patient"));
        Assert.That(card.GetProperty("detail").GetString(), Does.Contain("monitoring therapy"));
        // It shows no interpretation or interval, so no reason to dismiss it disputes one (found by a black-box probe).
        Assert.That(card.GetProperty("overrideReasons").EnumerateArray().Select(r => r.GetProperty("code").GetString()), Is.EqualTo(new[] { "already-known", "not-relevant" }));
    }

    /// <summary>A result of status unknown is on file too: "none" could lead to a duplicate order (found by a probe).</summary>
    [TestCase("Observation-missing-value.json")]
    [TestCase("Observation-status-unknown.json")]
    public async Task An_order_whose_latest_result_cannot_be_evaluated_says_so_not_that_there_is_none(string file)
    {
        var latest = TestFiles.Resource<Observation>(file);
        var card = (await Cards("magcds-order-sign", CdsKit.OrderHook("order-sign", "pat-oakhaven", AntiMag, true, [latest]))).EnumerateArray().Single();
        Assert.That(card.GetProperty("summary").GetString(), Is.EqualTo("Latest anti-MAG IgM result on file could not be evaluated"));
        Assert.That(card.GetProperty("detail").GetString(), Does.Contain("could not be evaluated").And.Not.Contain("No earlier anti-MAG IgM result was found"));
    }

    [Test]
    public async Task An_anti_MAG_order_that_is_not_selected_gets_no_card() =>
        Assert.That((await Cards("magcds-order-select", CdsKit.OrderHook("order-select", "pat-oakhaven", AntiMag, selected: false, History()))).GetArrayLength(), Is.Zero);

    [Test]
    public async Task An_anti_MAG_order_for_another_patient_gets_no_card()
    {
        // The draft order names someone else: it is not this patient's order, whatever this patient's results say.
        var body = System.Text.Json.Nodes.JsonNode.Parse(CdsKit.OrderHook("order-sign", "pat-oakhaven", AntiMag, true, History()))!;
        body["context"]!["draftOrders"]!["entry"]![0]!["resource"]!["subject"]!["reference"] = "Patient/someone-else";
        Assert.That((await Cards("magcds-order-sign", body.ToJsonString())).GetArrayLength(), Is.Zero);
    }

    [Test]
    public async Task A_selection_naming_no_id_selects_no_draft_order_without_one()
    {
        // "ServiceRequest/" names no order; it must not match a draft order that has no id (found by a black-box probe).
        var body = JsonNode.Parse(CdsKit.OrderHook("order-select", "pat-oakhaven", AntiMag, selected: true, History()))!.AsObject();
        body["context"]!["draftOrders"]!["entry"]![0]!["resource"]!.AsObject().Remove("id");
        body["context"]!["selections"] = new JsonArray("ServiceRequest/");
        Assert.That((await Cards("magcds-order-select", body.ToJsonString())).GetArrayLength(), Is.Zero);
    }

    [Test]
    public async Task Another_test_being_ordered_gets_no_card() =>
        Assert.That((await Cards("magcds-order-sign", CdsKit.OrderHook("order-sign", "pat-oakhaven", Glucose, true, History()))).GetArrayLength(), Is.Zero);

    /// <summary>The order hooks' own required context (draftOrders, and selections for order-select) is checked as patient-view's is.</summary>
    private static IEnumerable<TestCaseData> BadOrderCalls()
    {
        TestCaseData C(string name, string hook, Action<JsonObject> edit) => new TestCaseData(hook, edit).SetArgDisplayNames(name);
        foreach (var hook in new[] { "order-select", "order-sign" })
        {
            yield return C($"{hook}: no draftOrders", hook, b => b["context"]!.AsObject().Remove("draftOrders"));
            yield return C($"{hook}: draftOrders an array", hook, b => b["context"]!["draftOrders"] = new JsonArray());
            yield return C($"{hook}: draftOrders not a Bundle", hook, b => b["context"]!["draftOrders"] = new JsonObject { ["resourceType"] = "Patient", ["id"] = "p1" });
            yield return C($"{hook}: draftOrders not FHIR", hook, b => b["context"]!["draftOrders"] = new JsonObject { ["resourceType"] = "Bundle", ["type"] = "no-such-type" });
        }
        yield return C("order-select: no selections", "order-select", b => b["context"]!.AsObject().Remove("selections"));
        yield return C("order-select: selections a string", "order-select", b => b["context"]!["selections"] = "ServiceRequest/1");
        yield return C("order-select: selections holding a number", "order-select", b => b["context"]!["selections"] = new JsonArray(1));
    }

    [TestCaseSource(nameof(BadOrderCalls))]
    public async Task A_malformed_order_call_gets_a_400_with_an_OperationOutcome(string hook, Action<JsonObject> edit)
    {
        var body = JsonNode.Parse(CdsKit.OrderHook(hook, "pat-oakhaven", AntiMag, selected: true, History()))!.AsObject();
        edit(body);
        var resp = await Client.SendAsync(CdsKit.Post("/cds-services/magcds-" + hook, body.ToJsonString(), null));
        Assert.That(resp.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), await resp.Content.ReadAsStringAsync());
        var oo = (OperationOutcome)await Http.ReadAsync(resp);
        Assert.That(Http.Codes(oo), Does.Contain("invalid-cds-request"));
    }
}
