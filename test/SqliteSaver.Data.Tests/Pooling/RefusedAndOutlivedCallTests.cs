using System.Data;
using System.Diagnostics.Metrics;
using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Diagnostics;
using SQLitePCL;

namespace SqliteSaver.Data.Tests.Pooling;

/// <summary>
/// Calls refused before they run, and calls that outlive what began them: nothing is run, kept or thrown that the
/// caller did not ask for, and nothing of the physical connection is left held.
/// </summary>
public class RefusedAndOutlivedCallTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// ExecuteReader(CommandBehavior.CloseConnection) in a transaction SQLite has ended (ON CONFLICT ROLLBACK) is
    /// refused with InvalidOperationException before it runs, as Microsoft.Data.Sqlite refuses before it makes a
    /// reader: the connection stays open and the transaction can be rolled back, as the message asks.
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
    /// A transaction disposed (to roll back, as a <c>using</c> block ends) while another thread's Close is rolling it
    /// back returns quietly, as it does once Close has finished: Close rolls it back, and a Dispose that threw would
    /// mask the exception the using block unwinds with. A rollback hook on the physical connection holds Close inside
    /// its ROLLBACK while the test thread disposes the transaction.
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

    /// <summary>
    /// With Statement Cache Size=0, a command disposed while its ExecuteNonQueryAsync waits at the write gate (as
    /// Dapper's pipelined multi-exec does) has its statement finalized as the execution ends (sqlite3_next_stmt finds
    /// none), as for a command disposed after its task was awaited; the same holds for text over 16 KiB and parameters
    /// that get a statement of their own.
    /// </summary>
    [Test]
    public async Task A_command_disposed_during_its_async_execution_does_not_keep_an_uncacheable_statement_after_it_ends()
    {
        const string insert = "INSERT INTO t VALUES (@x)";
        var connectionString = Folder.ConnectionString("Statement Cache Size=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        await using var writer = new SaverDbConnection(connectionString);
        await writer.OpenAsync();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var handle = connection.InnerConnection.Handle!;

        // Baseline: disposed after its task is awaited, the statement is finalized.
        using (var first = connection.CreateCommand())
        {
            first.CommandText = insert;
            first.Parameters.AddWithValue("@x", 0);
            (await first.ExecuteNonQueryAsync()).ShouldBe(1);
        }

        Prepared(handle, insert).ShouldBe(0);

        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;
        var transaction = await writer.BeginTransactionAsync(); // holds the process's write gate
        var command = connection.CreateCommand();
        command.CommandText = insert;
        command.Parameters.AddWithValue("@x", 1);
        var execution = command.ExecuteNonQueryAsync();
        Wait.Until(() => gate.WaitingCount == 1 || execution.IsCompleted);
        execution.IsCompleted.ShouldBeFalse("the write waits at the gate");
        command.Dispose(); // before awaiting, as Dapper's pipelined multi-exec does
        await transaction.CommitAsync();
        await transaction.DisposeAsync();
        (await execution.WaitAsync(Bound)).ShouldBe(1);

        Prepared(handle, insert).ShouldBe(0, "the disposed command's statement is still prepared after its execution ended");
    }

    /// <summary>
    /// An execution that found the connection open but whose call begins after another thread's Close took the
    /// physical connection throws InvalidOperationException and gives back the kept statement it rented: the next
    /// renter of that physical connection (Max Pool Size=1) finds its text kept. Close is run to its end inside the
    /// second statement-cache lookup (the metric recorded in Bind), as CloseRaceTests does.
    /// </summary>
    [Test]
    public void An_execution_refused_because_Close_took_the_connection_gives_its_statement_back()
    {
        const string select = "SELECT count(*) FROM t";
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var builder = new SaverDataSourceBuilder(connectionString) { Name = "change-review-stale-statement" };
        using var dataSource = builder.Build();
        var connection = dataSource.OpenConnection();
        var command = connection.CreateCommand();
        command.CommandText = select;
        command.ExecuteScalar().ShouldBe(0L); // its statement is now kept by the physical connection's cache

        var lookups = new List<bool>();
        Task? closing = null;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, meterListener) =>
        {
            if (instrument.Meter.Name == SaverMetrics.MeterName && instrument.Name == SaverMetrics.StatementCacheLookups.Name)
            {
                meterListener.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            bool? hit = null;
            var ours = false;
            foreach (var tag in tags)
            {
                ours |= tag.Key == SaverMetrics.PoolNameTag && (string?)tag.Value == builder.Name;
                hit = tag.Key == "sqlitesaver.statement_cache.hit" ? (bool?)tag.Value : hit;
            }

            if (!ours)
            {
                return;
            }

            lock (lookups)
            {
                lookups.Add(hit ?? false);
                if (lookups.Count == 1)
                {
                    // The stale execution's lookup, in Bind: Close runs to its end before the call begins.
                    closing = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
                    closing.Wait(Bound);
                }
            }
        });
        listener.Start();

        Should.Throw<InvalidOperationException>(() => command.ExecuteScalar()); // the call of a connection closed since it was found open
        closing.ShouldNotBeNull().IsCompletedSuccessfully.ShouldBeTrue("Close completed before the execution's call began");

        using var next = dataSource.OpenConnection(); // the same physical connection
        ConnectionTests.Scalar(next, select).ShouldBe(0L);
        ConnectionTests.Scalar(next, select).ShouldBe(0L);
        bool[] seen;
        lock (lookups)
        {
            seen = [.. lookups];
        }

        GC.KeepAlive(command); // not disposed: a command that failed holds nothing of the connection's
        seen.ShouldBe([true, true, true], "lookups: the stale execution's, then the next renter's two");
    }

    /// <summary>How many statements with text <paramref name="sql"/> are prepared on the connection (sqlite3_next_stmt).</summary>
    private static int Prepared(sqlite3 handle, string sql)
    {
        var count = 0;
        var db = handle.DangerousGetHandle();
        for (var statement = NativeMethods.sqlite3_next_stmt(db, IntPtr.Zero); statement != IntPtr.Zero; statement = NativeMethods.sqlite3_next_stmt(db, statement))
        {
            count += Marshal.PtrToStringUTF8(NativeMethods.sqlite3_sql(statement)) == sql ? 1 : 0;
        }

        return count;
    }

    /// <summary>e_sqlite3's functions SQLitePCLRaw wraps only for statements it tracks.</summary>
    private static class NativeMethods
    {
        [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr sqlite3_next_stmt(IntPtr db, IntPtr statement);

        [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
        public static extern IntPtr sqlite3_sql(IntPtr statement);
    }
}
