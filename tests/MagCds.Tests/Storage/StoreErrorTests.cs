using Microsoft.Data.Sqlite;
using MagCds.Service.Storage;
using MagCds.Tests.Support;
using Npgsql;

namespace MagCds.Tests.Storage;

/// <summary>
/// Which store errors mean "out of reach, retry later" (answered 503 store-unavailable) and which are defects (500):
/// a defect must not look like an outage that a caller retries for ever while readiness stays green.
/// </summary>
public sealed class StoreErrorTests
{
    [TestCase("08006", true)]   // connection failure
    [TestCase("57P01", true)]   // admin shutdown (the database was dropped under its connections)
    [TestCase("3D000", true)]   // the database is not there
    [TestCase("53300", true)]   // too many connections
    [TestCase("28P01", true)]   // authentication failed (a rotated password)
    [TestCase("40001", true)]   // serialisation failure: a retry succeeds
    [TestCase("25006", true)]   // read-only transaction: a standby after a failover
    [TestCase("42P01", false)]  // undefined table: a defect
    [TestCase("23505", false)]  // unique violation: a defect
    [TestCase("22P02", false)]  // invalid text representation: a defect
    public void PostgreSQL_errors(string sqlState, bool unavailable) =>
        Assert.That(Database.IsUnavailable(new PostgresException("x", "ERROR", "ERROR", sqlState)), Is.EqualTo(unavailable));

    [Test]
    public void An_Npgsql_error_without_an_answer_from_the_server_is_unavailable() =>
        Assert.That(Database.IsUnavailable(new NpgsqlException("Exception while reading from stream")), Is.True);

    [TestCase(5, true)]    // SQLITE_BUSY
    [TestCase(14, true)]   // SQLITE_CANTOPEN
    [TestCase(13, true)]   // SQLITE_FULL
    [TestCase(1, false)]   // SQLITE_ERROR (bad SQL)
    [TestCase(19, false)]  // SQLITE_CONSTRAINT
    public void SQLite_errors(int code, bool unavailable) =>
        Assert.That(Database.IsUnavailable(new SqliteException("x", code)), Is.EqualTo(unavailable));

    /// <summary>
    /// Which errors the audit trail takes as "the store refuses this entry" (it is dropped so that one bad entry cannot
    /// stop the trail): a refused value only. An outage of any kind keeps every entry.
    /// </summary>
    [TestCase("22021", true)]   // character not in repertoire: a NUL in text
    [TestCase("22001", true)]   // string data right truncation
    [TestCase("23505", true)]   // unique violation
    [TestCase("28P01", false)]  // a rotated password
    [TestCase("28000", false)]  // refused by pg_hba.conf
    [TestCase("3D000", false)]  // the database is not there
    [TestCase("25006", false)]  // a read-only standby
    [TestCase("57P01", false)]  // admin shutdown
    [TestCase("53300", false)]  // too many connections
    [TestCase("42P01", false)]  // undefined table: the store's state (a schema not there), not the entry's
    public void Refused_values(string sqlState, bool refused) =>
        Assert.That(Database.RefusedValue(new PostgresException("x", "ERROR", "ERROR", sqlState)), Is.EqualTo(refused));

    [Test]
    public void SQLite_refuses_no_value() =>
        Assert.That(Database.RefusedValue(new SqliteException("x", 19)), Is.False);

    /// <summary>The code a failure is answered with, which the audit of an admin call records as well.</summary>
    [TestCase("store-out-of-reach", "store-unavailable")]
    [TestCase("store-defect", "internal-error")]
    [TestCase("refusal", "not-found")]
    [TestCase("slow-body", "timeout")]
    [TestCase("unbound-parameter", "invalid-query")] // what minimal APIs throw for ?max=abc (Kestrel's own refusals: HeadRequestTests)
    [TestCase("unexpected", "internal-error")]
    public void Outcome_code_of_a_failure(string failure, string code)
    {
        Exception e = failure switch
        {
            "store-out-of-reach" => new PostgresException("x", "FATAL", "FATAL", "57P01"),
            "store-defect" => new SqliteException("x", 19),
            "refusal" => new MagCds.Service.FhirRest.FhirRequestException(404, MagCds.Core.Evaluation.OutcomeCodes.NotFound, "No dead letter 7."),
            "slow-body" => new Microsoft.AspNetCore.Http.BadHttpRequestException("x", 408),
            "unbound-parameter" => new Microsoft.AspNetCore.Http.BadHttpRequestException("x", 400),
            _ => new InvalidOperationException("x"),
        };
        Assert.That(MagCds.Service.Hosting.FhirErrorHandler.CodeOf(e).Code, Is.EqualTo(code));
    }

    /// <summary>
    /// A SQLite file that another process holds locked (a backup tool, a second process): a write gives up after
    /// Database.SqliteBusySeconds with an error that means "out of reach" (answered 503 with Retry-After), not after the
    /// driver's 30 s per statement: a notification waited 60 s for its 503 (a black-box probe). A hang detector, with
    /// room: the bound is four times the setting.
    /// </summary>
    [Test]
    public async Task A_SQLite_write_blocked_by_another_process_gives_up_soon_as_unavailable()
    {
        await using var db = StoreUnderTest.Open(await StoreUnderTest.OptionsAsync(StoreProvider.Sqlite));
        var queue = new WorkQueue(db, TimeProvider.System);
        await queue.SetStateAsync("https://fhir.example", "x", "1", CancellationToken.None); // the file and its tables exist
        string file;
        await using (var probe = await db.OpenAsync(CancellationToken.None)) file = ((SqliteConnection)probe).DataSource;
        await using var other = new SqliteConnection($"Data Source={file};Pooling=False");
        await other.OpenAsync();
        await using (var begin = other.CreateCommand())
        {
            begin.CommandText = "BEGIN EXCLUSIVE;";
            await begin.ExecuteNonQueryAsync();
        }
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = await Assert.CatchAsync<System.Data.Common.DbException>(() => queue.SetStateAsync("https://fhir.example", "x", "2", CancellationToken.None));
        Assert.That(Database.IsUnavailable(e!), Is.True);
        Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(4 * Database.SqliteBusySeconds)));
    }
}
