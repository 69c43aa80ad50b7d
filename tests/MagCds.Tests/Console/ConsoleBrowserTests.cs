using System.Net.Http.Json;
using System.Text;
using Hl7.Fhir.Model;
using MagCds.Service.Storage;
using MagCds.Tests.Support;
using Deque.AxeCore.Playwright;
using Microsoft.Playwright;
using static MagCds.Tests.Support.WorkerHarness;

namespace MagCds.Tests.Console;

/// <summary>
/// The console in a real browser (headless Debian Chromium driven by Playwright) against a real service on a loopback
/// port with its worker watching the FHIR test server: each view is opened, what it shows is asserted, and a
/// screenshot of each is attached to the test (console-screenshots/ under the test output).
/// </summary>
[NonParallelizable]
public class ConsoleBrowserTests
{
    private FhirTestServer _fhir = null!;
    private WorkerHarness _harness = null!;
    private IPlaywright _playwright = null!;
    private IBrowser _browser = null!;
    private string _base = null!;

    /// <summary>Debian's chromium (.ci/run installs it); MAGCDS_CHROMIUM names another binary.</summary>
    private static string ChromiumPath()
    {
        string path = Environment.GetEnvironmentVariable("MAGCDS_CHROMIUM") ?? "/usr/bin/chromium";
        if (!File.Exists(path)) Assert.Fail($"No Chromium at {path}: install it (apt-get install -y chromium) or set MAGCDS_CHROMIUM.");
        return path;
    }

    [OneTimeSetUp]
    public async Task Start()
    {
        _fhir = new FhirTestServer();
        await _fhir.StartAsync();
        _harness = await WorkerHarness.CreateAsync(_fhir, StoreProvider.Sqlite);
        int port = FreePort();
        // CDS Hooks in development mode only so this test can post feedback without an EHR's JWT.
        await _harness.StartAsync(new Dictionary<string, string?> { ["MagCds:CdsHooks:AllowUnsignedCalls"] = "true" }, kestrelPort: port);
        _base = $"http://127.0.0.1:{port}";

        // Something for the operations view: one result assessed by the worker, and one card dismissed in an EHR.
        await _fhir.SeedAsync(Result("console-patient", 23.5m, "ACC-CONSOLE-1"));
        await _harness.DrainedAsync(1);
        using var feedback = new StringContent("""{"feedback":[{"card":"0b8c1c3e-2f7e-4bfe-9a8f-1d2c3b4a5f60","outcome":"overridden","overrideReason":{"reason":{"code":"already-known","system":"https://magcds.org/fhir/CodeSystem/magcds-override-reason","display":"Result already known and being acted on"}},"outcomeTimestamp":"2026-11-20T10:00:00Z"}]}""", Encoding.UTF8, "application/json");
        Assert.That((await _harness.Client.PostAsync("/cds-services/magcds-patient-view/feedback", feedback)).IsSuccessStatusCode, Is.True);

        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new() { ExecutablePath = ChromiumPath(), Headless = true, Args = ["--no-sandbox"] });
    }

    [TearDown]
    public void ServiceStayedClean() => _harness.Service!.AssertClean();

    [OneTimeTearDown]
    public async Task Stop()
    {
        if (_browser is not null) await _browser.DisposeAsync();
        _playwright?.Dispose();
        await _harness.DisposeAsync();
        await _fhir.DisposeAsync();
    }

    private async Task<IPage> OpenAsync(bool withKey = true)
    {
        var context = await _browser.NewContextAsync(new() { ViewportSize = new() { Width = 1400, Height = 1000 } });
        var page = await context.NewPageAsync();
        var errors = new List<string>();
        page.Console += (_, m) => { if (m.Type == "error" && !m.Text.Contains("401", StringComparison.Ordinal)) errors.Add(m.Text); };
        page.PageError += (_, e) => errors.Add(e);
        await page.GotoAsync(_base + "/console/");
        if (withKey)
        {
            await page.EvaluateAsync("k => sessionStorage.setItem('magcds-key', k)", AdminKey);
            await page.ReloadAsync();
        }
        _pageErrors = errors;
        return page;
    }

    private List<string> _pageErrors = [];

    /// <summary>A screenshot of the view as an artifact, after axe-core finds no serious or critical accessibility violation in it.</summary>
    private static async Task ScreenshotAsync(IPage page, string name)
    {
        var axe = await page.RunAxe();
        Assert.That(axe.Passes, Is.Not.Empty, "axe-core ran");
        var serious = axe.Violations.Where(v => v.Impact is "serious" or "critical").ToList();
        Assert.That(serious.Select(v => $"{v.Id}: {v.Help} ({v.Nodes.Length} nodes, e.g. {v.Nodes.FirstOrDefault()?.Html})"), Is.Empty, $"accessibility of {name}");

        string dir = Path.Combine(TestContext.CurrentContext.WorkDirectory, "console-screenshots");
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, name + ".png");
        await page.ScreenshotAsync(new() { Path = file, FullPage = true });
        TestContext.AddTestAttachment(file, name);
    }

    [TearDown]
    public void NoScriptErrors() => Assert.That(_pageErrors, Is.Empty, "the page logged script errors");

    private static ILocatorAssertions Expect(ILocator l) => Assertions.Expect(l);

    [Test]
    public async Task Knowledge_shows_each_category_with_its_citations_thresholds_and_version()
    {
        var page = await OpenAsync(withKey: false); // public: the knowledge holds no patient data
        var k = page.Locator("#knowledge");
        await Expect(page.Locator("#version")).ToHaveTextAsync("Knowledge " + CoreUnderTest.Knowledge.Version);
        await Expect(k.Locator("[data-action=elevated] > h4")).ToHaveTextAsync("Raised anti-MAG IgM result");
        var (guidance, _) = CoreUnderTest.Evaluator.Cite(CoreUnderTest.Knowledge.Guidance.Elevated);
        await Expect(k.Locator("[data-action=elevated] > p.guidance")).ToHaveTextAsync(guidance);
        await Expect(k.Locator("[data-action=options] > h5")).ToContainTextAsync("not orders");
        await Expect(k.Locator("[data-action=rule-buhlmann-btu]")).ToContainTextAsync("Interval (one laboratory's not-detected cut-off): below 1000 BTU");
        await Expect(k.Locator("[data-action=rule-source-document-units]")).ToContainTextAsync("0.1-10 Units");
        await Expect(k.Locator("[data-action=buhlmann-btu-medium]")).ToContainTextAsync("Svahn 2018");
        await Expect(k.Locator("ol li")).ToHaveCountAsync(CoreUnderTest.Knowledge.Citations.Count);
        await Expect(k.Locator("a[href='https://doi.org/10.1136/jnnp-2017-316715']").First).ToBeVisibleAsync();
        await ScreenshotAsync(page, "knowledge");
    }

    [Test]
    public async Task Without_a_key_the_data_views_ask_for_one_and_work_once_it_is_given()
    {
        var page = await OpenAsync(withKey: false);
        await page.ClickAsync("nav button[data-view=try]");
        await Expect(page.Locator("#access")).ToBeVisibleAsync();
        await Expect(page.Locator("#access-message")).ToContainTextAsync("admin API key");
        await page.FillAsync("#key", AdminKey);
        await page.ClickAsync("#access button[type=submit]");
        await Expect(page.Locator("#samples button")).ToHaveCountAsync(10);
        await Expect(page.Locator("#access")).ToBeHiddenAsync();
    }

    [Test]
    public async Task Try_it_shows_the_card_as_an_EHR_would_and_the_outputs_in_JSON_and_XML()
    {
        var page = await OpenAsync();
        await page.ClickAsync("nav button[data-view=try]");
        await page.ClickAsync("#samples button:text-is('Observation-example-btu-medium')");
        await page.ClickAsync("#run");
        await Expect(page.Locator("#try-status")).ToContainTextAsync("HTTP 200, 1 card(s), 2 resource(s)");
        var card = page.Locator("#cards article.card");
        await Expect(card).ToHaveAttributeAsync("data-indicator", "warning");
        await Expect(card.Locator(".summary")).ToContainTextAsync("Anti-MAG IgM 25000 BTU: raised");
        await Expect(card.Locator(".summary")).ToContainTextAsync("medium titre");
        await Expect(card.Locator(".detail strong").First).ToHaveTextAsync("Raised anti-MAG IgM result.");
        await Expect(card.Locator(".detail")).ToContainTextAsync("Treatment approaches reported in the sources cited (information, not orders)");
        await Expect(card.Locator(".suggestion button")).ToHaveTextAsync("Record this assessment");

        var ra = page.Locator("#resources .resource[data-type=RiskAssessment]");
        await Expect(ra.Locator("pre")).ToContainTextAsync("\"resourceType\": \"RiskAssessment\"");
        await ra.Locator(".tabs button:text-is('XML')").ClickAsync();
        await Expect(ra.Locator("pre")).ToContainTextAsync("<RiskAssessment xmlns=\"http://hl7.org/fhir\">");
        await Expect(page.Locator("#outcome table")).ToContainTextAsync("evaluated");
        await ScreenshotAsync(page, "try-it");
    }

    [Test]
    public async Task A_message_that_is_refused_shows_the_OperationOutcome_the_door_would_answer()
    {
        var page = await OpenAsync();
        await page.ClickAsync("nav button[data-view=try]");
        await page.FillAsync("#input", "{ \"resourceType\": \"Observation\", ");
        await page.ClickAsync("#run");
        await Expect(page.Locator("#try-status")).ToContainTextAsync("HTTP 400");
        await Expect(page.Locator("#outcome table tbody tr td").Nth(1)).ToHaveTextAsync("unparseable");
        await Expect(page.Locator("#cards")).ToContainTextAsync("No card");
    }

    [Test]
    public async Task Trend_draws_the_values_over_time_with_the_interval_and_titre_groups_as_bands()
    {
        var page = await OpenAsync();
        await page.ClickAsync("nav button[data-view=trend]");
        await page.ClickAsync("#trend-samples button:text-is('cds-hooks-patient-view')");
        var chart = page.Locator("#trend figure.chart").First;
        await Expect(chart.Locator("svg circle.point")).ToHaveCountAsync(3);
        await Expect(chart.Locator("svg circle.point.current")).ToHaveAttributeAsync("data-date", "2026-09-14");
        await Expect(chart.Locator("svg rect[data-band='interval']")).ToHaveCountAsync(1);
        await Expect(chart.Locator("svg text.band-label", new() { HasText = "Judged against" })).ToHaveTextAsync("Judged against: below 1000 BTU (one laboratory's not-detected cut-off)");
        foreach (var s in CoreUnderTest.Knowledge.AssayProfiles.Single(p => p.Id == "buhlmann-btu").Strata)
            await Expect(chart.Locator($"svg rect[data-band='{s.Name}']")).ToHaveCountAsync(1);
        await Expect(chart.Locator("table tbody tr")).ToHaveCountAsync(3);
        await Expect(chart.Locator("table tbody tr").Last).ToContainTextAsync("12000 BTU (this result)");
        await ScreenshotAsync(page, "trend");
    }

    [Test]
    public async Task Operations_shows_feedback_the_worker_queue_and_audit_entries_without_clinical_values()
    {
        var page = await OpenAsync();
        await page.ClickAsync("nav button[data-view=operations]");
        await Expect(page.Locator("#feedback table")).ToContainTextAsync("already-known");
        await Expect(page.Locator("#feedback svg rect.bar-overridden")).ToHaveCountAsync(1);
        await Expect(page.Locator("#worker table tbody tr td").Nth(0)).ToHaveTextAsync(_fhir.BaseUrl);
        await Expect(page.Locator("#worker table tbody tr td").Nth(4)).Not.ToHaveTextAsync("0"); // done
        var audit = page.Locator("#audit table tbody tr");
        await Expect(audit.First).ToBeVisibleAsync();
        string text = await page.Locator("#audit").InnerTextAsync();
        // The value as a value: a time stamp such as 22:59:23.567 holds "23.5" too (a failure seen at that second).
        Assert.That(text, Does.Contain("worker").And.Not.Match(@"(?<![\d:])23\.5(?!\d)").And.Not.Contain("console-patient"));
        await ScreenshotAsync(page, "operations");
    }
}
