using System.ComponentModel.DataAnnotations;

namespace MagCds.Service.Audit;

/// <summary>Options of the audit trail (section MagCds:Audit).</summary>
public sealed class AuditOptions
{
    public const string Section = "MagCds:Audit";

    /// <summary>How long audit entries are kept; older ones are deleted (0 keeps them for ever).</summary>
    [Range(0, 36500)]
    public int KeepDays { get; set; } = 365;

    /// <summary>
    /// How long the writer gathers entries before storing them in one transaction (milliseconds), and so how much later
    /// an entry appears. Longer means fewer store writes under load; a killed process loses what it had gathered.
    /// </summary>
    [Range(1, 60_000)]
    public int BatchWindowMs { get; set; } = 100;
}
