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

    /// <summary>
    /// Disposing a connection while an asynchronous write of one of its commands waits at the write gate returns the
    /// physical connection to the pool at once, although the pending call still holds it: the next renter gets it
    /// with the pending call's cancellable busy handler in place (SQLite reports busy_timeout 0), and when the gate
    /// comes free the write of the disposed connection runs on the next renter's physical connection
    /// (its last_insert_rowid() is no longer 0) and commits.
    /// </summary>
    [Test]
    public async Task Disposing_a_connection_while_its_async_write_waits_at_the_gate_does_not_hand_the_write_to_the_next_renter()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=2");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var gate = dataSource.Executor.Gate!;
        await using var holder = dataSource.OpenConnection();
        var transaction = holder.BeginTransaction(); // holds the write gate
        using var cancellation = new CancellationTokenSource();

        var disposed = dataSource.OpenConnection();
        var insert = disposed.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES ('of a disposed connection')";
        var pending = insert.ExecuteNonQueryAsync(cancellation.Token);
        Wait.Until(() => gate.WaitingCount == 1);
        await disposed.DisposeAsync(); // gives up on the write, as code leaving a using block after a timeout does

        await using var next = dataSource.OpenConnection(); // the physical connection the disposed one had
        var busyTimeout = ConnectionTests.Scalar(next, "PRAGMA busy_timeout");
        transaction.Commit(); // the gate goes to the pending write
        string outcome;
        try
        {
            outcome = $"succeeded ({await pending.WaitAsync(Bound)} row)";
        }
        catch (Exception error)
        {
            outcome = error.GetType().Name;
        }

        var lastInsertRowid = ConnectionTests.Scalar(next, "SELECT last_insert_rowid()");
        var rows = PoolTests.Scalar(connectionString, "SELECT count(*) FROM t");
        (busyTimeout, lastInsertRowid, rows, outcome.StartsWith("succeeded", StringComparison.Ordinal)).ShouldBe(
            ((object?)5000L, (object?)0L, (object?)0L, false),
            $"the pending write of the disposed connection ({outcome}) used the next renter's physical connection");
    }
}
