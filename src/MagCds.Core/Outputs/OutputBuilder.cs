using System.Collections.Concurrent;
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
public sealed class OutputBuilder(KnowledgeBase knowledge, CanonicalUrls canonical)
{
    private readonly string _riskAssessmentProfile = canonical.Profile(CanonicalUrls.Profiles.RiskAssessment);
    private readonly string _detectedIssueProfile = canonical.Profile(CanonicalUrls.Profiles.DetectedIssue);

    // Text that depends only on the knowledge is rendered once and shared by every output (speed, and memory for
    // large Bundles): statement blocks by (statement list, prefix), reference lists by the set of sources cited.
    // The blocks an output shows are then found by category or by the knowledge's own instances (no text hashed).
    private readonly ConcurrentDictionary<(IReadOnlyList<string> Ids, string Prefix), Cited> _blocks = new(new BlockKeyComparer());
    private readonly ConcurrentDictionary<(Cited, Cited?, Cited?, Cited?, Cited?), (IReadOnlyList<Citation> Citations, string Text)> _references = new();
    private readonly Cited?[] _categoryBlocks = new Cited?[Enum.GetValues<Category>().Length];
    private readonly string?[] _firstNotes = new string?[Enum.GetValues<Category>().Length];
    private readonly ConcurrentDictionary<Stratum, Cited> _stratumBlocks = new(ReferenceEqualityComparer.Instance);
    private readonly ConcurrentDictionary<AssayProfile, Cited> _caveatBlocks = new(ReferenceEqualityComparer.Instance);
    private readonly ConcurrentDictionary<Category, Cited?> _trendBlocks = new();
    private Cited? _options;
    private readonly string _knowledgeLine = $"MagCds knowledge {knowledge.Version}. {knowledge.IntendedUse}";

    /// <summary>
    /// A rendered block of statements with the ids of the sources it cites. A class, not a record: blocks are cached,
    /// so one block is one instance, and the reference-list cache keys on instances instead of hashing kilobytes of
    /// text on every evaluation.
    /// </summary>
    private sealed class Cited(string text, IReadOnlyList<string> citationIds)
    {
        public string Text { get; } = text;
        public IReadOnlyList<string> CitationIds { get; } = citationIds;
    }

    /// <summary>
    /// The words of an interpretation, built once and used by every output and every door (RiskAssessment notes,
    /// DetectedIssue detail, CDS Hooks card detail), so that they can never say different things.
    /// </summary>
    public Explanation Explain(Observation obs, Interpretation i, DateTimeOffset? when)
    {
        var category = CategoryBlock(i.Category);
        Cited? stratum = i.Stratum is { } s ? _stratumBlocks.GetOrAdd(s, s => Block(s.Statements, $"Titre group: {s.Name}. ")) : null;
        Cited? caveats = i.Basis?.Profile is { Caveats.Count: > 0 } p ? _caveatBlocks.GetOrAdd(p, p => Block(p.Caveats, "Caveat: ")) : null;
        Cited? options = i.Category == Category.Elevated ? OptionsBlock() : null;
        Cited? trendStatements = i.Trend is null ? null : TrendBlock(i.Category);

        // The reference list depends only on which blocks are shown, so it is rendered once per combination.
        var key = (category, stratum, caveats, options, trendStatements);
        var (citations, referencesText) = _references.TryGetValue(key, out var rendered) ? rendered
            : _references.GetOrAdd(key, ReferenceList([category, stratum, caveats, options, trendStatements]));

        string[] guidance = stratum is null
            ? caveats is null ? [category.Text] : [category.Text, caveats.Text]
            : caveats is null ? [category.Text, stratum.Text] : [category.Text, stratum.Text, caveats.Text];
        return new Explanation(Heading(i.Category), BasisText(obs, i, when), guidance, options?.Text,
            i.Trend is { } t ? (trendStatements is null ? TrendText(t) : TrendText(t) + "\n\n" + trendStatements.Text) : null, citations, _knowledgeLine, referencesText)
        {
            FirstNote = FirstNote(i.Category),
        };
    }

    private Cited OptionsBlock() => _options ??= Block(knowledge.Guidance.Options, "Treatment approaches reported in the sources cited (information, not orders): ");

    /// <summary>
    /// The trend's statements that the category's guidance has not already shown (a raised result's guidance states
    /// that titres do not track severity, so its trend does not say it again); null when none is left.
    /// </summary>
    private Cited? TrendBlock(Category c) => _trendBlocks.GetOrAdd(c, c =>
    {
        var shown = CategoryStatements(c);
        var rest = knowledge.Guidance.Trend.Where(id => !shown.Contains(id)).ToList();
        return rest.Count == 0 ? null : Block(rest, "");
    });

    private Cited CategoryBlock(Category c) => _categoryBlocks[(int)c] ??= Block(CategoryStatements(c), "");

    /// <summary>The heading followed by the category's statements: the RiskAssessment's first note.</summary>
    private string FirstNote(Category c) => _firstNotes[(int)c] ??= Block(CategoryStatements(c), Heading(c) + " ").Text;

    /// <summary>The sources the shown blocks cite, in order of first citation, and their rendered list.</summary>
    private (IReadOnlyList<Citation> Citations, string Text) ReferenceList(IEnumerable<Cited?> shown)
    {
        var ids = new List<string>();
        foreach (var c in shown)
            if (c is not null) foreach (var id in c.CitationIds) if (!ids.Contains(id)) ids.Add(id);
        var list = ids.Select(knowledge.Citation).ToList();
        return (list, "References: " + string.Join(" ", list.Select(c => $"[{c.Label}] {c.Text} {c.Url}")));
    }

    public (RiskAssessment RiskAssessment, DetectedIssue? DetectedIssue, Explanation Explanation) Build(
        EvaluationInput input, DeterministicIds.InputKeys keys, DateTimeOffset? when, Interpretation i)
    {
        var obs = input.Observation;
        var status = i.Preliminary ? ObservationStatus.Preliminary : ObservationStatus.Final;
        var x = Explain(obs, i, when);
        var ids = DeterministicIds.For(keys, knowledge.Version, trendBasis: i.HistoryBasis);
        var occurrence = Occurrence(obs);
        var observationRef = ObservationReference(input);

        var notes = new List<Annotation>(6) { Note(x.FirstNote) };
        for (int g = 1; g < x.Guidance.Count; g++) notes.Add(Note(x.Guidance[g]));
        if (x.Trend is not null) notes.Add(Note(x.Trend));
        notes.Add(Note(x.ReferencesText));
        notes.Add(Note(x.KnowledgeLine));

        var ra = new RiskAssessment
        {
            Id = ids.RiskAssessmentId,
            Meta = new Meta { ProfileElement = [new Canonical(_riskAssessmentProfile)], Tag = [CategoryCoding(i.Category)] },
            Identifier = Identifiers(ids.RiskAssessmentUrn, keys),
            Status = status,
            Code = new CodeableConcept { Text = "Interpretation of a serum anti-MAG IgM result" },
            Subject = SubjectCopy(obs),
            Occurrence = occurrence,
            Basis = WithTrendReferences(observationRef, i.Trend),
            Method = Method(i.RuleId, i.Basis?.Profile?.Name),
            Prediction =
            [
                new RiskAssessment.PredictionComponent
                {
                    Outcome = new CodeableConcept { Text = "Anti-MAG neuropathy" },
                    QualitativeRisk = i.Category switch
                    {
                        Category.Elevated => new CodeableConcept(Vocabulary.RiskProbabilitySystem, Vocabulary.ModerateRisk.Code, Vocabulary.ModerateRisk.Display, "raised anti-MAG IgM result"),
                        Category.NotElevated => new CodeableConcept(Vocabulary.RiskProbabilitySystem, Vocabulary.LowRisk.Code, Vocabulary.LowRisk.Display, "anti-MAG IgM result not raised"),
                        _ => null, // cannot interpret: no risk is stated at all
                    },
                    Rationale = x.Basis,
                },
            ],
            Mitigation = x.Options,
            Note = notes,
        };

        if (i.Category == Category.NotElevated) return (ra, null, x);

        string detail = DetailText(x);

        var di = new DetectedIssue
        {
            Id = ids.DetectedIssueId,
            Meta = new Meta { ProfileElement = [new Canonical(_detectedIssueProfile)], Tag = [CategoryCoding(i.Category)] },
            Identifier = Identifiers(ids.DetectedIssueUrn, keys),
            Status = status,
            Code = new CodeableConcept
            {
                Coding = [new Coding(Vocabulary.ActCodeSystem, "LAB", "Lab Alert"), CategoryCoding(i.Category)],
                Text = i.Category == Category.Elevated ? "Raised anti-MAG IgM result" : "Anti-MAG IgM result cannot be interpreted safely",
            },
            Severity = i.Category == Category.Elevated ? DetectedIssue.DetectedIssueSeverity.Moderate : DetectedIssue.DetectedIssueSeverity.Low,
            Patient = PatientReference(obs),
            Identified = occurrence is null ? null : (DataType)occurrence.DeepCopy(),
            Implicated = [observationRef],
            Evidence =
            [
                new DetectedIssue.EvidenceComponent
                {
                    Code = i.Reason is { } reason
                        ? [Reason(reason)]
                        : [],
                    Detail = WithTrendReferences((ResourceReference)observationRef.DeepCopy(), i.Trend),
                },
            ],
            Detail = detail,
            Reference = PrimaryCitation(i).Url,
        };
        return (ra, di, x);
    }

    private static Annotation Note(string text) => new() { Text = new Markdown(text) };

    /// <summary>
    /// The DetectedIssue detail: heading and basis, then the guidance, options, trend and references as paragraphs.
    /// Written straight into the one string it becomes, as it is the largest text of a large answer.
    /// </summary>
    private static string DetailText(Explanation x)
    {
        const string Paragraph = "\n\n";
        int length = x.Heading.Length + 1 + x.Basis.Length + x.ReferencesText.Length + Paragraph.Length;
        foreach (var g in x.Guidance) length += Paragraph.Length + g.Length;
        if (x.Options is not null) length += Paragraph.Length + x.Options.Length;
        if (x.Trend is not null) length += Paragraph.Length + x.Trend.Length;
        return string.Create(length, x, static (span, x) =>
        {
            int n = 0;
            void Add(ReadOnlySpan<char> s, Span<char> span) { s.CopyTo(span[n..]); n += s.Length; }
            Add(x.Heading, span);
            Add(" ", span);
            Add(x.Basis, span);
            foreach (var g in x.Guidance) { Add(Paragraph, span); Add(g, span); }
            if (x.Options is not null) { Add(Paragraph, span); Add(x.Options, span); }
            if (x.Trend is not null) { Add(Paragraph, span); Add(x.Trend, span); }
            Add(Paragraph, span);
            Add(x.ReferencesText, span);
        });
    }

    /// <summary>
    /// For an entered-in-error Observation, or one deleted from its server: a RiskAssessment with status
    /// entered-in-error that carries the series identifier shared by every earlier output about that Observation, so a
    /// receiver can retract them all.
    /// </summary>
    public RiskAssessment Retraction(EvaluationInput input, DeterministicIds.InputKeys keys, bool deleted = false)
    {
        var obs = input.Observation;
        var ids = DeterministicIds.For(keys, knowledge.Version, deleted ? "deletion" : "retraction");
        string series = keys.Series;
        return new RiskAssessment
        {
            Id = "rx-" + ids.RiskAssessmentId[3..],
            Meta = new Meta { ProfileElement = [new Canonical(_riskAssessmentProfile)], Tag = [new Coding(canonical.InterpretationSystem, Vocabulary.Retraction.Code, Vocabulary.Retraction.Display)] },
            Identifier = Identifiers(ids.RiskAssessmentUrn, keys),
            Status = ObservationStatus.EnteredInError,
            Code = new CodeableConcept { Text = "Interpretation of a serum anti-MAG IgM result" },
            Subject = SubjectCopy(obs),
            Occurrence = Occurrence(obs),
            Basis = [ObservationReference(input)],
            Method = Method(Vocabulary.Rules.Retraction.Code, null),
            Note =
            [
                new Annotation
                {
                    Text = new Markdown(
                        (deleted ? "This Observation was deleted from its FHIR server. " : "The laboratory marked this Observation entered-in-error. ") +
                        "Every MagCds RiskAssessment and DetectedIssue " +
                        $"with identifier {canonical.ObservationSeriesSystem}|{series} was based on it and is retracted: " +
                        $"treat them as entered-in-error. MagCds knowledge {knowledge.Version}."),
                },
            ],
        };
    }

    private List<Identifier> Identifiers(string urn, DeterministicIds.InputKeys keys) =>
    [
        new Identifier("urn:ietf:rfc:3986", urn),
        new Identifier(canonical.ObservationSeriesSystem, keys.Series),
    ];

    private readonly ConcurrentDictionary<(string, string?), (string Display, string Text)> _methods = new();

    /// <summary>
    /// The rule applied, with the knowledge version. Named by its assay profile, or else by the built-in rule's display;
    /// the texts are made once per rule, the elements new for each output (cheaper than copying a template).
    /// </summary>
    private CodeableConcept Method(string ruleId, string? profileName)
    {
        var (display, text) = _methods.GetOrAdd((ruleId, profileName), k =>
            (k.Item2 ?? Vocabulary.Rules.BuiltIn.First(r => r.Code == k.Item1).Display, $"MagCds knowledge {knowledge.Version}, rule '{k.Item1}'"));
        return new CodeableConcept
        {
            Coding = [new Coding(canonical.RuleSystem, ruleId, display) { Version = knowledge.Version }],
            Text = text,
        };
    }

    private Coding CategoryCoding(Category c)
    {
        var v = Vocabulary.Of(c);
        return new Coding(canonical.InterpretationSystem, v.Code, v.Display);
    }

    private CodeableConcept Reason(CannotInterpretReason r)
    {
        var v = Vocabulary.Of(r);
        return new CodeableConcept(canonical.CannotInterpretSystem, v.Code, v.Display);
    }

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

    // The basis and trend texts are assembled in one builder per thread and copied out once: a new builder per
    // evaluation allocated and cleared more memory than the text it made.
    [ThreadStatic] private static StringBuilder? _scratch;

    private static StringBuilder Scratch() =>
        // A builder that grew for an unusually long trend is dropped rather than kept for the thread's life.
        (_scratch is { Capacity: <= 16 * 1024 } sb ? sb : _scratch = new StringBuilder(1024)).Clear();

    private string BasisText(Observation obs, Interpretation i, DateTimeOffset? when)
    {
        var sb = Scratch();
        sb.Append("Result: ").Append(i.Value.Display).Append(", status ").Append(StatusText(obs.Status));
        // The method and laboratory the result names are part of its basis: the same serum reads differently by
        // different methods. A lab's free text, so kept short.
        if (MethodText(obs) is { } method) AppendShort(sb.Append(", method "), method);
        if (LaboratoryText(obs) is { } lab) AppendShort(sb.Append(", laboratory "), lab);
        // Without a usable effective time the date is the report's (issued), and is called so.
        bool reportDate = TrendBuilder.DatedByReport(obs);
        sb.Append(reportDate ? ", reported " : ", dated ").Append(TrendBuilder.DateText(obs, when)).Append(reportDate ? " (no usable collection date given)." : ".");
        if (i.Basis is { } b)
        {
            sb.Append(" Judged against: ").Append(b.Display);
            if (b.Label is { } label) sb.Append(" (").Append(label).Append(')');
            sb.Append(", from ").Append(b.OriginText).Append('.');
        }
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
        var sb = Scratch().Append("Trend of earlier results of the same assay for this patient (information, not a judgement of response):\n\n| date | result |\n|---|---|\n");
        // A markdown table wherever it is shown: the lab's text in a cell is made inert (a "|" would split the cell).
        for (int i = 0; i < t.Points.Count; i++)
        {
            var p = t.Points[i];
            sb.Append($"| {p.Date} | {LabText.Inert(p.Display)}{(p.IsCurrent ? " (this result)" : "")} |\n");
            if (i == 0 && t.Omitted > 0) sb.Append($"| … | {t.Omitted} earlier results not listed |\n");
        }
        sb.Append('\n');
        sb.Append(t.PercentFromPrevious is { } prev ? $"Change from the previous result: {Signed(prev)}%. " : "Change from the previous result: not computed. ");
        sb.Append(t.PercentFromFirst is { } first ? $"Change from the first result shown: {Signed(first)}%." : "Change from the first result shown: not computed.");
        if (t.Note is not null) sb.Append(' ').Append(t.Note);
        return sb.ToString();
    }

    private static string Signed(decimal v) => (v > 0 ? "+" : "") + ValueReader.Format(v);

    /// <summary>Statement texts with their citation labels, and the cited sources, for doors that show a statement on its own.</summary>
    public (string Text, IReadOnlyList<Citation> Citations) Cite(IReadOnlyList<string> statementIds)
    {
        var block = Block(statementIds, "");
        return (block.Text, block.CitationIds.Select(knowledge.Citation).ToList());
    }

    /// <summary>Statement texts, each followed by its citation labels, after a prefix; rendered once per list and prefix.</summary>
    private Cited Block(IReadOnlyList<string> ids, string prefix) => _blocks.GetOrAdd((ids, prefix), key =>
    {
        var sb = new StringBuilder(key.Prefix);
        var cited = new List<string>();
        foreach (var s in knowledge.StatementsFor(key.Ids))
        {
            if (sb.Length > key.Prefix.Length) sb.Append(' ');
            sb.Append(s.Text).Append(" [").Append(string.Join("; ", s.Citations.Select(c => knowledge.Citation(c).Label))).Append(']');
            foreach (var c in s.Citations) if (!cited.Contains(c)) cited.Add(c);
        }
        return new Cited(sb.ToString(), cited);
    });

    /// <summary>Statement lists are compared by identity (they are the knowledge's own lists), prefixes by value.</summary>
    private sealed class BlockKeyComparer : IEqualityComparer<(IReadOnlyList<string> Ids, string Prefix)>
    {
        public bool Equals((IReadOnlyList<string> Ids, string Prefix) a, (IReadOnlyList<string> Ids, string Prefix) b) =>
            ReferenceEquals(a.Ids, b.Ids) && a.Prefix == b.Prefix;

        public int GetHashCode((IReadOnlyList<string> Ids, string Prefix) k) =>
            HashCode.Combine(System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(k.Ids), k.Prefix);
    }

    /// <summary>A lab's text of at most 80 characters, cut at a whole character with "…" when longer.</summary>
    private static void AppendShort(StringBuilder sb, string text)
    {
        if (text.Length <= 80) sb.Append(text);
        else sb.Append(ValueReader.Cut(text, 80)).Append('…');
    }

    /// <summary>The method as the laboratory names it (text, else a coding's display, else its code), if it does.</summary>
    private static string? MethodText(Observation obs)
    {
        if (obs.Method is not { } m) return null;
        if (!string.IsNullOrWhiteSpace(m.Text)) return m.Text.Trim();
        foreach (var c in m.Coding)
        {
            if (!string.IsNullOrWhiteSpace(c.Display)) return c.Display.Trim();
            if (!string.IsNullOrWhiteSpace(c.Code)) return c.Code.Trim();
        }
        return null;
    }

    /// <summary>
    /// The performing laboratory's name: the display of a performer that is an Organization by its reference and by
    /// its type alike (a person's name is never shown as the laboratory).
    /// </summary>
    private static string? LaboratoryText(Observation obs)
    {
        foreach (var r in obs.Performer)
        {
            string? byReference = r.Reference is { Length: > 0 } s && s[0] != '#' ? Evaluator.ReferenceType(s) : null;
            bool organization = (byReference ?? r.Type) == "Organization" && r.Type is null or "Organization";
            if (organization && !string.IsNullOrWhiteSpace(r.Display)) return r.Display.Trim();
        }
        return null;
    }

    private static string StatusText(ObservationStatus? s) => s switch
    {
        ObservationStatus.Final => "final",
        ObservationStatus.Amended => "amended",
        ObservationStatus.Corrected => "corrected",
        ObservationStatus.Preliminary => "preliminary",
        _ => s?.ToString().ToLowerInvariant() ?? "missing",
    };

    /// <summary>
    /// The source of what drives the output: the titre group's statement, the assay profile's interval, for a result
    /// that cannot be interpreted the statement shown about it (results of different assays are not interchangeable),
    /// else the source document.
    /// </summary>
    private Citation PrimaryCitation(Interpretation i) =>
        knowledge.Citation(i.Stratum is not null ? knowledge.Statement(i.Stratum.Statements[0]).Citations[0]
            : i.Basis?.Profile?.ReferenceInterval.Citation
              ?? (i.Category == Category.CannotInterpret && knowledge.Guidance.CannotInterpret is [var first, ..] ? knowledge.Statement(first).Citations[0] : KnowledgeBase.SourceDocumentCitation));

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

    /// <summary>The Observation's reference followed by those of the earlier results the trend shows.</summary>
    private static List<ResourceReference> WithTrendReferences(ResourceReference observation, Trend? t)
    {
        var list = new List<ResourceReference>(1 + (t?.Points.Count ?? 0)) { observation };
        if (t is not null)
            foreach (var p in t.Points)
                if (!p.IsCurrent && p.Reference is not null) list.Add(new ResourceReference(p.Reference));
        return list;
    }

    /// <summary>DetectedIssue.patient is Reference(Patient): only a subject that is (or may be) a Patient is copied.</summary>
    private static ResourceReference? PatientReference(Observation obs) =>
        obs.Subject?.Reference is ['#', ..] ? (ContainedSubject(obs) is { Type: "Patient" } contained ? contained : null)
        : obs.Subject?.Reference is { } r && !NamesPatient(r) ? null
        : SubjectCopy(obs);

    /// <summary>
    /// Whether a literal subject reference is copied into a DetectedIssue's <c>patient</c> (a Patient, or a urn that may
    /// be one): the worker searches earlier DetectedIssues by patient only then.
    /// </summary>
    public static bool NamesPatient(string reference) =>
        reference.StartsWith("Patient/", StringComparison.Ordinal) || reference.StartsWith("urn:", StringComparison.Ordinal)
        || reference.Contains("/Patient/", StringComparison.Ordinal);

    /// <summary>The evaluator only builds outputs for Observations with a subject.</summary>
    private static ResourceReference SubjectCopy(Observation obs) =>
        obs.Subject is { Reference: ['#', ..] } ? ContainedSubject(obs)
        : (ResourceReference)(obs.Subject ?? throw new InvalidOperationException("Outputs need a subject.")).DeepCopy();

    /// <summary>
    /// A subject contained in the Observation ("#p") means nothing inside another resource (FHIR's ref-1: a local
    /// reference must resolve in the same resource). The outputs name it by its business identifier instead, or, with
    /// none, say where it is, without copying the contained resource (and its demographics) into them.
    /// </summary>
    private static ResourceReference ContainedSubject(Observation obs)
    {
        var contained = obs.Contained.FirstOrDefault(c => "#" + c.Id == obs.Subject!.Reference);
        var identifier = (contained as Patient)?.Identifier.FirstOrDefault(i => !string.IsNullOrEmpty(i.Value))
                         ?? (contained as Group)?.Identifier.FirstOrDefault(i => !string.IsNullOrEmpty(i.Value));
        return identifier is not null
            ? new ResourceReference { Type = contained!.TypeName, Identifier = (Identifier)identifier.DeepCopy() }
            : new ResourceReference { Type = contained?.TypeName, Display = "the subject contained in the evaluated Observation (it has no business identifier)" };
    }
}
