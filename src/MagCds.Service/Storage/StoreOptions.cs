using System.ComponentModel.DataAnnotations;

namespace MagCds.Service.Storage;

public enum StoreProvider
{
    /// <summary>One SQLite file: the embedded default, for a single instance.</summary>
    Sqlite,
    /// <summary>PostgreSQL: for deployments with several replicas sharing the work.</summary>
    Postgres,
}

/// <summary>Options of the durable store (section MagCds:Store).</summary>
public sealed class StoreOptions
{
    public const string Section = "MagCds:Store";

    public StoreProvider Provider { get; set; } = StoreProvider.Sqlite;

    /// <summary>SQLite connection string; the embedded default is a file next to where the service runs.</summary>
    [Required]
    public string SqliteConnectionString { get; set; } = "Data Source=magcds.db";

    /// <summary>Npgsql connection string, required when <see cref="Provider"/> is Postgres.</summary>
    public string? PostgresConnectionString { get; set; }

    /// <summary>
    /// Days a CDS Hooks feedback comment (a clinician's free text, which may name the patient) is kept; after that the
    /// comment is erased and the rest of the feedback (outcome, override reason, time) stays for the counts. 0 keeps
    /// comments for good.
    /// </summary>
    [Range(0, 36500)]
    public int FeedbackCommentKeepDays { get; set; } = 90;
}
