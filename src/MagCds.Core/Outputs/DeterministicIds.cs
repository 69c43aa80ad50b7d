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
    public sealed record InputKeys(string Observation, string Version, string Series);

    public sealed record OutputIds(string RiskAssessmentId, string RiskAssessmentUrn, string DetectedIssueId, string DetectedIssueUrn);

    /// <summary>
    /// Who the Observation is: its subject plus its first business identifier, else its literal reference, else
    /// (a resource with neither) a fingerprint of its content. The subject is part of it so that two patients'
    /// Observations never share an identity even when a sender reuses logical ids.
    /// </summary>
    public static string ObservationKey(EvaluationInput input)
    {
        var obs = input.Observation;
        string subject = Evaluator.SubjectKey(obs) ?? "no-subject";
        var id = obs.Identifier.FirstOrDefault(i => !string.IsNullOrEmpty(i.Value));
        string who = id is not null ? $"identifier|{id.System}|{id.Value}"
            : !string.IsNullOrEmpty(obs.Id) ? $"id|{obs.Id}"
            : input.Reference is not null ? $"ref|{input.Reference}"
            : "content|" + Fingerprint(obs);
        return Hash(subject, who);
    }

    /// <summary>The Observation's version: meta.versionId, else a fingerprint of everything the interpretation reads.</summary>
    public static string VersionKey(Observation obs) =>
        !string.IsNullOrEmpty(obs.Meta?.VersionId) ? "v|" + obs.Meta.VersionId : "f|" + Fingerprint(obs);

    /// <summary>The keys of one input, computed once per evaluation.</summary>
    public static InputKeys Keys(EvaluationInput input)
    {
        string key = ObservationKey(input);
        return new InputKeys(key, VersionKey(input.Observation), key[..32]);
    }

    /// <summary>
    /// Ids and urn:uuids of the RiskAssessment and DetectedIssue of one Observation version under one knowledge
    /// version, from a single hash: the first half for the RiskAssessment, the second for the DetectedIssue.
    /// </summary>
    public static OutputIds For(InputKeys keys, string knowledgeVersion, string kind = "assessment")
    {
        byte[] h = SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\u001f', kind, keys.Observation, keys.Version, knowledgeVersion)));
        string hex = Convert.ToHexStringLower(h);
        return new OutputIds($"ra-{hex[..40]}", Urn(h.AsSpan(0, 16)), $"di-{hex[24..]}", Urn(h.AsSpan(16, 16)));
    }

    // RFC 9562 layout (version 8, "custom") so the urn:uuid is a well-formed UUID.
    private static string Urn(ReadOnlySpan<byte> sixteen)
    {
        Span<byte> g = stackalloc byte[16];
        sixteen.CopyTo(g);
        g[6] = (byte)((g[6] & 0x0F) | 0x80);
        g[8] = (byte)((g[8] & 0x3F) | 0x80);
        return "urn:uuid:" + new Guid(g, bigEndian: true).ToString();
    }

    private static string Fingerprint(Observation obs)
    {
        var sb = new StringBuilder(256);
        sb.Append(obs.Status).Append('|');
        foreach (var c in obs.Code?.Coding ?? []) sb.Append(c.System).Append('#').Append(c.Code).Append(';');
        sb.Append('|').Append(obs.Value switch
        {
            Quantity q => $"{q.Comparator}{q.Value}{q.Unit}{q.System}{q.Code}",
            Ratio r => $"{r.Numerator?.Value}:{r.Denominator?.Comparator}{r.Denominator?.Value}",
            Integer i => i.Value?.ToString(System.Globalization.CultureInfo.InvariantCulture),
            CodeableConcept cc => string.Join(";", cc.Coding.Select(c => c.System + "#" + c.Code)) + cc.Text,
            FhirString s => s.Value,
            _ => obs.Value?.TypeName,
        });
        sb.Append('|').Append(obs.DataAbsentReason?.Coding.FirstOrDefault()?.Code);
        sb.Append('|').Append(obs.Effective switch { FhirDateTime d => d.Value, Period p => p.Start, Instant i => i.Value?.ToString("o"), _ => null });
        sb.Append('|').Append(obs.IssuedElement?.Value?.ToString("o"));
        foreach (var r in obs.ReferenceRange) sb.Append("|rr").Append(r.Low?.Value).Append('-').Append(r.High?.Value).Append(r.High?.Unit);
        foreach (var c in obs.Interpretation.SelectMany(i => i.Coding)) sb.Append("|in").Append(c.Code);
        return Hash(sb.ToString());
    }

    private static string Hash(params string[] parts) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\u001f', parts))));
}
