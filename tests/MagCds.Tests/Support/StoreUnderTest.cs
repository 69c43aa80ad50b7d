using MagCds.Service.Storage;
using Microsoft.Extensions.Options;

namespace MagCds.Tests.Support;

/// <summary>A fresh store of either kind: a temporary SQLite file, or a new database on the shared PostgreSQL server.</summary>
public static class StoreUnderTest
{
    /// <summary>Settings (configuration keys) that point a service at a fresh store of this kind.</summary>
    public static async Task<Dictionary<string, string?>> SettingsAsync(StoreProvider provider) => provider switch
    {
        StoreProvider.Postgres => new()
        {
            ["MagCds:Store:Provider"] = "Postgres",
            ["MagCds:Store:PostgresConnectionString"] = await PostgresServer.Shared.CreateDatabaseAsync(),
        },
        _ => new()
        {
            ["MagCds:Store:Provider"] = "Sqlite",
            ["MagCds:Store:SqliteConnectionString"] = $"Data Source={Path.Combine(Path.GetTempPath(), $"magcds-test-{Guid.NewGuid():N}.db")}",
        },
    };

    public static async Task<StoreOptions> OptionsAsync(StoreProvider provider)
    {
        var s = await SettingsAsync(provider);
        return new StoreOptions
        {
            Provider = provider,
            SqliteConnectionString = s.GetValueOrDefault("MagCds:Store:SqliteConnectionString") ?? new StoreOptions().SqliteConnectionString,
            PostgresConnectionString = s.GetValueOrDefault("MagCds:Store:PostgresConnectionString"),
        };
    }

    public static Database Open(StoreOptions options) => new(Options.Create(options));

    /// <summary>Each stored feedback item as "card=comment", "(erased)" for a comment retention took, in card order.</summary>
    public static async Task<List<string>> FeedbackCommentsAsync(Database db)
    {
        await using var c = await db.OpenAsync(CancellationToken.None);
        await using var cmd = c.Command("SELECT card_uuid || '=' || COALESCE(user_comment, '(erased)') FROM cds_feedback ORDER BY card_uuid");
        var list = new List<string>();
        await using var r = await cmd.ExecuteReaderAsync();
        while (await r.ReadAsync()) list.Add(r.GetString(0));
        return list;
    }
}
