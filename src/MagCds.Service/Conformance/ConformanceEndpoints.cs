using Hl7.Fhir.Model;
using MagCds.Core;
using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;
using MagCds.Service.Hosting;
using Microsoft.Extensions.Options;

namespace MagCds.Service.Conformance;

/// <summary>
/// The conformance package over FHIR REST: <c>/fhir/metadata</c>, read and <c>?url=</c> search of every conformance
/// resource type, and <c>POST /fhir/Observation/$validate</c> against the input profile. Reads are public (they
/// describe the service, no PHI); $validate takes a patient's result, so it needs the evaluate policy.
/// </summary>
public static class ConformanceEndpoints
{
    public static IEndpointRouteBuilder MapConformance(this IEndpointRouteBuilder app)
    {
        var fhir = app.MapGroup("/fhir").RequireRateLimiting(RateLimits.Policy);
        // R4 capabilities: mode=full or normal (or none) is the CapabilityStatement; mode=terminology asks for a
        // TerminologyCapabilities, which MagCds (no terminology service) does not have.
        fhir.MapRead("/metadata", (HttpRequest req, ConformancePackage p) => req.Query["mode"].FirstOrDefault() switch
        {
            null or "" or "full" or "normal" => new FhirResult(p.CapabilityStatement, FhirWire.ResponseFormat(req, null)),
            "terminology" => throw new FhirRequestException(StatusCodes.Status404NotFound, OutcomeCodes.NotFound, "MagCds is not a terminology service: it has no TerminologyCapabilities."),
            _ => throw new FhirRequestException(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidQuery, "mode must be full, normal or terminology."),
        });
        foreach (var type in PackageArtifacts.ServedTypes)
        {
            fhir.MapRead($"/{type}/{{id}}", (string id, HttpRequest req, ConformancePackage p) =>
                p.Read(type, id) is { } r
                    ? new FhirResult(r, FhirWire.ResponseFormat(req, null))
                    : throw new FhirRequestException(StatusCodes.Status404NotFound, OutcomeCodes.NotFound, $"No {type} with that id (GET /fhir/{type} lists them)."));
            fhir.MapRead($"/{type}", (string? url, string? version, HttpRequest req, ConformancePackage p, IOptions<CdsHooks.CdsHooksOptions> cds) =>
                new FhirResult(SearchSet(req, cds.Value, type, p.Search(type, url, version).ToList()), FhirWire.ResponseFormat(req, null)));
        }
        fhir.MapPost("/Observation/$validate", ValidateAsync).RequireAuthorization(Security.Access.EvaluatePolicy);
        return app;
    }

    /// <summary>The search parameters these searches apply (besides _format, which only picks the answer's format).</summary>
    private static readonly string[] Applied = ["url", "version"];

    /// <summary>
    /// A searchset whose self link lists only the parameters applied, as R4 asks, so a client can see that any other
    /// was ignored; with <c>Prefer: handling=strict</c> an unknown parameter is refused instead.
    /// </summary>
    private static Bundle SearchSet(HttpRequest req, CdsHooks.CdsHooksOptions cds, string type, IReadOnlyList<Resource> found)
    {
        var ignored = req.Query.Keys.Where(k => !Applied.Contains(k) && k != "_format").ToList();
        if (ignored.Count > 0 && req.Headers["Prefer"].Any(p => p?.Contains("handling=strict", StringComparison.OrdinalIgnoreCase) == true))
            throw new FhirRequestException(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidParameters,
                $"Search parameter(s) {string.Join(", ", ignored.Select(k => $"'{k}'"))} not supported on {type}; supported: url, version.");
        var self = QueryString.Create(req.Query.Where(q => Applied.Contains(q.Key)).SelectMany(q => q.Value.Select(v => KeyValuePair.Create(q.Key, v))));
        // The public address when one is configured (MagCds:CdsHooks:PublicBaseUrl, as the cards' links use), so the
        // links do not repeat whatever Host header a request sent.
        string fhirBase = CdsHooks.CdsHooksEndpoints.BaseUrl(req, cds) + "/fhir";
        return new Bundle
        {
            Type = Bundle.BundleType.Searchset,
            Total = found.Count,
            Link = [new Bundle.LinkComponent { Relation = "self", Url = fhirBase + "/" + type + self }],
            Entry = found.Select(r => new Bundle.EntryComponent
            {
                FullUrl = $"{fhirBase}/{type}/{r.Id}",
                Resource = r,
                Search = new Bundle.SearchComponent { Mode = Bundle.SearchEntryMode.Match },
            }).ToList(),
        };
    }

    /// <summary>
    /// The standard $validate: 200 with an OperationOutcome whether or not the Observation is valid (4xx only when
    /// validation could not be done). Besides the validator's findings it says what $mag-evaluate would do with the
    /// Observation, so an integration engineer sees both the conformance and the effect of a mapping.
    /// </summary>
    private static async Task<FhirResult> ValidateAsync(HttpRequest req, ConformancePackage package, ProfileValidator validator,
        Evaluator evaluator, IOptions<FhirRestOptions> options, CancellationToken ct)
    {
        var requestFormat = FhirWire.RequestFormat(req);
        var responseFormat = FhirWire.ResponseFormat(req, requestFormat);
        var urls = evaluator.Canonical;
        string inputProfile = urls.Profile(CanonicalUrls.Profiles.Observation);

        ParsedBody parsed;
        try
        {
            parsed = FhirWire.Parse(await FhirWire.ReadBodyAsync(req, options.Value.MaxRequestBodyBytes, ct), requestFormat);
        }
        catch (FhirRequestException e) when (e.Code == OutcomeCodes.Unparseable)
        {
            // Not even readable as FHIR: that is the validation result (structure errors), not a failure to validate.
            return new FhirResult(new OperationOutcome { Issue = [Outcomes.Issue(urls, OutcomeCodes.Unparseable, OperationOutcome.IssueSeverity.Error, e.Message)] }, responseFormat);
        }

        foreach (var name in new[] { "mode", "profile" })
            if (req.Query[name].Count > 1) throw Invalid($"'{name}' is given more than once in the URL.");
        CheckModeAndProfile(req.Query["mode"].FirstOrDefault(), req.Query["profile"].FirstOrDefault(), inputProfile);
        var (observation, profile) = parsed.Resource switch
        {
            Observation o => (o, inputProfile),
            Parameters p => FromParameters(p, inputProfile),
            var other => throw new FhirRequestException(StatusCodes.Status422UnprocessableEntity, OutcomeCodes.UnsupportedResource,
                $"Observation/$validate checks an Observation (or a Parameters with a 'resource'), not {Outcomes.AType(other.TypeName)}."),
        };

        var (checkedCopy, notChecked) = WithoutOtherClaims(observation, profile);
        var outcome = await validator.ValidateAsync(checkedCopy, profile, ct);
        foreach (string claim in notChecked)
            outcome.Issue.Add(new OperationOutcome.IssueComponent
            {
                Severity = OperationOutcome.IssueSeverity.Warning, Code = OperationOutcome.IssueType.NotSupported,
                Diagnostics = Outcomes.Printable($"The resource claims the profile '{claim}', which $validate does not check: it checks the base R4 specification and MagCds's input profile."),
            });
        outcome.Issue.AddRange(DryRun(evaluator, observation, urls));
        if (!outcome.Issue.Any(i => i.Severity is OperationOutcome.IssueSeverity.Error or OperationOutcome.IssueSeverity.Fatal))
            outcome.Issue.Insert(0, new OperationOutcome.IssueComponent
            {
                Severity = OperationOutcome.IssueSeverity.Information, Code = OperationOutcome.IssueType.Informational,
                Diagnostics = $"The Observation conforms to {profile}.",
            });
        return new FhirResult(outcome, responseFormat);
    }

    /// <summary>
    /// The Observation as it is validated: claiming MagCds's input profile only (itself and its contained resources).
    /// Lab feeds often claim profiles of their own (national, vendor) that say nothing against MagCds's; each is named
    /// as not checked (a warning, as the HL7 validator treats a profile it cannot resolve). Checking any profile a caller
    /// names would let callers make the validator compile, and keep, definition after definition, seconds each.
    /// </summary>
    private static (Observation Checked, List<string> NotChecked) WithoutOtherClaims(Observation observation, string inputProfile)
    {
        var copy = (Observation)observation.DeepCopy();
        var notChecked = new List<string>();
        foreach (var r in copy.Contained.Prepend(copy))
        {
            if (r.Meta is not { } meta) continue;
            var claims = meta.Profile.OfType<string>().ToList();
            bool own = r == copy && claims.Contains(inputProfile);
            notChecked.AddRange(claims.Where(p => !(own && p == inputProfile)));
            meta.Profile = own ? [inputProfile] : [];
            if (!meta.EnumerateElements().Any()) r.Meta = null; // an empty meta is itself invalid (ele-1)
        }
        return (copy, notChecked.Distinct().ToList());
    }

    private static (Observation, string) FromParameters(Parameters p, string inputProfile)
    {
        foreach (var part in p.Parameter)
            if (part.Name is not ("resource" or "profile" or "mode"))
                throw Invalid("A parameter has a name $validate does not take; it takes 'resource' and optionally 'profile' or 'mode'.");
        if (p.Parameter.Where(x => x.Name == "resource").ToList() is not [{ Resource: Observation o }])
            throw Invalid("Exactly one 'resource' parameter carrying an Observation is required.");
        CheckModeAndProfile(p.Parameter.FirstOrDefault(x => x.Name == "mode")?.Value?.ToString(),
            p.Parameter.FirstOrDefault(x => x.Name == "profile")?.Value?.ToString(), inputProfile);
        return (o, inputProfile);
    }

    /// <summary>
    /// The 'mode' and 'profile' $validate takes, from a Parameters body or the URL (FHIR operations take parameters of a
    /// primitive type in the URL too, also with POST): an Observation is checked as it would be sent, against MagCds's
    /// input profile. Any other is refused rather than ignored, which would answer for a profile that was not checked.
    /// </summary>
    private static void CheckModeAndProfile(string? mode, string? profile, string inputProfile)
    {
        if (mode is not null && mode is not ("create" or "update"))
            throw Invalid("Only the modes 'create' and 'update' are supported: an Observation is checked as it would be sent.");
        if (profile is not null && profile != inputProfile)
            throw Invalid($"This service validates against its input profile {inputProfile} only.");
    }

    private static FhirRequestException Invalid(string message) =>
        new(StatusCodes.Status400BadRequest, OutcomeCodes.InvalidParameters, message);

    /// <summary>What $mag-evaluate would do with this Observation, as information issues (nothing is stored or logged).</summary>
    private static IEnumerable<OperationOutcome.IssueComponent> DryRun(Evaluator evaluator, Observation o, CanonicalUrls urls)
    {
        var result = evaluator.Evaluate(EvaluationRequest.Of(new EvaluationInput(o, null, "Observation"))).Results[0];
        string summary = result switch
        {
            { Outcome: InputOutcome.Evaluated, Interpretation: { } i } =>
                $"$mag-evaluate would evaluate this result as '{MagCds.Core.Outputs.Vocabulary.Of(i.Category).Code}' by rule '{i.RuleId}'" +
                (i.Basis is { } b ? $", judged against {b.OriginText}." : "."),
            { Outcome: InputOutcome.Retracted } => "$mag-evaluate would retract every earlier output about this result (entered-in-error).",
            _ => "$mag-evaluate would not evaluate this result; the issues below say why.",
        };
        yield return Outcomes.Issue(urls, OutcomeCodes.Evaluated, OperationOutcome.IssueSeverity.Information, summary, "Observation");
        foreach (var i in result.Issues)
            yield return Outcomes.Issue(urls, i with { Severity = OperationOutcome.IssueSeverity.Information, Message = "$mag-evaluate would report: " + i.Message });
    }
}
