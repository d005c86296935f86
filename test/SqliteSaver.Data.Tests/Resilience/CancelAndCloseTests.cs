using System.Data;
using System.Data.Common;
using System.Diagnostics.Metrics;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Resilience;
using SqliteSaver.Data.Tests.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Tests.Resilience;

/// <summary>
/// Cancel() and a cancelled token end a call waiting to run (for the write gate), and only the call they were made
/// for; Close ends the calls of its connection still running before the connection goes back to the pool.
/// </summary>
public class CancelAndCloseTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A BEGIN (of RunInTransaction, or BeginTransaction) has taken the write gate (the write-gate wait metric is
    /// recorded synchronously right after, on the caller's thread) when another thread closes the connection. Close
    /// detaches the physical connection at once and waits for the running BEGIN, which then succeeds (SQLite drops the
    /// interrupt made while no statement ran), and rolls it back. The call fails with the InvalidOperationException
    /// of a call ended by Close, not a NullReferenceException (RunInTransaction) or a transaction already rolled back
    /// (BeginTransaction); nothing is written, and the slot and the gate are free.
    /// </summary>
    [TestCase(true, TestName = "Close_from_another_thread_during_RunInTransactions_BEGIN_fails_it_with_InvalidOperationException_not_NullReferenceException")]
    [TestCase(false, TestName = "Close_from_another_thread_during_BeginTransactions_BEGIN_fails_it_with_InvalidOperationException_not_a_rolled_back_transaction")]
    public void Close_from_another_thread_during_BEGIN(bool unitOfWork)
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var builder = new SaverDataSourceBuilder(connectionString) { Name = "close-during-unit-of-work-begin" };
        using var dataSource = builder.Build();
        using var connection = dataSource.OpenConnection();
        Task? closing = null;
        var hooked = 0;
        using var listener = OnGateEntered(builder.Name, () =>
        {
            if (Interlocked.Exchange(ref hooked, 1) == 0)
            {
                // The BEGIN IMMEDIATE has not run. Close on another thread, as a timeout handler would, and let the
                // BEGIN go on once Close has detached the connection.
                closing = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
                Wait.Until(() => connection.State == ConnectionState.Closed);
            }
        });
        var ran = false;

        Exception? error = null;
        try
        {
            if (unitOfWork)
            {
                connection.RunInTransaction(transaction =>
                {
                    ran = true;
                    connection.CreateCommand().ExecuteNonQuery();
                });
            }
            else
            {
                connection.BeginTransaction().Dispose(); // before the fix: a transaction Close had already rolled back
            }
        }
        catch (Exception exception)
        {
            error = exception;
        }

        closing.ShouldNotBeNull().Wait(Bound).ShouldBeTrue();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
        dataSource.Statistics.InUse.ShouldBe(0);
        dataSource.Executor.Gate!.IsHeld.ShouldBeFalse();
        ran.ShouldBeFalse();
        error.ShouldBeOfType<InvalidOperationException>($"A BEGIN ended by Close threw {error}");
    }


    /// <summary>
    /// Cancel() stops a call that waits to run statements (a write queued at the write gate), the call throwing
    /// SQLITE_INTERRUPT. An interrupt alone is not enough: SQLite drops one made while no statement is active as the
    /// next statement (the library's BEGIN IMMEDIATE) starts, and the write would run and commit.
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
    /// Disposing a connection while an asynchronous write of one of its commands waits at the write gate ends that
    /// write before the physical connection goes back to the pool. Returned at once, the next renter would get it with
    /// the pending call's cancellable busy handler in place (SQLite reports busy_timeout 0), and once the gate came
    /// free the disposed connection's write would run on the next renter's connection (its last_insert_rowid() no
    /// longer 0) and commit.
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

    /// <summary>
    /// Close from another thread ends an async write waiting at the write gate, and the caller's code after its await
    /// opens the connection again and begins a transaction, while the rest of Close runs (held here in the statement a
    /// query reader of the connection runs as Close closes it, until that code has begun its transaction, 1 s at
    /// most: as that code's Open waits for Close, the 1 s passes). A slot of the pool is free (Max Pool Size=3), so
    /// nothing but the Open's own wait for Close keeps that code from running during Close; with 2, the pool's wait for
    /// a slot hid a missing one (a hunt). Before, that code ran inside Close, on the thread that cancelled the call's
    /// token: with no slot free its Open waited for the one Close was to give back until Pool Timeout; in a chaos
    /// trial, with a slot free, Close went on with the new rental's state, completed its transaction (whose Commit
    /// threw "already completed") and left the connection open on a physical connection still in a SQLite
    /// transaction, where a later insert returned 1 and was rolled back when the connection was disposed. Now that
    /// code runs on a thread Close starts, and its Open waits until Close has handed its connection back.
    /// </summary>
    [Test]
    public async Task Code_after_a_call_ended_by_Close_that_opens_the_connection_again_keeps_what_it_then_writes()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=3");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var gate = dataSource.Executor.Gate!;
        await using var holder = dataSource.OpenConnection();
        var held = holder.BeginTransaction(); // holds the write gate
        await using var connection = dataSource.OpenConnection();
        using var begun = new ManualResetEventSlim();
        connection.InnerConnection.CreateFunction("until_begun", () => begun.Wait(TimeSpan.FromSeconds(1)) ? 1L : 0L);
        using var query = connection.CreateCommand();
        query.CommandText = "SELECT 1; SELECT until_begun()";
        var reader = query.ExecuteReader(); // Close closes it, running its second statement
        reader.Read().ShouldBeTrue();
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (1)";

        var reopened = OpenAgainAfterTheWrite(); // returns once the write waits at the gate
        gate.WaitingCount.ShouldBe(1);
        await Task.Run(connection.Close);
        var transaction = await reopened.WaitAsync(Bound);
        held.Rollback();
        transaction.Commit();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)");
        await connection.DisposeAsync();

        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("2");

        async Task<SaverDbTransaction> OpenAgainAfterTheWrite()
        {
            try
            {
                await insert.ExecuteNonQueryAsync().ConfigureAwait(false); // the code after it runs where the call ends, as in a service
            }
            catch (InvalidOperationException)
            {
                // Ended by Close.
            }

            connection.Open();
            var transaction = connection.BeginTransaction(deferred: true);
            begun.Set();
            return transaction;
        }
    }

    /// <summary>
    /// As above, with a StateChange handler that waits, on Close's thread, for the code that opens the connection again
    /// to have done so (as a handler marshalled to that code's UI thread would). The Open goes on once Close has handed
    /// its connection back, before the handler. A first version of the Open's wait waited for the handler too: both
    /// waited 12 s, and the Open failed (a review).
    /// </summary>
    [Test]
    public async Task An_Open_after_a_call_ended_by_Close_does_not_wait_for_Closes_StateChange_handler()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=2;Busy Timeout=1000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        await using var holder = dataSource.OpenConnection();
        var held = holder.BeginTransaction(); // holds the write gate
        using var opened = new ManualResetEventSlim(); // disposed after the connection, whose Dispose runs the handler
        await using var connection = dataSource.OpenConnection();
        connection.StateChange += (_, change) =>
        {
            if (change.CurrentState == System.Data.ConnectionState.Closed)
            {
                opened.Wait(Bound);
            }
        };
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (1)";

        var reopened = OpenAgainAfterTheWrite();
        dataSource.Executor.Gate!.WaitingCount.ShouldBe(1);
        await Task.Run(connection.Close);

        await reopened.WaitAsync(Bound); // threw before
        connection.State.ShouldBe(System.Data.ConnectionState.Open);
        held.Rollback();

        async Task OpenAgainAfterTheWrite()
        {
            try
            {
                await insert.ExecuteNonQueryAsync().ConfigureAwait(false); // as in the test above
            }
            catch (InvalidOperationException)
            {
                // Ended by Close.
            }

            try
            {
                connection.Open();
            }
            finally
            {
                opened.Set();
            }
        }
    }

    /// <summary>
    /// A reader's Close on another thread while the connection's Close closes another reader (held in the statement that
    /// reader runs as it closes) waits until that Close has closed it too and handed the connection back, not for Close's
    /// StateChange handler, which here waits for that reader's Close to return (as one marshalled to its UI thread
    /// would). Before, the reader's Close waited until Close had returned: both waited until the reader's bound (15 s
    /// here) had passed (a review).
    /// </summary>
    [Test]
    public async Task A_readers_Close_on_another_thread_does_not_wait_for_the_connection_Closes_StateChange_handler()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=5000");
        await using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var closingFirst = new ManualResetEventSlim();
        using var secondWaits = new ManualResetEventSlim();
        HoldingReader(connection, closingFirst, secondWaits);
        using var second = connection.CreateCommand();
        second.CommandText = "SELECT 1 UNION ALL SELECT 2";
        var secondReader = second.ExecuteReader();
        secondReader.Read().ShouldBeTrue();
        var calls = connection.GetOpenPhysical("test").Calls;
        using var secondClosed = new ManualResetEventSlim();
        var handlerSawItClosed = false;
        connection.StateChange += (_, change) =>
        {
            if (change.CurrentState == System.Data.ConnectionState.Closed)
            {
                handlerSawItClosed = secondClosed.Wait(TimeSpan.FromSeconds(10)); // within the reader's bound
            }
        };

        var close = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        closingFirst.Wait(Bound).ShouldBeTrue("Close closes the first reader");
        var closingSecond = Task.Factory.StartNew(
            () =>
            {
                secondReader.Close();
                secondClosed.Set();
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
        Wait.Until(() => CloseWatchers(calls) == 1 || closingSecond.IsCompleted); // the reader's Close waits for the connection's
        secondWaits.Set();
        await close.WaitAsync(Bound);
        await closingSecond.WaitAsync(Bound);

        handlerSawItClosed.ShouldBeTrue("the second reader's Close waited for the connection's StateChange handler");
        secondReader.IsClosed.ShouldBeTrue();
    }

    /// <summary>
    /// A transaction disposed on another thread while the connection's Close runs (held in the statement a reader runs
    /// as Close closes it), before that Close has ended the transaction: the Dispose's rollback is refused, as any call
    /// after Close is, so the Dispose waits for Close, which rolls the transaction back, and returns quietly. Taking
    /// only a transaction already ended for a Close's doing, the Dispose threw the refusal (a hunt).
    /// </summary>
    [Test]
    public async Task A_transaction_disposed_on_another_thread_while_its_connection_closes_returns_once_that_Close_rolled_it_back()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=5000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        await using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
        using var closing = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        HoldingReader(connection, closing, release);
        var calls = connection.GetOpenPhysical("test").Calls;

        var close = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        closing.Wait(Bound).ShouldBeTrue("Close closes the reader");
        var disposing = Task.Factory.StartNew(transaction.Dispose, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Wait.Until(() => CloseWatchers(calls) == 1 || disposing.IsCompleted); // the Dispose waits for the Close
        release.Set();
        await close.WaitAsync(Bound);
        await disposing.WaitAsync(Bound);

        transaction.IsCompleted.ShouldBeTrue();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    /// <summary>
    /// Close from another thread ends a synchronous write waiting at the write gate while the thread pool is busy (as
    /// code blocking on async work makes it): Close returns with the connection closed, and the write throws. A first
    /// version of the change above ran the token's callbacks, which wake that wait, on the thread pool: Close waited
    /// its bound (6 s here), threw and left the connection open (a review).
    /// </summary>
    [Test]
    public void Close_ends_a_synchronous_call_waiting_at_the_gate_while_the_thread_pool_is_busy()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=2;Busy Timeout=1000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var gate = dataSource.Executor.Gate!;
        using var holder = dataSource.OpenConnection();
        var held = holder.BeginTransaction(); // holds the write gate
        var connection = dataSource.OpenConnection();
        Exception? writeError = null;
        var writer = new Thread(() =>
        {
            try
            {
                ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
            }
            catch (Exception error)
            {
                writeError = error;
            }
        });
        writer.Start();
        Wait.Until(() => gate.WaitingCount == 1);
        var release = new TaskCompletionSource(); // nothing to dispose under the queued items, which may start late
        var running = 0;
        ThreadPool.GetMinThreads(out var threads, out _);
        for (var i = 0; i < threads + 64; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem(
                _ =>
                {
                    Interlocked.Increment(ref running);
                    release.Task.Wait(Bound);
                    Interlocked.Decrement(ref running);
                },
                null);
        }

        Wait.Until(() => Volatile.Read(ref running) >= threads); // every pool thread blocked, the rest queued
        try
        {
            Should.NotThrow(connection.Close);
            connection.State.ShouldBe(System.Data.ConnectionState.Closed);
        }
        finally
        {
            release.SetResult();
        }

        Wait.Until(() => Volatile.Read(ref running) == 0);

        writer.Join(Bound).ShouldBeTrue();
        writeError.ShouldBeOfType<InvalidOperationException>();
        held.Rollback();
    }

    /// <summary>
    /// Cancel() ends an async write waiting at the write gate of a data source without pooling, and the caller's code
    /// after its await disposes the connection, closing its SQLite connection. That code runs inside Cancel, as it
    /// ends the call's wait; Cancel returns. Before, its interrupt, made after that code, threw ObjectDisposedException
    /// on the closed handle (a chaos trial; pooled, the interrupt stopped the next renter's statement instead, in 6 of
    /// 300 tries there). It no longer interrupts a call that has ended.
    /// </summary>
    [Test]
    public async Task Cancel_returns_when_the_cancelled_callers_code_disposes_the_connection()
    {
        var connectionString = Folder.ConnectionString("Pooling=false");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        await using var holder = new SaverDbConnection(connectionString);
        holder.Open();
        var held = holder.BeginTransaction();
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (1)";

        var disposed = DisposeAfterTheWrite(); // as above
        SaverDataSource.GetShared(connectionString).Executor.Gate!.WaitingCount.ShouldBe(1);
        await Task.Run(insert.Cancel);
        await disposed.WaitAsync(Bound);
        held.Rollback();

        async Task DisposeAfterTheWrite()
        {
            try
            {
                await insert.ExecuteNonQueryAsync().ConfigureAwait(false); // as above
            }
            catch (SqliteException)
            {
                // Cancelled: SQLITE_INTERRUPT.
            }

            await connection.DisposeAsync();
        }
    }

    /// <summary>
    /// As above with pooling: the caller's code after its await returns the connection to the pool, and the next renter
    /// of that physical connection (Max Pool Size=2, the other slot held) runs a statement held in an application
    /// function until Cancel has returned. Cancel does not interrupt it: the statement returns all its rows. With Cancel's
    /// check that the call still runs removed (only the closed-handle check left, which the test above needs), the
    /// whole suite passed before this test, and the interrupt stopped the next renter's statement (a hunt).
    /// </summary>
    [Test]
    public async Task Cancel_whose_callers_code_returns_the_connection_does_not_interrupt_its_next_renter()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=2");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var connection = dataSource.OpenConnection(); // the holder of the write gate takes the other of the two slots
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (1)";

        var outcome = await OutcomeOfACallStartedInsideCancel(dataSource, insert, async holdUntilCancelReturned =>
        {
            await connection.DisposeAsync(); // back to the pool
            return await Task.Factory.StartNew(
                () =>
                {
                    using var renter = dataSource.OpenConnection(); // the physical connection just returned
                    holdUntilCancelReturned(renter.InnerConnection);
                    return ConnectionTests.Scalar(renter, HeldQuery);
                },
                CancellationToken.None,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default);
        });

        outcome.ShouldBe("returned 100");
    }

    /// <summary>
    /// As above, but the caller's code after its await keeps the connection and runs the same command again, on another
    /// thread, in a statement held in an application function until Cancel has returned: the command runs a call
    /// again, but not the one Cancel was made for, whose token it cancelled. Cancel does not interrupt it: the statement
    /// returns all its rows. With Cancel's check that the call running is still the one it cancelled removed, the whole
    /// suite passed before this test, and the interrupt stopped the new call (a hunt).
    /// </summary>
    [Test]
    public async Task Cancel_whose_callers_code_runs_the_command_again_does_not_interrupt_that_new_call()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        await using var connection = dataSource.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1)";

        var outcome = await OutcomeOfACallStartedInsideCancel(dataSource, command, holdUntilCancelReturned =>
        {
            holdUntilCancelReturned(connection.InnerConnection);
            command.CommandText = HeldQuery;
            return Task.Factory.StartNew(command.ExecuteScalar, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        });

        outcome.ShouldBe("returned 100");
    }

    /// <summary>A query of 100 rows, each held in until_cancel_returned().</summary>
    private const string HeldQuery = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) SELECT sum(until_cancel_returned()) FROM n";

    /// <summary>
    /// Starts <paramref name="write"/> asynchronously at the write gate, which a transaction of another connection of
    /// <paramref name="dataSource"/> holds, and cancels it with Cancel on another thread. Ending its wait runs the caller's
    /// code after its await on Cancel's thread: that code starts <paramref name="startNext"/>, whose statement must call
    /// until_cancel_returned() (registered on a connection with the action it is given), which holds it until Cancel has
    /// returned. What that next call did: "returned" its result, or the code of the SqliteException it threw.
    /// </summary>
    private static async Task<string> OutcomeOfACallStartedInsideCancel(
        SaverDataSource dataSource, SaverDbCommand write, Func<Action<SqliteConnection>, Task<object?>> startNext)
    {
        await using var holder = dataSource.OpenConnection();
        var held = holder.BeginTransaction(); // holds the write gate
        using var nextRuns = new ManualResetEventSlim();
        using var cancelReturned = new ManualResetEventSlim();
        Task<object?>? next = null;

        var ranAfter = AfterTheWrite();
        dataSource.Executor.Gate!.WaitingCount.ShouldBe(1);
        await Task.Run(write.Cancel);
        cancelReturned.Set();
        await ranAfter.WaitAsync(Bound);
        string outcome;
        try
        {
            outcome = $"returned {await next!.WaitAsync(Bound)}";
        }
        catch (SqliteException error)
        {
            outcome = $"SqliteException {error.SqliteErrorCode}";
        }

        held.Rollback();
        return outcome;

        async Task AfterTheWrite()
        {
            try
            {
                await write.ExecuteNonQueryAsync().ConfigureAwait(false); // runs on inside Cancel, as above
            }
            catch (SqliteException)
            {
                // Cancelled: SQLITE_INTERRUPT.
            }

            next = startNext(inner => inner.CreateFunction("until_cancel_returned", () =>
            {
                nextRuns.Set();
                cancelReturned.Wait(Bound);
                return 1L;
            }));
            nextRuns.Wait(Bound).ShouldBeTrue("the next call's statement runs before Cancel goes on");
        }
    }

    /// <summary>
    /// A read of an <c>INSERT ... RETURNING</c> reader (a write outside a transaction, committed as its reader closes)
    /// while a Close on another thread is closing the connection's readers (held here in a statement another reader
    /// runs as it closes). The read is refused, and says that closing commits the write, which it does; before, it
    /// said "nothing of it was kept" (a chaos trial).
    /// </summary>
    [Test]
    public async Task A_read_of_a_writing_reader_refused_by_a_Close_on_another_thread_says_the_write_is_committed()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var closing = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        HoldingReader(connection, closing, release);
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (7) RETURNING x";
        var reader = insert.ExecuteReader();

        var close = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        closing.Wait(Bound).ShouldBeTrue("Close closes the query's reader");
        var refused = Should.Throw<InvalidOperationException>(() => reader.Read());
        release.Set();
        await close.WaitAsync(Bound);

        refused.Message.ShouldBe("The connection was closed before this read ran, so it read nothing. Closing the connection closes the reader, which commits the write its command made outside a transaction, as closing the reader does, unless a statement of it fails.");
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("7");
    }

    /// <summary>
    /// A read of a reader that its connection's Close (on another thread, as here, or on this one) has closed says so,
    /// and, for an <c>INSERT ... RETURNING</c> reader, that its write was committed, as it was. Before, both said only
    /// Microsoft.Data.Sqlite's "Invalid attempt to call Read when reader is closed." (a chaos trial).
    /// </summary>
    [Test]
    public async Task A_read_of_a_reader_its_connections_Close_closed_says_so_and_whether_its_write_was_committed()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        await using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (7) RETURNING x";
        var writing = insert.ExecuteReader();
        using var query = connection.CreateCommand();
        query.CommandText = "SELECT 1";
        var reading = query.ExecuteReader();

        await Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        Should.Throw<InvalidOperationException>(() => writing.Read()).Message.ShouldBe(
            "Invalid attempt to call Read when reader is closed. Its connection was closed (from another thread, say), which closed it and committed the write its command made outside a transaction.");
        Should.Throw<InvalidOperationException>(() => reading.NextResult()).Message.ShouldBe(
            "Invalid attempt to call NextResult when reader is closed. Its connection was closed (from another thread, say), which closed it.");
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("7");
    }

    /// <summary>
    /// The command's Cancel during its reader's GetSchemaTable (which runs statements of its own) leaves the schema read
    /// and the reader alone, as it leaves the reader's other reads: a first version of making schema reads calls of the
    /// connection made them runs of the command, and Cancel's interrupt failed the read and the reader's next step (a
    /// review).
    /// </summary>
    [Test]
    public void Cancel_during_GetSchemaTable_leaves_it_and_the_reader_alone()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2)");
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT x FROM t";
        using var reader = select.ExecuteReader();
        reader.Read().ShouldBeTrue();
        var cancels = 0;
        raw.sqlite3_progress_handler(connection.InnerConnection.Handle, 1, _ =>
        {
            if (Interlocked.Exchange(ref cancels, 1) == 0)
            {
                select.Cancel();
            }

            return 0;
        }, null);

        reader.GetSchemaTable().ShouldNotBeNull().Rows.Count.ShouldBe(1);
        raw.sqlite3_progress_handler(connection.InnerConnection.Handle, 0, null, null);

        cancels.ShouldBe(1, "the progress handler ran inside the schema read");
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(2L);
    }

    /// <summary>
    /// A read of an <c>INSERT ... RETURNING</c> reader while its connection's Close (on another thread) is closing it,
    /// running its statements not reached, says that closing commits the write; once closed, that it committed it.
    /// Before, the first said only "which closed it" (a review: 102 in 2,000 racing reads).
    /// </summary>
    [Test]
    public async Task A_read_of_a_writing_reader_its_connections_Close_is_closing_says_the_write_is_to_be_committed()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        await using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var closing = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        connection.InnerConnection.CreateFunction("hold", () =>
        {
            closing.Set();
            release.Wait(Bound);
            return 1L;
        });
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (7) RETURNING x; SELECT hold()";
        var reader = insert.ExecuteReader();
        reader.Read().ShouldBeTrue();

        var close = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        closing.Wait(Bound).ShouldBeTrue("Close closes the reader, which runs its second statement");
        var whileClosing = Should.Throw<InvalidOperationException>(() => reader.GetInt64(0)).Message;
        release.Set();
        await close.WaitAsync(Bound);

        whileClosing.ShouldBe(
            "Invalid attempt to call GetInt64 when reader is closed. Its connection was closed (from another thread, say), which is closing it: closing commits the write its command made outside a transaction, unless a statement of it fails.");
        Should.Throw<InvalidOperationException>(() => reader.GetInt64(0)).Message.ShouldBe(
            "Invalid attempt to call GetInt64 when reader is closed. Its connection was closed (from another thread, say), which closed it and committed the write its command made outside a transaction.");
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("7");
    }

    /// <summary>
    /// A value or column read of a reader that its connection's Close on another thread has closed says so, as Read
    /// does. Before, it asked the SQLite reader, which that Close may still have been closing: it threw
    /// Microsoft.Data.Sqlite's "No data exists for the row/column" or "The data is NULL at ordinal 1", or "Invalid
    /// attempt to call FieldCount when reader is closed." without saying why (a chaos trial: Dapper queries racing
    /// Close).
    /// </summary>
    [TestCase("FieldCount")]
    [TestCase("VisibleFieldCount")]
    [TestCase("GetName")]
    [TestCase("GetOrdinal")]
    [TestCase("GetFieldType")]
    [TestCase("GetDataTypeName")]
    [TestCase("GetSchemaTable")]
    [TestCase("GetColumnSchema")]
    [TestCase("Item")]
    [TestCase("GetValue")]
    [TestCase("GetInt64")]
    [TestCase("GetBytes")]
    public async Task A_value_or_column_read_of_a_reader_its_connections_Close_closed_says_so(string read)
    {
        await using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var query = connection.CreateCommand();
        query.CommandText = "SELECT 1 AS x, x'01' AS b";
        var reader = query.ExecuteReader();
        reader.Read().ShouldBeTrue();

        await Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        Should.Throw<InvalidOperationException>(() => Read(reader, read)).Message.ShouldBe(
            $"Invalid attempt to call {read} when reader is closed. Its connection was closed (from another thread, say), which closed it.");
    }

    /// <summary>
    /// A token cancelled after an asynchronous write has entered the write gate, but before any of its statements
    /// started, stops it: the registration's sqlite3_interrupt lands while no statement is active and SQLite drops it
    /// as the library's BEGIN IMMEDIATE starts, so the token is checked again before the user's statement runs. (The
    /// cancellation is put exactly there through the write-gate wait metric, which is recorded synchronously right
    /// after the gate is taken.)
    /// </summary>
    [Test]
    public async Task A_token_cancelled_as_the_write_gate_is_entered_stops_the_write_before_its_statement_runs()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var builder = new SaverDataSourceBuilder(connectionString) { Name = "async-review-gate-entered" };
        using var dataSource = builder.Build();
        using var cancellation = new CancellationTokenSource();
        using var listener = OnGateEntered(builder.Name, cancellation.Cancel); // no statement of the call has started
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) SELECT i FROM n";

        string outcome;
        try
        {
            outcome = $"succeeded ({await insert.ExecuteNonQueryAsync(cancellation.Token).WaitAsync(Bound)} rows)";
        }
        catch (OperationCanceledException error)
        {
            outcome = error.CancellationToken == cancellation.Token ? "cancelled" : "cancelled with another token";
        }

        var rows = ConnectionTests.Scalar(connection, "SELECT count(*) FROM t");
        (cancellation.IsCancellationRequested, outcome, rows).ShouldBe(
            (true, "cancelled", (object?)0L),
            "a token cancelled before the write's statement started did not stop it");
    }

    /// <summary>
    /// Cancel() on a command whose asynchronous write waits at the write gate cancels the token of that call only
    /// (RenterCalls): the cancelled call ends on the thread pool a moment later, and a command run on the connection
    /// in that moment, which Cancel() was never meant for, gets a token of its own and runs.
    /// </summary>
    [Test]
    public async Task Cancel_of_a_call_waiting_at_the_gate_does_not_fail_the_next_command_on_the_connection()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var gate = dataSource.Executor.Gate!;
        await using var holder = dataSource.OpenConnection();
        await using var connection = dataSource.OpenConnection();
        var failures = new List<string>();
        for (var i = 0; i < 20 && failures.Count == 0; i++)
        {
            var transaction = holder.BeginTransaction(); // holds the write gate
            await using var insert = connection.CreateCommand();
            insert.CommandText = "INSERT INTO t VALUES ('cancelled')";
            var pending = insert.ExecuteNonQueryAsync();
            Wait.Until(() => gate.WaitingCount == 1, 10);
            insert.Cancel();
            await using var select = connection.CreateCommand();
            select.CommandText = "SELECT 1"; // another command, never cancelled
            select.CommandTimeout = 2; // a read never waits for the gate: if one did, it fails here, not 20 x 30 s later
            try
            {
                select.ExecuteScalar().ShouldBe(1L);
            }
            catch (SqliteException error)
            {
                failures.Add($"SqliteException {error.SqliteErrorCode}: {error.Message}");
            }

            await Should.ThrowAsync<SqliteException>(pending.WaitAsync(Bound)); // the cancelled write
            transaction.Rollback();
        }

        failures.ShouldBeEmpty("a command run after Cancel() of another call failed");
    }

    /// <summary>
    /// Cancel() then Close (a timeout handler that cancels a command and disposes its connection): the cancelled call
    /// reports the cancellation, SQLITE_INTERRUPT, as it does when the connection stays open, not the Close that came
    /// after it (RenterCalls.EndAll claims only a token it cancelled itself).
    /// </summary>
    [Test]
    public async Task Cancel_then_Close_reports_the_cancellation()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var gate = dataSource.Executor.Gate!;
        await using var holder = dataSource.OpenConnection();
        var transaction = holder.BeginTransaction(); // holds the write gate
        var outcomes = new List<string>();
        for (var i = 0; i < 10; i++)
        {
            var connection = dataSource.OpenConnection();
            var insert = connection.CreateCommand();
            insert.CommandText = "INSERT INTO t VALUES ('cancelled')";
            var pending = insert.ExecuteNonQueryAsync();
            Wait.Until(() => gate.WaitingCount == 1, 10);
            insert.Cancel();
            connection.Close();
            try
            {
                await pending.WaitAsync(Bound);
                outcomes.Add("succeeded");
            }
            catch (Exception error)
            {
                outcomes.Add(error is SqliteException sqlite ? $"SqliteException {sqlite.SqliteErrorCode}" : error.GetType().Name);
            }
        }

        transaction.Rollback();
        outcomes.ShouldAllBe(outcome => outcome == "SqliteException 9", "Cancel() came first: " + string.Join(", ", outcomes));
    }

    /// <summary>
    /// A call a Close ends, whose caller's token is cancelled too before the call has ended (a timeout handler that
    /// cancels the token and disposes the connection), throws the caller's cancellation with the caller's token, as it
    /// does for any wait or statement the caller cancelled, not the Close's error.
    /// </summary>
    [Test]
    public async Task A_call_ended_by_Close_whose_callers_token_is_cancelled_before_it_ends_throws_the_callers_cancellation()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString()).Build();
        await using var connection = dataSource.OpenConnection();
        var calls = connection.GetOpenPhysical("test").Calls;
        using var hold = new HeldFunction(connection);
        using var cancellation = new CancellationTokenSource();
        await using var query = connection.CreateCommand();
        query.CommandText = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT count(*) FROM c WHERE hold()";
        var pending = Task.Run(() => query.ExecuteScalarAsync(cancellation.Token));
        hold.Holding.Wait(Bound).ShouldBeTrue("the statement runs hold()");
        var closing = Task.Factory.StartNew(connection.Close, TaskCreationOptions.LongRunning);
        Wait.Until(() => calls.CloseWaits); // the Close has interrupted the statement and waits for the call to end

        cancellation.Cancel();
        hold.Release(); // hold() returns at once from now on: the statement runs until the interrupt ends it

        Exception? caught = null;
        try
        {
            await pending.WaitAsync(Bound);
        }
        catch (Exception exception)
        {
            caught = exception;
        }

        caught.ShouldBeAssignableTo<OperationCanceledException>()!.CancellationToken.ShouldBe(cancellation.Token);
        await closing.WaitAsync(Bound);
    }

    /// <summary>
    /// Runs <paramref name="onEntered"/> on a caller's thread as the caller enters the write gate of the data source
    /// named <paramref name="poolName"/>: the write-gate wait metric is recorded synchronously right after the gate is
    /// taken, before any statement of the call runs.
    /// </summary>
    private static MeterListener OnGateEntered(string poolName, Action onEntered)
    {
        var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, meterListener) =>
        {
            if (instrument.Meter.Name == SaverMetrics.MeterName && instrument.Name == SaverMetrics.WriteGateWaitTime.Name)
            {
                meterListener.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == SaverMetrics.PoolNameTag && (string?)tag.Value == poolName)
                {
                    onEntered();
                }
            }
        });
        listener.Start();
        return listener;
    }

    /// <summary>How many waits for a Close of the renter run now (RenterCalls' private _closeWatchers: see WaitForClose).</summary>
    private static int CloseWatchers(SqliteSaver.Data.Pooling.RenterCalls calls)
        => (int)typeof(SqliteSaver.Data.Pooling.RenterCalls).GetField("_closeWatchers", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(calls)!;

    /// <summary>
    /// Opens a reader on <paramref name="connection"/> that its Close closes first, running the reader's second
    /// statement, which sets <paramref name="closing"/> and waits for <paramref name="release"/> (30 s at most).
    /// </summary>
    internal static void HoldingReader(SaverDbConnection connection, ManualResetEventSlim closing, ManualResetEventSlim release)
    {
        connection.InnerConnection.CreateFunction("hold", () =>
        {
            closing.Set();
            release.Wait(Bound);
            return 1L;
        });
        var query = connection.CreateCommand(); // closed with the connection, as is its reader
        query.CommandText = "SELECT 1; SELECT hold()";
        query.ExecuteReader().Read().ShouldBeTrue();
    }

    /// <summary>Reads <paramref name="read"/> (a member's name) of <paramref name="reader"/>'s row: its first column, or its second for GetBytes.</summary>
    private static object? Read(DbDataReader reader, string read) => read switch
    {
        "FieldCount" => reader.FieldCount,
        "VisibleFieldCount" => reader.VisibleFieldCount,
        "GetName" => reader.GetName(0),
        "GetOrdinal" => reader.GetOrdinal("x"),
        "GetFieldType" => reader.GetFieldType(0),
        "GetDataTypeName" => reader.GetDataTypeName(0),
        "GetSchemaTable" => reader.GetSchemaTable(),
        "GetColumnSchema" => reader.GetColumnSchema(),
        "Item" => reader[0],
        "GetValue" => reader.GetValue(0),
        "GetInt64" => reader.GetInt64(0),
        _ => reader.GetBytes(1, 0, null, 0, 0),
    };
}
