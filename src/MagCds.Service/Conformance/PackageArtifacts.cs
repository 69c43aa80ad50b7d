using Hl7.Fhir.Model;
using Hl7.Fhir.Utility;
using MagCds.Core;
using MagCds.Core.Evaluation;
using MagCds.Core.Knowledge;
using MagCds.Core.Outputs;
using MagCds.Service.CdsHooks;
using MagCds.Service.FhirRest;

namespace MagCds.Service.Conformance;

/// <summary>
/// The conformance resources MagCds generates from what it runs instead of keeping a second copy: terminology from
/// its code (outcome, interpretation, reason and override codes) and configuration (recognised codes), the knowledge
/// as a PlanDefinition, and the CapabilityStatement. The package builder writes them into fhir-profiles/package with
/// the defaults; the service generates them again at start-up from its own knowledge and settings, so what it serves
/// is what it runs.
/// </summary>
public static class PackageArtifacts
{
    private const string Publisher = "MagCds";
    public const string ValidateDefinition = "http://hl7.org/fhir/OperationDefinition/Resource-validate";

    /// <summary>Resource types the service serves by id and by <c>?url=</c>.</summary>
    public static readonly string[] ServedTypes =
        ["StructureDefinition", "ValueSet", "CodeSystem", "OperationDefinition", "PlanDefinition", "CapabilityStatement"];

    public static IReadOnlyList<Resource> Generate(Evaluator evaluator, PackageManifest manifest, OperationDefinition magEvaluate)
    {
        var urls = evaluator.Canonical;
        var kb = evaluator.Knowledge;
        string v = manifest.Version;
        var rules = Vocabulary.Rules.BuiltIn.Concat(kb.AssayProfiles.Select(p => new Concept(p.Id, p.Name, p.Rule))).ToList();
        var outcome = CodeSystemOf(urls, "magcds-outcome", "MagCds OperationOutcome codes", v,
            "The codes MagCds puts in OperationOutcome.issue.details, so an integration engine can route on them; each names the FHIR issue type it is sent with.",
            OutcomeCodes.All.Select(c => new Concept(c.Code, c.Display, c.Display + ".")));
        outcome.Property = [new CodeSystem.PropertyComponent
        {
            Code = "issue-type", Uri = "http://hl7.org/fhir/issue-type", Type = CodeSystem.PropertyType.Code,
            Description = "The FHIR IssueType (OperationOutcome.issue.code) sent with this code.",
        }];
        foreach (var (concept, code) in outcome.Concept.Zip(OutcomeCodes.All))
            concept.Property = [new CodeSystem.ConceptPropertyComponent { Code = "issue-type", Value = new Code(code.Type.GetLiteral()) }];

        return
        [
            .. WithValueSet(outcome, "Every MagCds OperationOutcome code."),
            .. WithValueSet(CodeSystemOf(urls, "magcds-interpretation", "MagCds interpretation categories", v,
                "How MagCds judged an anti-MAG IgM result (meta.tag of every output, and DetectedIssue.code).", Vocabulary.Interpretations),
                "Every interpretation category, and the retraction tag."),
            Enumerated(urls, "magcds-issue-category", "MagCds DetectedIssue categories", v,
                "The interpretation categories that raise a DetectedIssue: raised, and cannot be interpreted safely.",
                [(urls.InterpretationSystem, Vocabulary.Elevated), (urls.InterpretationSystem, Vocabulary.CannotInterpret)]),
            .. WithValueSet(CodeSystemOf(urls, "magcds-cannot-interpret", "Why MagCds cannot interpret a result", v,
                "The reason an anti-MAG IgM result cannot be interpreted safely (DetectedIssue.evidence.code).", Vocabulary.Reasons), "Every reason."),
            // Versioned like the knowledge: RiskAssessment.method.coding.version names the knowledge the rule came from.
            .. WithValueSet(CodeSystemOf(urls, "magcds-rules", "MagCds interpretation rules", kb.Version,
                "The rule MagCds applied (RiskAssessment.method): the laboratory's own range or flag, a qualitative result, or an assay profile of the knowledge.", rules),
                "Every rule of this knowledge version."),
            .. WithValueSet(CodeSystemOf(urls, "magcds-override-reason", "Why a clinician dismissed a MagCds card", v,
                "CDS Hooks override reasons MagCds offers with its cards.", CardBuilder.OverrideReasonConcepts), "Every override reason."),
            Enumerated(urls, "magcds-qualitative-risk", "MagCds qualitative risk", v,
                "RiskAssessment.prediction.qualitativeRisk as MagCds uses it: moderate for a raised result, low for one that is not raised.",
                [(Vocabulary.RiskProbabilitySystem, Vocabulary.ModerateRisk), (Vocabulary.RiskProbabilitySystem, Vocabulary.LowRisk)]),
            // With local codes configured this is not the published ValueSet: one url|version means one content, so its
            // version names the codes (a deployment's tooling never mistakes it for the package's).
            Enumerated(urls, "anti-mag-igm-codes", "Anti-MAG IgM codes MagCds recognises", CodesVersion(v, evaluator.RecognisedCodes),
                "Observation codes MagCds evaluates as serum anti-MAG IgM: LOINC 39087-2 and the local codes this deployment is configured with (MagCds:AdditionalCodes).",
                // No display: LOINC's long name for 39087-2 (and whether its property is a concentration or a titre)
                // has not been confirmed, and a ValueSet display would publish it as fact.
                evaluator.RecognisedCodes.Select(c => c.Split('|', 2)).Select(p => (p[0], new Concept(p[1], "", ""))).OrderBy(p => p.Item1 == CanonicalUrls.Loinc ? 0 : 1).ThenBy(p => p.Item1, StringComparer.Ordinal).ThenBy(p => p.Item2.Code, StringComparer.Ordinal)
                    .ToList()),
            KnowledgePlan(evaluator, manifest),
            Capabilities(evaluator, manifest, magEvaluate),
        ];
    }

    private static CodeSystem CodeSystemOf(CanonicalUrls urls, string id, string title, string version, string description, IEnumerable<Concept> concepts)
    {
        var list = concepts.Select(c => new CodeSystem.ConceptDefinitionComponent { Code = c.Code, Display = c.Display, Definition = c.Definition }).ToList();
        return new CodeSystem
        {
            Id = id, Url = urls.Of("CodeSystem", id), Version = version, Name = Name(id), Title = title,
            Status = PublicationStatus.Active, Experimental = false, Publisher = Publisher, Description = description,
            CaseSensitive = true, ValueSet = urls.Of("ValueSet", id), Content = CodeSystemContentMode.Complete, Count = list.Count, Concept = list,
        };
    }

    private static string CodesVersion(string packageVersion, IReadOnlyCollection<string> codes)
    {
        // The published ValueSet holds LOINC 39087-2 alone; any code added (another LOINC code too) makes it another.
        if (codes.All(c => c == CanonicalUrls.Loinc + "|" + CanonicalUrls.AntiMagLoinc)) return packageVersion;
        var hash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Join("\n", codes.Order(StringComparer.Ordinal))));
        return $"{packageVersion}-local.{Convert.ToHexStringLower(hash)[..8]}";
    }

    /// <summary>A CodeSystem and the ValueSet of all its codes (same id, title and version; cs.valueSet names it).</summary>
    private static Resource[] WithValueSet(CodeSystem cs, string description) =>
    [
        cs,
        new ValueSet
        {
            Id = cs.Id, Url = cs.ValueSet, Version = cs.Version, Name = cs.Name, Title = cs.Title,
            Status = PublicationStatus.Active, Experimental = false, Publisher = Publisher, Description = description, Immutable = false,
            Compose = new ValueSet.ComposeComponent { Include = [new ValueSet.ConceptSetComponent { System = cs.Url }] },
        },
    ];

    private static ValueSet Enumerated(CanonicalUrls urls, string id, string title, string version, string description, IReadOnlyList<(string System, Concept Concept)> codes) => new()
    {
        Id = id, Url = urls.Of("ValueSet", id), Version = version, Name = Name(id), Title = title,
        Status = PublicationStatus.Active, Experimental = false, Publisher = Publisher, Description = description,
        Compose = new ValueSet.ComposeComponent
        {
            Include = codes.GroupBy(c => c.System).Select(g => new ValueSet.ConceptSetComponent
            {
                System = g.Key,
                Concept = g.Select(c => new ValueSet.ConceptReferenceComponent { Code = c.Concept.Code, Display = c.Concept.Display.Length > 0 ? c.Concept.Display : null }).ToList(),
            }).ToList(),
        },
    };

    /// <summary>
    /// The knowledge as an ECA-rule PlanDefinition: each interpretation category with the guidance text exactly as the
    /// outputs render it (citation labels included) and its sources as relatedArtifacts; the rules, the assay profiles
    /// with their intervals, titre groups and caveats; the trend and retraction behaviour. Descriptive: the engine runs
    /// the same knowledge in code, there is no executable logic (CQL) to keep in step.
    /// </summary>
    private static PlanDefinition KnowledgePlan(Evaluator evaluator, PackageManifest manifest)
    {
        var urls = evaluator.Canonical;
        var kb = evaluator.Knowledge;
        DataRequirement Output(string type, string profile) => new() { Type = FhirAllTypesLiteral(type), ProfileElement = [new Canonical(urls.Profile(profile))] };
        var riskAssessment = Output("RiskAssessment", CanonicalUrls.Profiles.RiskAssessment);
        var detectedIssue = Output("DetectedIssue", CanonicalUrls.Profiles.DetectedIssue);
        CodeableConcept Category(Concept c) => new(urls.InterpretationSystem, c.Code, c.Display);

        PlanDefinition.ActionComponent Cited(string id, string title, IReadOnlyList<string> statements, string? prefix = null)
        {
            var (text, cited) = evaluator.Cite(statements);
            return new PlanDefinition.ActionComponent
            {
                ElementId = id, Title = title, Description = prefix is null ? text : prefix + " " + text,
                Documentation = cited.Select(Artifact).ToList(),
            };
        }

        var elevated = Cited(Vocabulary.Elevated.Code, "Raised anti-MAG IgM result", kb.Guidance.Elevated);
        elevated.TextEquivalent = Vocabulary.Elevated.Definition;
        elevated.Code = [Category(Vocabulary.Elevated)];
        elevated.Output = [(DataRequirement)riskAssessment.DeepCopy(), (DataRequirement)detectedIssue.DeepCopy()];
        elevated.Action.Add(Cited("options", "Treatment approaches reported in the sources cited (information, not orders)", kb.Guidance.Options));
        foreach (var p in kb.AssayProfiles)
            foreach (var s in p.Strata)
                elevated.Action.Add(Cited($"{p.Id}-{s.Id}", $"{p.Name}: {s.Name}", s.Statements));

        var notElevated = Cited(Vocabulary.NotElevated.Code, "Anti-MAG IgM result not raised", kb.Guidance.NotElevated);
        notElevated.TextEquivalent = Vocabulary.NotElevated.Definition;
        notElevated.Code = [Category(Vocabulary.NotElevated)];
        notElevated.Output = [(DataRequirement)riskAssessment.DeepCopy()];

        var cannot = Cited(Vocabulary.CannotInterpret.Code, "Anti-MAG IgM result that cannot be interpreted safely", kb.Guidance.CannotInterpret);
        cannot.TextEquivalent = Vocabulary.CannotInterpret.Definition + " MagCds does not guess.";
        cannot.Code = [Category(Vocabulary.CannotInterpret)];
        cannot.Output = [(DataRequirement)riskAssessment.DeepCopy(), (DataRequirement)detectedIssue.DeepCopy()];
        foreach (var r in Vocabulary.Reasons)
            cannot.Action.Add(new PlanDefinition.ActionComponent
            {
                ElementId = r.Code, Title = r.Display, Description = r.Definition, Code = [new CodeableConcept(urls.CannotInterpretSystem, r.Code, r.Display)],
            });

        var interpret = new PlanDefinition.ActionComponent
        {
            ElementId = "interpret",
            Title = "Interpret a serum anti-MAG IgM result",
            Description = "A new or changed anti-MAG IgM result is placed in exactly one interpretation category; the outputs of that category are produced with the guidance below.",
            Trigger =
            [
                new TriggerDefinition
                {
                    Type = TriggerDefinition.TriggerType.DataAdded,
                    Name = "anti-mag-igm-result",
                    Data = [new DataRequirement
                    {
                        Type = FhirAllTypesLiteral("Observation"),
                        ProfileElement = [new Canonical(urls.Profile(CanonicalUrls.Profiles.Observation))],
                        CodeFilter = [new DataRequirement.CodeFilterComponent { Path = "code", ValueSet = urls.Of("ValueSet", "anti-mag-igm-codes") }],
                    }],
                },
            ],
            SelectionBehavior = ActionSelectionBehavior.ExactlyOne,
            Action = [elevated, notElevated, cannot],
        };

        var judged = new PlanDefinition.ActionComponent
        {
            ElementId = "rules",
            Title = "What a result is judged against",
            Description = "A number is compared with the performing laboratory's own reference range; without a usable range, the laboratory's interpretation flag is used; without either, an assay profile of the knowledge matched on the unit; otherwise the result cannot be interpreted. A qualitative value is read as it is reported.",
            SelectionBehavior = ActionSelectionBehavior.ExactlyOne,
        };
        foreach (var r in Vocabulary.Rules.BuiltIn.Where(r => r != Vocabulary.Rules.Retraction))
            judged.Action.Add(new PlanDefinition.ActionComponent { ElementId = "rule-" + r.Code, Title = r.Display, Description = r.Definition, Code = [new CodeableConcept(urls.RuleSystem, r.Code, r.Display)] });
        foreach (var p in kb.AssayProfiles)
        {
            var ri = p.ReferenceInterval;
            var (caveats, caveatSources) = p.Caveats.Count > 0 ? evaluator.Cite(p.Caveats) : ("", []);
            var profile = new PlanDefinition.ActionComponent
            {
                ElementId = "rule-" + p.Id,
                Title = p.Name,
                Description = $"{p.Rule} {p.UnitReading}" + (caveats.Length > 0 ? " Caveat: " + caveats : ""),
                TextEquivalent = $"Interval ({ri.Label}): {ri.Text()}"
                                 + $" (upper limit {(ri.HighInclusive ? "included" : "excluded")}), from {kb.Citation(ri.Citation).Label}. Matched on unit: "
                                 + string.Join(", ", p.Match.Units.Select(u => u.Unit ?? $"{u.System}|{u.Code}")) + ".",
                Code = [new CodeableConcept(urls.RuleSystem, p.Id, p.Name)],
                Documentation = new[] { kb.Citation(ri.Citation) }.Concat(caveatSources).Distinct().Select(Artifact).ToList(),
            };
            foreach (var s in p.Strata)
                profile.Action.Add(new PlanDefinition.ActionComponent
                {
                    ElementId = $"rule-{p.Id}-{s.Id}", Title = s.Name,
                    Description = $"From {ValueReader.Format(s.Low)} {ri.Unit} (included)" + (s.High is { } h ? $" to {ValueReader.Format(h)} {ri.Unit} (excluded)." : " upwards."),
                });
            judged.Action.Add(profile);
        }

        var trend = Cited("trend", "Trend of earlier results", kb.Guidance.Trend,
            "When earlier results of the same patient and the same assay are known, they are listed with the change from the previous and the first result: information, not a judgement of response.");
        var retraction = new PlanDefinition.ActionComponent
        {
            ElementId = Vocabulary.Retraction.Code, Title = Vocabulary.Retraction.Display, Description = Vocabulary.Retraction.Definition
                + " The retraction is a RiskAssessment with status entered-in-error carrying the series identifier of the earlier outputs.",
            Code = [Category(Vocabulary.Retraction)],
            Output = [(DataRequirement)riskAssessment.DeepCopy()],
        };

        return new PlanDefinition
        {
            Id = "magcds-knowledge",
            Url = urls.Of("PlanDefinition", "magcds-knowledge"),
            Version = kb.Version,
            Name = "MagCdsKnowledge",
            Title = kb.Title,
            Type = new CodeableConcept("http://terminology.hl7.org/CodeSystem/plan-definition-type", "eca-rule", "ECA Rule"),
            Status = PublicationStatus.Active,
            Experimental = false,
            Date = manifest.Date,
            Publisher = Publisher,
            Description = kb.IntendedUse,
            Purpose = "Publishes, in FHIR form, the knowledge MagCds runs: generated from it at start-up, never kept as a second copy.",
            Usage = "Information for healthcare professionals; it supports, and does not replace, clinical judgement. Treatments are options reported in the literature, never orders.",
            RelatedArtifact = kb.Citations.Select(Artifact).ToList(),
            Action = [interpret, judged, trend, retraction],
        };
    }

    private static CapabilityStatement Capabilities(Evaluator evaluator, PackageManifest manifest, OperationDefinition magEvaluate)
    {
        var urls = evaluator.Canonical;
        CapabilityStatement.ResourceComponent Conformance(string type) => new()
        {
            Type = type,
            Interaction =
            [
                new CapabilityStatement.ResourceInteractionComponent { Code = CapabilityStatement.TypeRestfulInteraction.Read },
                new CapabilityStatement.ResourceInteractionComponent { Code = CapabilityStatement.TypeRestfulInteraction.SearchType },
            ],
            SearchParam =
            [
                new CapabilityStatement.SearchParamComponent { Name = "url", Type = SearchParamType.Uri, Documentation = "The canonical URL." },
                new CapabilityStatement.SearchParamComponent { Name = "version", Type = SearchParamType.Token, Documentation = "The business version." },
            ],
        };
        CapabilityStatement.ResourceComponent Returned(string type, string profile) => new()
        {
            Type = type,
            SupportedProfileElement = [new Canonical(urls.Profile(profile))],
            Documentation = "Returned by $mag-evaluate and in CDS Hooks suggestions, and written back by the FHIR server door; not stored or served here.",
        };

        return new CapabilityStatement
        {
            Id = "magcds",
            Url = urls.Of("CapabilityStatement", "magcds"),
            Version = manifest.Version,
            Name = "MagCds",
            Title = "MagCds anti-MAG IgM clinical decision support",
            Status = PublicationStatus.Active,
            Experimental = false,
            Date = manifest.Date,
            Publisher = Publisher,
            Description = "The FHIR REST door of MagCds: $mag-evaluate, $validate against the input profile, and the conformance package.",
            Kind = CapabilityStatementKind.Instance,
            Software = new CapabilityStatement.SoftwareComponent { Name = "MagCds", Version = evaluator.Knowledge.Version },
            Implementation = new CapabilityStatement.ImplementationComponent { Description = "MagCds FHIR REST door" },
            FhirVersion = FHIRVersion.N4_0_1,
            Format = ["json", "xml", FhirWire.JsonMediaType, FhirWire.XmlMediaType],
            Rest =
            [
                new CapabilityStatement.RestComponent
                {
                    Mode = CapabilityStatement.RestfulCapabilityMode.Server,
                    Documentation = "Stateless: $mag-evaluate stores nothing and returns its outputs to the caller.",
                    Security = new CapabilityStatement.SecurityComponent
                    {
                        Description = "$mag-evaluate and $validate need an API key (X-API-Key), a client certificate (mTLS) or a bearer JWT with the evaluate scope when access control is configured; metadata and the conformance resources are public.",
                    },
                    Resource =
                    [
                        new CapabilityStatement.ResourceComponent
                        {
                            Type = "Observation",
                            SupportedProfileElement = [new Canonical(urls.Profile(CanonicalUrls.Profiles.Observation))],
                            Operation =
                            [
                                new CapabilityStatement.OperationComponent { Name = magEvaluate.Code, Definition = magEvaluate.Url },
                                new CapabilityStatement.OperationComponent
                                {
                                    Name = "validate", Definition = ValidateDefinition,
                                    Documentation = "Checks an Observation against the MagCds input profile and answers an OperationOutcome (200 whether or not it is valid).",
                                },
                            ],
                        },
                        Returned("RiskAssessment", CanonicalUrls.Profiles.RiskAssessment),
                        Returned("DetectedIssue", CanonicalUrls.Profiles.DetectedIssue),
                        .. ServedTypes.Select(Conformance),
                    ],
                },
            ],
        };
    }

    /// <summary>Canonical url and business version of a conformance resource (R4 PlanDefinition has no common interface for them).</summary>
    public static (string? Url, string? Version) CanonicalOf(Resource r) => r switch
    {
        IVersionableConformanceResource c => (c.Url, c.Version),
        PlanDefinition p => (p.Url, p.Version),
        _ => (null, null),
    };

    private static RelatedArtifact Artifact(Citation c) => new()
    {
        Type = RelatedArtifact.RelatedArtifactType.Citation, Label = c.Label, Display = c.Label, Citation = c.Text, Url = c.Url,
    };

    private static FHIRAllTypes? FhirAllTypesLiteral(string type) => EnumUtility.ParseLiteral<FHIRAllTypes>(type);

    /// <summary>A computer-friendly name from an id: magcds-rules -> MagcdsRules.</summary>
    private static string Name(string id) => string.Concat(id.Split('-').Select(p => char.ToUpperInvariant(p[0]) + p[1..]));
}
