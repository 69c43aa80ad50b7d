using Hl7.Fhir.Model;
using MagCds.Service.Storage;
using MagCds.Tests.Support;
using Npgsql;
using static MagCds.Tests.Support.WorkerHarness;

namespace MagCds.Tests.Worker;

/// <summary>
/// The store fails while the worker finishes one row of a batch: that row is handed back to be tried again, and the
/// batch's other rows go on. Nothing waits for a lease to run out, and no expired lease is counted towards a
/// "lease-expired" dead letter. (PostgreSQL, where a trigger can make one real store write fail.)
/// </summary>
public sealed class StoreFailureTests : WorkerTestBase
{
    public StoreFailureTests() : base(StoreProvider.Postgres) { }

    [Test]
    public async Task A_store_error_on_one_row_hands_it_back_and_the_rest_of_the_batch_goes_on()
    {
        // Leases far longer than the wait below: a row left leased would not be taken again in time.
        await H.StartAsync(new() { ["MagCds:Worker:Concurrency"] = "1", ["MagCds:Worker:LeaseSeconds"] = "60" });
        await WaitUntilAsync(async () => (await H.QueueAsync()).ValueKind == System.Text.Json.JsonValueKind.Object, "the store is ready");

        // The first time a row is marked done, the store answers with a serialization failure (SQLSTATE 40001, a
        // transient error); later writes succeed. A sequence counts, since the failed transaction rolls back all else.
        await using (var c = new NpgsqlConnection(H.StoreSettings["MagCds:Store:PostgresConnectionString"]))
        {
            await c.OpenAsync();
            await using var cmd = new NpgsqlCommand("""
                CREATE SEQUENCE test_done_writes;
                CREATE FUNCTION test_fail_first_done() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                  IF NEW.state = 'done' AND OLD.state = 'pending' AND nextval('test_done_writes') = 1 THEN
                    RAISE EXCEPTION 'injected by the test' USING ERRCODE = '40001';
                  END IF;
                  RETURN NEW;
                END $$;
                CREATE TRIGGER test_fail_first_done BEFORE UPDATE ON work_item FOR EACH ROW EXECUTE FUNCTION test_fail_first_done();
                """, c);
            await cmd.ExecuteNonQueryAsync();
        }

        // Three results in one transaction, so that one poll finds them all and a batch holds two.
        var transaction = new Bundle { Type = Bundle.BundleType.Transaction };
        for (int i = 0; i < 3; i++)
            transaction.Entry.Add(new Bundle.EntryComponent
            {
                Resource = Result($"store-p{i}", 23.5m, $"ACC-STORE-{i}"),
                Request = new Bundle.RequestComponent { Method = Bundle.HTTPVerb.POST, Url = "Observation" },
            });
        await Fhir.SeedAsync(transaction);

        await H.DrainedAsync(3, seconds: 30);

        var assessments = await H.AllAsync<RiskAssessment>();
        Assert.That(assessments.Select(r => r.Basis[0].Reference).Distinct().Count(), Is.EqualTo(3), "every result assessed");
        Assert.That(assessments, Has.Count.EqualTo(3), "the row written back before the store failed was not written twice");
        Assert.That(H.Service!.Logs.Lines.Count(l => l.Contains("Worker store error while processing", StringComparison.Ordinal) && l.Contains("PostgresException", StringComparison.Ordinal)
                                                    && l.Contains("not counted", StringComparison.Ordinal)), Is.EqualTo(1),
            "the store failed once, as injected, and the row was handed back uncounted");
        var queue = await H.QueueAsync();
        Assert.That(queue.GetProperty("deadLetters").GetInt64(), Is.Zero);
        await using (var c = new NpgsqlConnection(H.StoreSettings["MagCds:Store:PostgresConnectionString"]))
        {
            await c.OpenAsync();
            await using var cmd = new NpgsqlCommand("SELECT count(*), sum(expired_leases), max(attempts) FROM work_item WHERE resource_type = 'Observation'", c);
            await using var row = await cmd.ExecuteReaderAsync();
            Assert.That(await row.ReadAsync());
            Assert.That(row.GetInt64(0), Is.EqualTo(3));
            Assert.That(row.GetInt64(1), Is.Zero, "no lease ran out");
            Assert.That(row.GetInt32(2), Is.EqualTo(1), "a transient store error is not counted as an attempt");
        }
    }
}
