using System.Security.Cryptography;
using System.Text;
using Hl7.Fhir.Model;
using MagCds.Core.Evaluation;

namespace MagCds.Core.Outputs;

/// <summary>
/// Output ids and identifiers derived from the input alone (Observation identity + version + knowledge version),
/// so an engine's retry or a redelivered event yields byte-identical resources and conditional creates match.
/// Only hashes leave this class: no identifier value of the input appears in an output id.
/// </summary>
public static class DeterministicIds
{
    /// <summary>Observation identity, version and series (shared by every version's outputs) of one input.</summary>
    /// <summary><paramref name="FromContent"/>: the Observation had no id, identifier or reference, so its identity is its content.</summary>
    public sealed record InputKeys(string Observation, string Version, string Series, bool FromContent = false);

    public sealed record OutputIds(string RiskAssessmentId, string RiskAssessmentUrn, string DetectedIssueId, string DetectedIssueUrn);

    /// <summary>
    /// Who the Observation is: its subject plus its first own business identifier, else its logical id, else an order
    /// or accession number it carries together with its code, else its literal reference, else (a resource with none
    /// of these) a fingerprint of its content. The subject is part of it so that two patients' Observations never
    /// share an identity even when a sender reuses logical ids.
    /// </summary>
    private static (string Key, bool FromContent) ObservationKey(EvaluationInput input, string? subjectKey)
    {
        var obs = input.Observation;
        string subject = subjectKey ?? Evaluator.SubjectKey(obs) ?? "no-subject";
        Identifier? own = null, order = null;
        foreach (var i in obs.Identifier)
        {
            if (string.IsNullOrEmpty(i.Value)) continue;
            if (!IsOrderLevel(i)) { own = i; break; }
            order ??= i;
        }
        Span<byte> hash = stackalloc byte[32];
        if (own is not null) Hash(hash, subject, "identifier", own.System ?? "", own.Value!);
        else if (!string.IsNullOrEmpty(obs.Id)) Hash(hash, subject, "id", obs.Id);
        else if (order is not null) Hash(hash, subject, "order-identifier", order.System ?? "", order.Value!, CodeKey(obs));
        else if (input.Reference is not null) Hash(hash, subject, "ref", input.Reference);
        else
        {
            Hash(hash, subject, "content", Content(obs, ""));
            return (Convert.ToHexStringLower(hash), true);
        }
        return (Convert.ToHexStringLower(hash), false);
    }

    /// <summary>
    /// The series an earlier release gave this input when its first identifier is an order number (it took the first
    /// identifier of any type); null when that release's series is the current one. The worker searches it too, so
    /// that outputs written before the upgrade are still superseded or withdrawn.
    /// </summary>
    public static string? EarlierReleaseSeries(EvaluationInput input)
    {
        var obs = input.Observation;
        Identifier? first = null;
        foreach (var i in obs.Identifier) if (!string.IsNullOrEmpty(i.Value)) { first = i; break; }
        if (first is null || !IsOrderLevel(first)) return null;
        Span<byte> hash = stackalloc byte[32];
        Hash(hash, Evaluator.SubjectKey(obs) ?? "no-subject", "identifier", first.System ?? "", first.Value!);
        return Convert.ToHexStringLower(hash)[..32];
    }

    /// <summary>
    /// An accession, placer or filler order number (HL7 v2 table 0203 ACSN, PLAC, FILL) names a specimen or an order,
    /// and every result of that order carries it: two anti-MAG results of one order (a BTU value and a titre) would
    /// otherwise be one Observation to MagCds, each superseding the other's assessment.
    /// </summary>
    private static bool IsOrderLevel(Identifier i)
    {
        foreach (var c in i.Type?.Coding ?? [])
            if (c.System == "http://terminology.hl7.org/CodeSystem/v2-0203" && c.Code is "ACSN" or "PLAC" or "FILL") return true;
        return false;
    }

    /// <summary>The Observation's codes, in order: which test of an order the result is.</summary>
    private static string CodeKey(Observation obs)
    {
        var sb = new StringBuilder();
        foreach (var c in obs.Code?.Coding ?? []) sb.Append(c.System).Append('#').Append(c.Code).Append(';');
        return sb.ToString();
    }

    /// <summary>
    /// The Observation's version: meta.versionId, else everything the interpretation reads. It only ever enters the
    /// output-id hash (never an output, never a log), so it is not hashed on its own.
    /// </summary>
    public static string VersionKey(Observation obs) =>
        !string.IsNullOrEmpty(obs.Meta?.VersionId) ? "v|" + obs.Meta.VersionId : Content(obs, "f|");

    /// <summary>The keys of one input, computed once per evaluation.</summary>
    /// <param name="subjectKey">The subject as the core resolved it, when it differs from the Observation's own words
    /// (a relative reference of a request that holds entries of several servers); else read from the Observation.</param>
    public static InputKeys Keys(EvaluationInput input, string? subjectKey = null)
    {
        var (key, fromContent) = ObservationKey(input, subjectKey);
        return new InputKeys(key, VersionKey(input.Observation), key[..32], fromContent);
    }

    /// <summary>
    /// Ids and urn:uuids of the RiskAssessment and DetectedIssue of one Observation version under one knowledge
    /// version, from a single hash: the first half for the RiskAssessment, the second for the DetectedIssue.
    /// </summary>
    /// <param name="trendBasis">What the outputs' trend shows of the earlier results (<see cref="Trend.Basis"/>), when
    /// they show one: the same result assessed against earlier results that show otherwise says something else, so it gets other
    /// ids (and the worker supersedes the outputs whose trend shows a result since amended or withdrawn). Without a
    /// trend the ids are those of the Observation version alone, as before trends entered them.</param>
    public static OutputIds For(InputKeys keys, string knowledgeVersion, string kind = "assessment", string? trendBasis = null)
    {
        Span<byte> h = stackalloc byte[32];
        if (trendBasis is null) Hash(h, kind, keys.Observation, keys.Version, knowledgeVersion);
        else Hash(h, kind, keys.Observation, keys.Version, knowledgeVersion, "trend", trendBasis);
        string hex = Convert.ToHexStringLower(h);
        return new OutputIds(string.Concat("ra-", hex.AsSpan(0, 40)), Urn(h[..16]), string.Concat("di-", hex.AsSpan(24)), Urn(h[16..]));
    }

    /// <summary>
    /// A urn:uuid made from 16 bytes of a hash, in the RFC 9562 layout (version 8, "custom") so it is a well-formed
    /// UUID. Every urn:uuid MagCds derives goes through here.
    /// </summary>
    public static string Urn(ReadOnlySpan<byte> sixteen)
    {
        Span<byte> g = stackalloc byte[16];
        sixteen.CopyTo(g);
        g[6] = (byte)((g[6] & 0x0F) | 0x80);
        g[8] = (byte)((g[8] & 0x3F) | 0x80);
        return string.Create(45, new Guid(g, bigEndian: true), static (span, guid) =>
        {
            "urn:uuid:".CopyTo(span);
            guid.TryFormat(span[9..], out _);
        });
    }

    /// <summary>A fingerprint of what the interpretation reads, whatever meta.versionId says (tells versions apart).</summary>
    public static string ContentKey(Observation obs) => Content(obs, "f|");

    /// <summary>What identifies an Observation's content: status, code, value, absence reason, times, ranges, flags.</summary>
    private static string Content(Observation obs, string prefix)
    {
        // Appended without boxing or LINQ (this runs for every input without meta.versionId); the text is the same as
        // appending the values as objects, which the ids of earlier releases were made from.
        // One builder per thread, copied out once: a new one per call allocated more than the text it made. One that
        // grew for an unusual input (many ranges or codings) is dropped rather than kept for the thread's life.
        var sb = (_content is { Capacity: <= 16 * 1024 } kept ? kept : _content = new StringBuilder(256)).Clear().Append(prefix);
        sb.Append(obs.Status?.ToString()).Append('|');
        foreach (var c in obs.Code?.Coding ?? []) sb.Append(c.System).Append('#').Append(c.Code).Append(';');
        sb.Append('|');
        switch (obs.Value)
        {
            case Quantity q: sb.Append(q.Comparator?.ToString()); Number(sb, q.Value); sb.Append(q.Unit).Append(q.System).Append(q.Code); break;
            case Ratio r:
                Number(sb, r.Numerator?.Value); sb.Append(':').Append(r.Denominator?.Comparator?.ToString()); Number(sb, r.Denominator?.Value);
                if (r.Numerator?.Comparator is { } nc) sb.Append("|nc").Append(nc.ToString()); // added later, only when present
                break;
            case Integer { Value: int i }: sb.Append(i); break;
            case Integer: break;
            case CodeableConcept cc:
                foreach (var c in cc.Coding) sb.Append(c.System).Append('#').Append(c.Code).Append(';');
                sb.Append(cc.Text);
                // A coding's display that contradicts its code makes the value unreadable; added later, only then.
                if (ValueReader.Read(obs) is { Contradictory: true }) sb.Append("|vx");
                break;
            case FhirString s: sb.Append(s.Value); break;
            default: sb.Append(obs.Value?.TypeName); break;
        }
        sb.Append('|').Append(obs.DataAbsentReason?.Coding.FirstOrDefault()?.Code);
        if (obs.DataAbsentReason is { Text: { } absentText }) sb.Append("|dt").Append(absentText); // added later, only when present
        sb.Append('|').Append(obs.Effective switch { FhirDateTime d => d.Value, Period p => p.Start, Instant i => i.Value?.UtcTicks.ToString(System.Globalization.CultureInfo.InvariantCulture), _ => null });
        sb.Append('|');
        if (obs.IssuedElement?.Value is { } issued) sb.Append(issued.UtcTicks);
        foreach (var r in obs.ReferenceRange)
        {
            sb.Append("|rr");
            Number(sb, r.Low?.Value);
            sb.Append('-');
            Number(sb, r.High?.Value);
            sb.Append(r.High?.Unit);
            // Added later, each only when present (so the ids of inputs without them stay as they were): the range's
            // text decides whether its high limit is inclusive, and a population-specific range is not used at all.
            if (r.Text is { } text) sb.Append("|rt").Append(text);
            if (r.High is { Unit: null, Code: null }) sb.Append("|rn"); // the outputs say a range without a unit was read in the value's
            if (r.High?.Comparator is { } rangeComparator) sb.Append("|rq").Append(rangeComparator); // "<1500" excludes its limit
            if (r.AppliesTo.Count > 0 || r.Age is not null) sb.Append("|rs");
            if (r.Type is { } type) // a range that is not a normal range is not used
            {
                sb.Append("|ty").Append(type.Text);
                foreach (var c in type.Coding) sb.Append(';').Append(c.System).Append('#').Append(c.Code);
            }
            // The range's unit code decides whether the range applies to the value at all. Added when it is not the
            // value's own code (a coded value with the same code, the usual case, keeps the ids it had), and always
            // for a titre, whose range is matched on its unit text and code.
            if (r.High is { Code: { } rangeCode } h && (obs.Value is Ratio || (obs.Value is Quantity vq && (vq.Code != rangeCode || vq.System != h.System))))
                sb.Append("|rc").Append(rangeCode).Append('@').Append(h.System);
        }
        foreach (var i in obs.Interpretation)
        {
            foreach (var c in i.Coding)
            {
                sb.Append("|in").Append(c.Code);
                if (c.System != V3Interpretation) sb.Append('@').Append(c.System); // v3 and v2 codes are read as flags
                // Codes without a verdict (local ones, v3/v2 delta flags) are read by their words.
                if ((c.System is not (V3Interpretation or V2Interpretation) || !Evaluation.Interpreter.IsVerdictCode(c.Code)) && c.Display is { } d) sb.Append('~').Append(d);
            }
            if (i.Text is { } text) sb.Append("|it").Append(text); // added later, each only when present
        }
        // The assay profile is matched on method and performer too.
        if (obs.Method is { } method)
        {
            sb.Append("|me").Append(method.Text);
            foreach (var c in method.Coding) sb.Append(';').Append(c.System).Append('#').Append(c.Code).Append('#').Append(c.Display);
        }
        foreach (var p in obs.Performer) sb.Append("|pf").Append(p.Display).Append('#').Append(p.Identifier?.Value);
        return sb.ToString();
    }

    private static void Number(StringBuilder sb, decimal? value)
    {
        if (value is { } v) sb.Append(v);
    }

    /// <summary>SHA-256 over the UTF-8 of the parts joined by U+001F, into <paramref name="destination"/> (32 bytes); no intermediate strings.</summary>
    private static void Hash(Span<byte> destination, params ReadOnlySpan<string> parts)
    {
        int max = parts.Length;
        foreach (var p in parts) max += Encoding.UTF8.GetMaxByteCount(p.Length);
        // Sized to the need: a stack buffer is zeroed on every call, so a fixed large one costs more than the hash.
        byte[]? rented = max > 1024 ? System.Buffers.ArrayPool<byte>.Shared.Rent(max) : null;
        Span<byte> buffer = rented ?? stackalloc byte[max];
        int n = 0;
        for (int i = 0; i < parts.Length; i++)
        {
            if (i > 0) buffer[n++] = 0x1F;
            n += Encoding.UTF8.GetBytes(parts[i], buffer[n..]);
        }
        // One reusable hash object per thread: a one-shot SHA256.HashData sets up and tears down the OpenSSL digest
        // context on every call, which costs more than hashing these few dozen bytes (two hashes per evaluation).
        var sha = _sha256 ??= IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        try
        {
            sha.AppendData(buffer[..n]);
            sha.GetHashAndReset(destination);
        }
        catch
        {
            // Never reuse an object that may hold half a message: the next id on this thread would be silently wrong.
            _sha256 = null;
            sha.Dispose();
            throw;
        }
        if (rented is not null) System.Buffers.ArrayPool<byte>.Shared.Return(rented);
    }

    private const string V3Interpretation = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
    private const string V2Interpretation = "http://terminology.hl7.org/CodeSystem/v2-0078";

    [ThreadStatic] private static IncrementalHash? _sha256;
    [ThreadStatic] private static StringBuilder? _content;
}
