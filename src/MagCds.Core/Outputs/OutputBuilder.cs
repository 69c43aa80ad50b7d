using System.Text;
using Hl7.Fhir.Model;
using MagCds.Core.Evaluation;
using MagCds.Core.Knowledge;

namespace MagCds.Core.Outputs;

/// <summary>
/// Turns an interpretation into the FHIR outputs: a RiskAssessment for every evaluated result and a DetectedIssue
/// when the result is raised or cannot be interpreted. Every output states its basis (value, unit, interval and
/// its origin, the rule in plain words, the knowledge version) and cites the source of every statement.
/// Time stamps come from the input (issued, else effective), never from the clock.
/// </summary>
public sealed class OutputBuilder(KnowledgeBase knowledge)
{
    private const string RiskProbability = "http://terminology.hl7.org/CodeSystem/risk-probability";
    private const string ActCode = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

    /// <summary>
    /// The words of an interpretation, built once and used by every output and every door (RiskAssessment notes,
    /// DetectedIssue detail, CDS Hooks card detail), so that they can never say different things.
    /// </summary>
    public Explanation Explain(Observation obs, Interpretation i)
    {
        var cited = new List<string>();
        var guidance = new List<string> { Statements(CategoryStatements(i.Category), cited) };
        if (i.Stratum is { } s) guidance.Add($"Titre group: {s.Name}. " + Statements(s.Statements, cited));
        if (i.Basis?.Profile is { Caveats.Count: > 0 } p) guidance.Add("Caveat: " + Statements(p.Caveats, cited));
        string? options = i.Category == Category.Elevated
            ? "Options reported in the literature, not orders: " + Statements(knowledge.Guidance.Options, cited)
            : null;
        string? trend = i.Trend is { } t ? TrendText(t) + "\n\n" + Statements(knowledge.Guidance.Trend, cited) : null;
        return new Explanation(Heading(i.Category), BasisText(obs, i), guidance, options, trend,
            cited.Select(knowledge.Citation).ToList(), $"MagCds knowledge {knowledge.Version}. {knowledge.IntendedUse}");
    }

    public (RiskAssessment RiskAssessment, DetectedIssue? DetectedIssue, Explanation Explanation) Build(EvaluationInput input, Interpretation i)
    {
        var obs = input.Observation;
        var status = i.Preliminary ? ObservationStatus.Preliminary : ObservationStatus.Final;
        var x = Explain(obs, i);
        var (raId, raUrn) = DeterministicIds.For("ra", input, knowledge.Version);

        var notes = new List<string> { x.Heading + " " + x.Guidance[0] };
        notes.AddRange(x.Guidance.Skip(1));
        if (x.Trend is not null) notes.Add(x.Trend);
        notes.Add(x.ReferencesText);
        notes.Add(x.KnowledgeLine);

        var ra = new RiskAssessment
        {
            Id = raId,
            Meta = new Meta { Tag = [CategoryCoding(i.Category)] },
            Identifier = Identifiers(raUrn, input),
            Status = status,
            Code = new CodeableConcept { Text = "Interpretation of a serum anti-MAG IgM result" },
            Subject = SubjectCopy(obs),
            Occurrence = Occurrence(obs),
            Basis = [ObservationReference(input), .. TrendReferences(i.Trend)],
            Method = Method(i.RuleId, i.Basis?.Profile?.Name ?? i.RuleId),
            Prediction =
            [
                new RiskAssessment.PredictionComponent
                {
                    Outcome = new CodeableConcept { Text = "Anti-MAG neuropathy (IgM paraproteinaemic demyelinating neuropathy)" },
                    QualitativeRisk = i.Category switch
                    {
                        Category.Elevated => new CodeableConcept(RiskProbability, "moderate", "Moderate likelihood", "raised anti-MAG IgM result"),
                        Category.NotElevated => new CodeableConcept(RiskProbability, "low", "Low likelihood", "anti-MAG IgM result not raised"),
                        _ => null, // cannot interpret: no risk is stated at all
                    },
                    Rationale = x.Basis,
                },
            ],
            Mitigation = x.Options,
            Note = notes.Select(n => new Annotation { Text = new Markdown(n) }).ToList(),
        };

        if (i.Category == Category.NotElevated) return (ra, null, x);

        var detail = new StringBuilder().Append(x.Heading).Append(' ').Append(x.Basis);
        foreach (var g in x.Guidance) detail.Append("\n\n").Append(g);
        if (x.Options is not null) detail.Append("\n\n").Append(x.Options);
        if (x.Trend is not null) detail.Append("\n\n").Append(x.Trend);
        detail.Append("\n\n").Append(x.ReferencesText);

        var (diId, diUrn) = DeterministicIds.For("di", input, knowledge.Version);
        var di = new DetectedIssue
        {
            Id = diId,
            Meta = new Meta { Tag = [CategoryCoding(i.Category)] },
            Identifier = Identifiers(diUrn, input),
            Status = status,
            Code = new CodeableConcept
            {
                Coding = [new Coding(ActCode, "LAB", "Lab Alert"), CategoryCoding(i.Category)],
                Text = i.Category == Category.Elevated ? "Raised anti-MAG IgM result" : "Anti-MAG IgM result cannot be interpreted safely",
            },
            Severity = i.Category == Category.Elevated ? DetectedIssue.DetectedIssueSeverity.Moderate : DetectedIssue.DetectedIssueSeverity.Low,
            Patient = PatientReference(obs),
            Identified = Occurrence(obs),
            Implicated = [ObservationReference(input)],
            Evidence =
            [
                new DetectedIssue.EvidenceComponent
                {
                    Code = i.Reason is { } reason
                        ? [new CodeableConcept(CanonicalUrls.CannotInterpretSystem, ReasonCode(reason), ReasonDisplay(reason))]
                        : [],
                    Detail = [ObservationReference(input), .. TrendReferences(i.Trend)],
                },
            ],
            Detail = detail.ToString(),
            Reference = PrimaryCitation(i).Url,
        };
        return (ra, di, x);
    }

    /// <summary>
    /// For an entered-in-error Observation: a RiskAssessment with status entered-in-error that carries the series
    /// identifier shared by every earlier output about that Observation, so a receiver can retract them all.
    /// </summary>
    public RiskAssessment Retraction(EvaluationInput input)
    {
        var obs = input.Observation;
        var (id, urn) = DeterministicIds.For("rx", input, knowledge.Version);
        string series = DeterministicIds.SeriesValue(input);
        return new RiskAssessment
        {
            Id = id,
            Meta = new Meta { Tag = [new Coding(CanonicalUrls.InterpretationSystem, "retraction", "Retraction of earlier outputs")] },
            Identifier = Identifiers(urn, input),
            Status = ObservationStatus.EnteredInError,
            Code = new CodeableConcept { Text = "Interpretation of a serum anti-MAG IgM result" },
            Subject = SubjectCopy(obs),
            Occurrence = Occurrence(obs),
            Basis = [ObservationReference(input)],
            Method = Method("retraction", "retraction"),
            Note =
            [
                new Annotation
                {
                    Text = new Markdown(
                        "The laboratory marked this Observation entered-in-error. Every MagCds RiskAssessment and DetectedIssue " +
                        $"with identifier {CanonicalUrls.ObservationSeriesSystem}|{series} was based on it and is retracted: " +
                        $"treat them as entered-in-error. MagCds knowledge {knowledge.Version}."),
                },
            ],
        };
    }

    private List<Identifier> Identifiers(string urn, EvaluationInput input) =>
    [
        new Identifier("urn:ietf:rfc:3986", urn),
        new Identifier(CanonicalUrls.ObservationSeriesSystem, DeterministicIds.SeriesValue(input)),
    ];

    private CodeableConcept Method(string ruleId, string ruleName) => new()
    {
        Coding = [new Coding(CanonicalUrls.RuleSystem, ruleId, ruleName) { Version = knowledge.Version }],
        Text = $"MagCds knowledge {knowledge.Version}, rule '{ruleId}'",
    };

    private static Coding CategoryCoding(Category c) => c switch
    {
        Category.Elevated => new Coding(CanonicalUrls.InterpretationSystem, "elevated", "Raised: above the reference interval or positive"),
        Category.NotElevated => new Coding(CanonicalUrls.InterpretationSystem, "not-elevated", "Not raised: within the reference interval or negative"),
        _ => new Coding(CanonicalUrls.InterpretationSystem, "cannot-interpret", "Cannot be interpreted safely"),
    };

    private static string Heading(Category c) => c switch
    {
        Category.Elevated => "Raised anti-MAG IgM result.",
        Category.NotElevated => "Anti-MAG IgM result not raised.",
        _ => "This anti-MAG IgM result cannot be interpreted safely.",
    };

    private IReadOnlyList<string> CategoryStatements(Category c) => c switch
    {
        Category.Elevated => knowledge.Guidance.Elevated,
        Category.NotElevated => knowledge.Guidance.NotElevated,
        _ => knowledge.Guidance.CannotInterpret,
    };

    private string BasisText(Observation obs, Interpretation i)
    {
        var sb = new StringBuilder();
        sb.Append($"Result: {i.Value.Display}, status {obs.Status?.ToString().ToLowerInvariant()}, dated {TrendBuilder.DateText(obs)}.");
        if (i.Basis is { } b) sb.Append($" Judged against: {b.Display}, from {b.OriginText}.");
        sb.Append(" Rule: ").Append(i.Rule);
        foreach (var n in i.Notes) sb.Append(' ').Append(n);
        sb.Append(" Interpretation: ").Append(i.Category switch
        {
            Category.Elevated => "raised",
            Category.NotElevated => "not raised",
            _ => "cannot be interpreted",
        });
        if (i.Stratum is { } s) sb.Append("; ").Append(s.Name);
        if (i.Preliminary) sb.Append("; preliminary result");
        sb.Append($". MagCds knowledge {knowledge.Version}.");
        return sb.ToString();
    }

    private static string TrendText(Trend t)
    {
        var sb = new StringBuilder("Trend of earlier results of the same assay for this patient (information, not a judgement of response):\n\n| date | result |\n|---|---|\n");
        foreach (var p in t.Points) sb.Append($"| {p.Date} | {p.Display}{(p.IsCurrent ? " (this result)" : "")} |\n");
        sb.Append('\n');
        sb.Append(t.PercentFromPrevious is { } prev ? $"Change from the previous result: {Signed(prev)}%. " : "Change from the previous result: not computed. ");
        sb.Append(t.PercentFromFirst is { } first ? $"Change from the first result shown: {Signed(first)}%." : "Change from the first result shown: not computed.");
        if (t.Note is not null) sb.Append(' ').Append(t.Note);
        return sb.ToString();
    }

    private static string Signed(decimal v) => (v > 0 ? "+" : "") + ValueReader.Format(v);

    /// <summary>Statement texts with their citation labels, and the cited sources, for doors that show a statement on its own.</summary>
    public (string Text, IReadOnlyList<Citation> Citations) Cite(IEnumerable<string> statementIds)
    {
        var cited = new List<string>();
        string text = Statements(statementIds, cited);
        return (text, cited.Select(knowledge.Citation).ToList());
    }

    /// <summary>Statement texts, each followed by its citation labels; the cited ids are collected for the reference list.</summary>
    private string Statements(IEnumerable<string> ids, List<string> cited)
    {
        var sb = new StringBuilder();
        foreach (var s in knowledge.StatementsFor(ids))
        {
            if (sb.Length > 0) sb.Append(' ');
            sb.Append(s.Text).Append(" [").Append(string.Join("; ", s.Citations.Select(c => knowledge.Citation(c).Label))).Append(']');
            foreach (var c in s.Citations) if (!cited.Contains(c)) cited.Add(c);
        }
        return sb.ToString();
    }

    private Citation PrimaryCitation(Interpretation i) =>
        knowledge.Citation(i.Stratum is not null ? i.Stratum.Statements.Select(knowledge.Statement).First().Citations[0]
            : i.Basis?.Profile?.ReferenceInterval.Citation ?? "source-document");

    private static DataType? Occurrence(Observation obs) =>
        obs.IssuedElement?.Value is DateTimeOffset issued ? new FhirDateTime(issued)
        : obs.Effective switch
        {
            FhirDateTime d => (FhirDateTime)d.DeepCopy(),
            Period p => p.StartElement is { } start ? (FhirDateTime)start.DeepCopy() : null,
            Instant inst when inst.Value is DateTimeOffset v => new FhirDateTime(v),
            _ => null,
        };

    private static ResourceReference ObservationReference(EvaluationInput input) =>
        input.Reference is not null ? new ResourceReference(input.Reference)
        : input.Observation.Identifier.FirstOrDefault(i => i.Value is not null) is { } id
            ? new ResourceReference { Type = "Observation", Identifier = (Identifier)id.DeepCopy() }
            : new ResourceReference { Type = "Observation", Display = "the anti-MAG IgM Observation in the request (it has no id or identifier)" };

    private static IEnumerable<ResourceReference> TrendReferences(Trend? t) =>
        t?.Points.Where(p => !p.IsCurrent && p.Reference is not null).Select(p => new ResourceReference(p.Reference)) ?? [];

    /// <summary>DetectedIssue.patient is Reference(Patient): only a subject that is (or may be) a Patient is copied.</summary>
    private static ResourceReference? PatientReference(Observation obs) =>
        obs.Subject?.Reference is { } r && !r.StartsWith("Patient/", StringComparison.Ordinal) && !r.StartsWith("urn:", StringComparison.Ordinal) && !r.Contains("/Patient/", StringComparison.Ordinal)
            ? null
            : SubjectCopy(obs);

    /// <summary>The evaluator only builds outputs for Observations with a subject.</summary>
    private static ResourceReference SubjectCopy(Observation obs) =>
        (ResourceReference)(obs.Subject ?? throw new InvalidOperationException("Outputs need a subject.")).DeepCopy();

    public static string ReasonCode(CannotInterpretReason r) => r switch
    {
        CannotInterpretReason.NoInterval => "no-interval",
        CannotInterpretReason.UnitMismatch => "unit-mismatch",
        CannotInterpretReason.CensoredAcrossLimit => "censored-across-limit",
        CannotInterpretReason.NegativeValue => "negative-value",
        CannotInterpretReason.ImplausibleValue => "implausible-value",
        CannotInterpretReason.UnreadableQualitative => "unreadable-value",
        CannotInterpretReason.UnreadableRatio => "unreadable-ratio",
        _ => "interpretation-conflict",
    };

    public static string ReasonDisplay(CannotInterpretReason r) => r switch
    {
        CannotInterpretReason.NoInterval => "No reference range and no known assay for this unit",
        CannotInterpretReason.UnitMismatch => "Value and reference range are in different units",
        CannotInterpretReason.CensoredAcrossLimit => "Censored value may lie on either side of the limit",
        CannotInterpretReason.NegativeValue => "Negative value",
        CannotInterpretReason.ImplausibleValue => "Implausibly large value",
        CannotInterpretReason.UnreadableQualitative => "Value is not a number or a recognised qualitative result",
        CannotInterpretReason.UnreadableRatio => "Ratio is not a 1:n titre",
        _ => "Laboratory flag contradicts the laboratory's own range",
    };
}
