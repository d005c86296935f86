using System.Data;
using System.Diagnostics.Metrics;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Tests.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Tests;

/// <summary>
/// Review of b51c674..HEAD (the executor's single autocommit read, TryRentAgain, memoized classification,
/// SaverDbConnection.BeginCall, transaction calls, Dispose during an async execution). Each test states what it
/// observed and what it expected.
/// </summary>
public class ChangeReviewTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Observed: ExecuteReader(CommandBehavior.CloseConnection) in a transaction SQLite has ended (ON CONFLICT ROLLBACK)
    /// still throws InvalidOperationException, but now closes the connection too, which completes the transaction, so
    /// the Rollback its message asks for throws "Rollback was called on a transaction that has already completed".
    /// Expected (as before the change, when Bind refused it before the call; Microsoft.Data.Sqlite also refuses a command in a
    /// transaction rolled back externally before it makes a reader): the command is refused before it runs; the connection stays open and the transaction can be rolled
    /// back. Why: the check moved from SaverDbCommand.Bind (before the call) into Executor.ExecuteCore, whose failure
    /// takes ExecuteDbDataReader's catch, and ReaderFailed closes a CloseConnection command's connection.
    /// </summary>
    [Test]
    public void ExecuteReader_with_CloseConnection_refused_in_a_transaction_SQLite_ended_leaves_the_connection_open()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE ON CONFLICT ROLLBACK); INSERT INTO t VALUES (1)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var transaction = connection.BeginTransaction();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)");
        Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)")); // SQLite rolls back

        using var select = connection.CreateCommand();
        select.CommandText = "SELECT x FROM t";
        Should.Throw<InvalidOperationException>(() => select.ExecuteReader(CommandBehavior.CloseConnection));

        connection.State.ShouldBe(ConnectionState.Open, "a command refused before it ran closed the connection");
        Should.NotThrow(transaction.Rollback);
    }
    /// <summary>
    /// Observed: a transaction disposed (to roll back, as a <c>using</c> block ends) while another thread's Close is
    /// rolling it back throws InvalidOperationException ("The connection was closed while this call ran..."). Expected:
    /// Dispose returns quietly, as it did before the change (Rollback then found SQLite out of the transaction, or ran
    /// its own ROLLBACK) and as it does once Close has finished: Close rolls the transaction back, nothing is lost, and
    /// a Dispose that throws masks the exception the using block is unwinding with. Why: Rollback now runs as a call
    /// (RunAsCall), and SaverDbConnection.BeginCall throws for a call begun after Close took the physical connection,
    /// while the transaction is marked completed only at the end of Close (CompleteOnClose). A rollback hook on the
    /// physical connection holds Close inside its ROLLBACK while the test thread disposes the transaction.
    /// </summary>
    [Test]
    public void Disposing_a_transaction_while_another_thread_closes_its_connection_does_not_throw()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");

        using var inRollback = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var hooked = 0;
        var handle = connection.InnerConnection.Handle;
        raw.sqlite3_rollback_hook(handle, _ =>
        {
            if (Interlocked.Exchange(ref hooked, 1) == 0)
            {
                inRollback.Set();
                release.Wait(Bound);
            }
        }, null);

        var closing = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        inRollback.Wait(Bound).ShouldBeTrue("Close rolls the transaction back");

        // A Dispose that waited for Close instead of throwing would wait for the hook: release it after a bound.
        var disposing = Task.Factory.StartNew(transaction.Dispose, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        disposing.ContinueWith(_ => release.Set(), TaskScheduler.Default);
        if (Task.WaitAny([disposing], TimeSpan.FromSeconds(5)) < 0)
        {
            release.Set();
        }

        closing.Wait(Bound).ShouldBeTrue("Close ended");
        Exception? disposeError = null;
        try
        {
            disposing.Wait(Bound).ShouldBeTrue("Dispose ended");
        }
        catch (AggregateException wrapped)
        {
            disposeError = wrapped.InnerException;
        }

        raw.sqlite3_rollback_hook(handle, null, null);
        connection.Dispose();
        disposeError.ShouldBeNull($"the transaction's Dispose threw {disposeError}");
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }
}
