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
}
