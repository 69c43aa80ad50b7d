using System.ComponentModel.DataAnnotations;

namespace MagCds.Service.Storage;

/// <summary>Options of the durable store (section MagCds:Store).</summary>
public sealed class StoreOptions
{
    public const string Section = "MagCds:Store";

    /// <summary>SQLite connection string; the embedded default is a file next to where the service runs.</summary>
    [Required]
    public string SqliteConnectionString { get; set; } = "Data Source=magcds.db";
}
