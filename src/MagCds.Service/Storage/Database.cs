using System.Data.Common;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Npgsql;

namespace MagCds.Service.Storage;

/// <summary>The store cannot be opened at start-up (a folder that cannot be written, a database that does not answer).</summary>
public sealed class StoreUnavailableException(string message, Exception inner) : Exception(message, inner);

/// <summary>
/// The one place that knows which database holds MagCds's state (SQLite or PostgreSQL): it opens connections and
/// creates the schema. The stores write plain SQL that both understand (named parameters, ON CONFLICT, RETURNING);
/// where the two differ, <see cref="Dialect"/> says how.
/// </summary>
public sealed class Database : IAsyncDisposable
{
    private readonly DbDataSource _source;

    public Database(IOptions<StoreOptions> options)
    {
        var o = options.Value;
        Provider = o.Provider;
        try
        {
            _source = o.Provider switch
            {
                StoreProvider.Postgres => NpgsqlDataSource.Create(o.PostgresConnectionString
                    ?? throw new OptionsValidationException(StoreOptions.Section, typeof(StoreOptions),
                        ["MagCds:Store:PostgresConnectionString is required when MagCds:Store:Provider is Postgres."])),
                // The SQLite data source reads its connection string only when it first opens: it is read here.
                _ => SqliteFactory.Instance.CreateDataSource(SqliteConnectionString(o.SqliteConnectionString)),
            };
        }
        catch (ArgumentException)
        {
            // A keyword the driver does not know, or a value of the wrong kind. The drivers' messages may quote a
            // value (part of a password with a ';' in it), so only the fact is said.
            throw new OptionsValidationException(StoreOptions.Section, typeof(StoreOptions),
                [$"the {o.Provider} connection string (MagCds:Store) is not valid: the driver refuses a keyword or a value in it (check spelling, and quote values that contain ';')."]);
        }
        try
        {
            CreateSchema();
        }
        catch (Exception e) when (e is DbException or System.Net.Sockets.SocketException or TimeoutException)
        {
            // The database's own words (they name no password); the service stops with them instead of a stack trace.
            throw new StoreUnavailableException(
                $"the store (MagCds:Store, provider {o.Provider}) could not be opened: {e.Message} " +
                (e is Microsoft.Data.Sqlite.SqliteException { SqliteErrorCode: 26 or 11 }
                    // SQLITE_NOTADB, SQLITE_CORRUPT: no restart heals the file.
                    ? "The file of MagCds:Store:SqliteConnectionString is not a SQLite database or is damaged, and a restart will not mend it: restore it from a backup, or move it away (MagCds then starts with a new, empty store)."
                    : o.Provider == StoreProvider.Sqlite
                    ? "Check that the folder of MagCds:Store:SqliteConnectionString exists and this user may write it."
                    : "Check MagCds:Store:PostgresConnectionString and that the server answers."), e);
        }
    }

    public StoreProvider Provider { get; }

    /// <summary>
    /// How long a SQLite statement waits for a lock another process holds (a backup tool, a second process on the same
    /// file) unless the connection string says: 5 s, not the driver's 30 s per statement. A write waiting longer is
    /// answered 503 store-unavailable with Retry-After, so a notification or a CDS Hooks call is not held for a minute
    /// (two statements) while its caller has long given up. This process's own writers take turns before that.
    /// </summary>
    public const int SqliteBusySeconds = 5;

    private static string SqliteConnectionString(string configured)
    {
        var b = new SqliteConnectionStringBuilder(configured);
        // The generic builder holds only the keywords the string gives (the SQLite one knows every keyword).
        var given = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = configured };
        if (!given.ContainsKey("Default Timeout") && !given.ContainsKey("Command Timeout") && !given.ContainsKey("DefaultTimeout"))
            b.DefaultTimeout = SqliteBusySeconds;
        return b.ConnectionString;
    }

    /// <summary>Log size (pages of 4 KB) at which a SQLite commit checkpoints by itself: a backstop, see OpenAsync.</summary>
    internal const int AutoCheckpointPages = 10_000;

    private readonly SemaphoreSlim _sqliteWriter = new(1, 1);

    /// <summary>
    /// A connection for a short write (every store write opens its connection here). SQLite has one writer at a time
    /// and makes the others sleep and retry when they collide (tens of milliseconds each, and a CDS Hooks call waits
    /// on its jti insert); the writers of this process take turns here instead, until the connection is disposed.
    /// PostgreSQL needs no gate.
    /// </summary>
    public async Task<Writer> OpenWriterAsync(CancellationToken ct)
    {
        var gate = Provider == StoreProvider.Sqlite ? _sqliteWriter : null;
        if (gate is not null) await gate.WaitAsync(ct);
        try
        {
            return new Writer(await OpenAsync(ct), gate);
        }
        catch
        {
            gate?.Release();
            throw;
        }
    }

    /// <summary>A connection that holds this process's SQLite write turn until it is disposed.</summary>
    public sealed class Writer(DbConnection connection, SemaphoreSlim? gate) : IAsyncDisposable
    {
        public DbConnection Connection { get; } = connection;

        public async ValueTask DisposeAsync()
        {
            try { await Connection.DisposeAsync(); }
            finally { gate?.Release(); }
        }
    }

    /// <summary>What differs between the two databases, as SQL fragments.</summary>
    public Dialect Sql => Provider == StoreProvider.Postgres ? Dialect.Postgres : Dialect.Sqlite;

    public async Task<DbConnection> OpenAsync(CancellationToken ct)
    {
        var c = await _source.OpenConnectionAsync(ct);
        if (Provider == StoreProvider.Sqlite)
        {
            // With write-ahead logging, NORMAL syncs at checkpoints instead of at every commit: a commit survives the
            // process being killed (what the worker's guarantees rest on) and may be lost only on power loss, while
            // each commit (a hook call's jti, a queue row) costs microseconds instead of a disk flush.
            // Checkpoints (copying the log into the database, with the flush) are SqliteCheckpointer's work, in the
            // background: left to SQLite, they run inside whichever commit crosses 1,000 pages, holding the writer
            // for tens of milliseconds while CDS Hooks calls wait to record their jti. The raised automatic threshold
            // only bounds the log should the background checkpoints stop.
            await using var pragma = c.Command($"PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = {AutoCheckpointPages};");
            await pragma.ExecuteNonQueryAsync(ct);
        }
        return c;
    }

    /// <summary>
    /// Whether a store error means the store is out of reach or out of breath (a retry later may succeed) rather than
    /// that it answered and refused (a defect: bad SQL, a violated constraint). Connection, I/O, time-out and pool
    /// errors, PostgreSQL classes 08 (connection), 28 (authorisation), 53 (resources), 57P (shutdown), 40001/40P01
    /// (serialisation, deadlock), a database that is not there (3D000) and a read-only standby (25006, the address
    /// still pointing at the old primary after a failover); SQLite busy, locked, read-only, I/O, full and cannot-open.
    /// </summary>
    public static bool IsUnavailable(DbException e) => e switch
    {
        PostgresException p => p.SqlState.StartsWith("08", StringComparison.Ordinal) || p.SqlState.StartsWith("28", StringComparison.Ordinal)
                               || p.SqlState.StartsWith("53", StringComparison.Ordinal) || p.SqlState.StartsWith("57P", StringComparison.Ordinal)
                               || p.SqlState is "3D000" or "40001" or "40P01" or "25006",
        NpgsqlException => true, // not an answer of the server: I/O, time-out, an exhausted pool
        SqliteException s => (s.SqliteErrorCode & 0xFF) is 5 or 6 or 8 or 10 or 13 or 14, // BUSY LOCKED READONLY IOERR FULL CANTOPEN
        _ => false,
    };

    /// <summary>
    /// Whether the store refused a value it was given (PostgreSQL classes 22, data exception, such as a NUL in text,
    /// and 23, integrity constraint): the row is at fault, not the store. Every other error may be the store's state
    /// and says nothing about the row. SQLite refuses no value MagCds writes.
    /// </summary>
    public static bool RefusedValue(DbException e) =>
        e is PostgresException p && (p.SqlState.StartsWith("22", StringComparison.Ordinal) || p.SqlState.StartsWith("23", StringComparison.Ordinal));

    /// <summary>Whether the database answers (for readiness checks).</summary>
    public async Task<bool> PingAsync(CancellationToken ct)
    {
        try
        {
            await using var c = await OpenAsync(ct);
            await using var cmd = c.CreateCommand();
            cmd.CommandText = "SELECT 1";
            await cmd.ExecuteScalarAsync(ct);
            return true;
        }
        catch (DbException) { return false; }
    }

    public ValueTask DisposeAsync()
    {
        _sqliteWriter.Dispose();
        return _source.DisposeAsync();
    }

    private void CreateSchema()
    {
        using var c = _source.OpenConnection();
        if (Provider == StoreProvider.Sqlite)
        {
            // Write-ahead logging lets readers (admin, health) run while the worker writes; it cannot be set in a transaction.
            using var wal = c.Command("PRAGMA journal_mode = WAL;");
            wal.ExecuteNonQuery();
        }
        using var tx = c.BeginTransaction();
        using var cmd = c.CreateCommand();
        cmd.Transaction = tx;
        // Replicas starting together must not race to create the same tables.
        cmd.CommandText = (Provider == StoreProvider.Postgres ? "SELECT pg_advisory_xact_lock(4242001);" : "") + Schema.Replace("{id}", Sql.IdentityColumn, StringComparison.Ordinal);
        cmd.ExecuteNonQuery();
        // Columns added after the first release: a store made by an earlier release gets them (SQLite has no
        // ADD COLUMN IF NOT EXISTS, so it is asked first).
        foreach (var (table, column, type) in AddedColumns)
        {
            cmd.CommandText = Provider == StoreProvider.Postgres
                ? $"SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = '{column}'"
                : $"SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = '{column}'";
            if (Convert.ToInt64(cmd.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture) > 0) continue;
            cmd.CommandText = $"ALTER TABLE {table} ADD COLUMN {column} {type}";
            cmd.ExecuteNonQuery();
        }
        tx.Commit();
    }

    /// <summary>Columns added to existing tables since the first release (also created for a new store this way).</summary>
    private static readonly (string Table, string Column, string Type)[] AddedColumns =
    [
        // Leases that ran out without the row being finished or handed back: a row that crashes the process.
        ("work_item", "expired_leases", "INTEGER NOT NULL DEFAULT 0"),
        // The series key (a hash of the Observation's identity, no PHI) of the outputs an assessment wrote: what finds
        // them again once the Observation is deleted from the server and can no longer be read.
        ("worker_assessed", "series", "TEXT"),
        // The knowledge version of that assessment: what a re-assessment after a knowledge upgrade selects (NULL: an
        // assessment recorded before this column, whose knowledge is not known, so it is taken as another).
        ("worker_assessed", "knowledge_version", "TEXT"),
    ];

    // Times are Unix milliseconds (BIGINT) in both databases, so comparisons and arithmetic are the same SQL.
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS cds_feedback (
            id {id},
            service_id TEXT NOT NULL,
            card_uuid TEXT NOT NULL,
            outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'overridden')),
            accepted_suggestions TEXT NOT NULL,
            override_system TEXT, override_code TEXT, override_display TEXT,
            user_comment TEXT,
            outcome_timestamp TEXT NOT NULL,
            UNIQUE (service_id, card_uuid, outcome, outcome_timestamp));

        CREATE TABLE IF NOT EXISTS work_item (
            id {id},
            server TEXT NOT NULL,
            resource_type TEXT NOT NULL,
            resource_id TEXT NOT NULL,
            source TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead', 'replayed')),
            generation INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            enqueued_at BIGINT NOT NULL,
            due_at BIGINT NOT NULL,
            lease_owner TEXT,
            lease_until BIGINT,
            outcome TEXT,
            finished_at BIGINT);
        CREATE UNIQUE INDEX IF NOT EXISTS work_item_one_pending ON work_item (server, resource_type, resource_id) WHERE state = 'pending';
        CREATE INDEX IF NOT EXISTS work_item_due ON work_item (state, due_at);
        CREATE INDEX IF NOT EXISTS work_item_finished ON work_item (state, finished_at);

        CREATE TABLE IF NOT EXISTS audit_event (
            id {id},
            at BIGINT NOT NULL,
            door TEXT NOT NULL,
            caller TEXT NOT NULL,
            correlation_id TEXT NOT NULL,
            resource TEXT NOT NULL,
            version TEXT,
            knowledge_version TEXT NOT NULL,
            outcome TEXT NOT NULL,
            outputs TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS audit_event_at ON audit_event (at);

        CREATE TABLE IF NOT EXISTS worker_assessed (
            server TEXT NOT NULL,
            resource_type TEXT NOT NULL,
            resource_id TEXT NOT NULL,
            version_id TEXT NOT NULL,
            PRIMARY KEY (server, resource_type, resource_id));

        CREATE TABLE IF NOT EXISTS seen_token (
            token_key TEXT PRIMARY KEY,
            expires_at BIGINT NOT NULL);

        CREATE TABLE IF NOT EXISTS worker_state (
            server TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (server, name));
        """;
}

/// <summary>The SQL that differs between SQLite and PostgreSQL.</summary>
public sealed record Dialect(string IdentityColumn, string SkipLocked, string ForUpdate)
{
    // SQLite: a write transaction holds the whole database (and this process's writers queue behind one gate).
    public static readonly Dialect Sqlite = new("INTEGER PRIMARY KEY AUTOINCREMENT", "", "");
    // Several replicas lease work from one table: a row another replica is leasing is skipped, not waited for; a row
    // read to be changed in the same transaction is locked until it commits.
    public static readonly Dialect Postgres = new("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "FOR UPDATE SKIP LOCKED", "FOR UPDATE");
}

/// <summary>Short-hands for parameters, so the stores read as SQL.</summary>
public static class DbCommandExtensions
{
    public static DbCommand With(this DbCommand cmd, string name, object? value)
    {
        var p = cmd.CreateParameter();
        p.ParameterName = name;
        p.Value = value ?? DBNull.Value;
        cmd.Parameters.Add(p);
        return cmd;
    }

    public static DbCommand Command(this DbConnection c, string sql, DbTransaction? tx = null)
    {
        var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.Transaction = tx;
        return cmd;
    }
}
