using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Resilience;

/// <summary>Review of the asynchronous and cancellation paths: each test shows one defect.</summary>
public class AsyncReviewTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// SaverDbCommand.Cancel is documented to interrupt a call "while one of its calls runs statements or waits to",
    /// the call then throwing SQLITE_INTERRUPT. A write queued at the write gate counts as running (_running &gt; 0),
    /// but the sqlite3_interrupt Cancel makes while no statement is active is dropped by SQLite as the next statement
    /// (the library's BEGIN IMMEDIATE) starts, so the write runs and commits as if Cancel had never been called.
    /// </summary>
    [Test]
    public async Task Cancel_while_a_write_waits_at_the_write_gate_stops_the_write([Values] bool async)
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var gate = dataSource.Executor.Gate!;
        await using var holder = dataSource.OpenConnection();
        var transaction = holder.BeginTransaction(); // holds the write gate
        await using var writer = dataSource.OpenConnection();
        await using var insert = writer.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES ('cancelled')";

        var running = async ? insert.ExecuteNonQueryAsync() : Task.Run(insert.ExecuteNonQuery);
        Wait.Until(() => gate.WaitingCount == 1); // queued at the gate: the call waits to run its statement
        insert.Cancel();
        transaction.Commit(); // the gate goes to the queued write

        string outcome;
        try
        {
            outcome = $"succeeded ({await running.WaitAsync(Bound)} row)";
        }
        catch (SqliteException error)
        {
            outcome = $"SqliteException {error.SqliteErrorCode}";
        }

        var rows = PoolTests.Scalar(connectionString, "SELECT count(*) FROM t");
        (outcome, rows).ShouldBe(("SqliteException 9", (object?)0L), "Cancel() during the gate wait was lost: the write ran and committed");
    }
}
