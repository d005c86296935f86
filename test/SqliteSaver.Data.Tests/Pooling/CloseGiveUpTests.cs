using System.Reflection;
using System.Runtime.CompilerServices;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Pooling;

namespace SqliteSaver.Data.Tests.Pooling;

/// <summary>
/// A Close that gives up: the calls of its connection did not end within its bound, Busy Timeout and 5 s (here a call
/// held in an application function or a retry strategy), so it throws and leaves the connection open; what then
/// becomes of those calls, of a second Close, of a reader's or transaction's Dispose and of the connection's slot; and
/// an Open that gives up waiting for a Close that does not end. The tests wait out the fixed 5 s (one twice, one case
/// not at all), idle, so they run side by side (NUnit's parallel shift, which runs no other test meanwhile); each has
/// its own fixture instance and folder, and clears only its own pools.
/// </summary>
[Parallelizable(ParallelScope.Children)]
[FixtureLifeCycle(LifeCycle.InstancePerTestCase)]
public class CloseGiveUpTests() : DatabaseTest(clearsOnlyItsOwnPools: true)
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A reader's own Close while a Close of its connection on another thread waits for a call that outlasts its bound
    /// (Busy Timeout=0 and 5 s; here a statement held in an application function): that Close gives up and leaves the
    /// connection open, and the reader's Close, which waited for it, then closes the reader itself, once the held
    /// statement has ended. The command runs again. On the first fix of the race of
    /// CloseRaceTests.A_readers_Close_racing_its_connections_Close_leaves_the_closing_to_the_connection the reader was
    /// marked closed over a SQLite reader left open, which the next execution of the command met (fourth change review).
    /// </summary>
    [Test]
    public void A_readers_Close_during_a_connection_Close_that_gives_up_closes_the_reader()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=0");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var hold = new HeldFunction(connection);

        using var second = connection.CreateCommand();
        second.CommandText = "SELECT 2; SELECT 3";
        var secondReader = second.ExecuteReader();
        using var third = connection.CreateCommand();
        third.CommandText = "SELECT hold()";
        var held = Task.Factory.StartNew(() => third.ExecuteScalar(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        hold.Holding.Wait(Bound).ShouldBeTrue("the third command's statement runs hold()");
        var closing = CloseRaceTests.CloseOnAnotherThread(connection);
        try
        {
            Wait.Until(() => connection.State == System.Data.ConnectionState.Closed || closing.IsCompleted);
            var readerClosing = Task.Factory.StartNew(secondReader.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            closing.Wait(Bound).ShouldBeTrue("the connection's Close ended");
            hold.Release(); // the reader's closing runs its statement once the held one has ended
            readerClosing.Wait(Bound).ShouldBeTrue("the reader's Close returned");
        }
        finally
        {
            hold.Release();
        }

        held.Wait(Bound);
        closing.Result.ShouldBeOfType<InvalidOperationException>("the connection's Close gave up");
        connection.State.ShouldBe(System.Data.ConnectionState.Open);
        secondReader.IsClosed.ShouldBeTrue();
        second.ExecuteScalar().ShouldBe(2L);
        connection.Close();
    }

    /// <summary>
    /// A second Close of the connection after a first one gave up on a reader's step (Busy Timeout=0 and 5 s; here a
    /// statement held in an application function, then a query that runs until an interrupt ends it): the step that
    /// the second Close ends throws what a call ended by Close throws, and the statements of the batch after it do not
    /// run. Before, the step threw SQLite's SQLITE_INTERRUPT as if Cancel had ended it (Close knew only the calls it
    /// cancelled itself, not those of the Close that gave up), and closing the reader ran the INSERT and the PRAGMA
    /// after it, which were kept (a review: 4 in 4).
    /// </summary>
    [Test]
    public void A_Close_after_one_that_gave_up_ends_the_step_that_one_began_to_end_as_a_call_ended_by_Close()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=0");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        ConnectionTests.Scalar(connection, "CREATE TABLE kept (id INTEGER)");
        var physical = connection.GetOpenPhysical("test");
        using var hold = new HeldFunction(connection);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT count(*) FROM c WHERE hold(); "
            + "INSERT INTO kept VALUES (2); PRAGMA user_version = 9";
        var reader = command.ExecuteReader();
        var stepping = Task.Factory.StartNew(() => Should.Throw<Exception>(() => reader.NextResult()), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Task<Exception?>? second = null;
        try
        {
            hold.Holding.Wait(Bound).ShouldBeTrue("the query runs hold()");
            var first = CloseRaceTests.CloseOnAnotherThread(connection);
            first.Wait(Bound).ShouldBeTrue("the first Close ended");
            first.Result.ShouldBeOfType<InvalidOperationException>("the first Close gave up");
            connection.State.ShouldBe(System.Data.ConnectionState.Open);

            second = CloseRaceTests.CloseOnAnotherThread(connection);
            Wait.Until(() => physical.Calls.CloseWaits || second.IsCompleted);
        }
        finally
        {
            hold.Release(); // hold() returns at once from now on: the query runs until an interrupt ends it
        }

        second.Wait(Bound).ShouldBeTrue("the second Close ended");
        second.Result.ShouldBeNull("the second Close closed the connection");
        stepping.Wait(Bound).ShouldBeTrue("NextResult ended");
        stepping.Result.ShouldBeOfType<InvalidOperationException>($"NextResult threw {stepping.Result}")
            .Message.ShouldBe(RenterCalls.ClosedDuringCall(null, statementByStatement: true).Message);
        reader.IsClosed.ShouldBeTrue();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM kept").ShouldBe(0L);
        PoolTests.Scalar(connectionString, "PRAGMA user_version").ShouldBe(0L);
    }

    /// <summary>
    /// A call whose statement a Close interrupted, then gave up on (Busy Timeout=0 and 5 s; here a statement held in an
    /// application function, then a query that runs until the interrupt ends it) says that the Close gave up and left
    /// the connection open, which it did, and what became of the call's work: a batch run as written (it begins a
    /// transaction) leaves the INSERT that had ended in that transaction, still open, which a COMMIT then keeps; a write
    /// in the caller's transaction, which SQLite's interrupt rolls back whole (the row of the call before it too), as
    /// after Cancel. Before, it said that the connection was closed while the call ran; a review found the first text of
    /// the new message silent on both.
    /// </summary>
    [TestCase("batch")]
    [TestCase("write in a transaction")]
    public void A_call_a_Close_gave_up_on_says_the_connection_was_left_open_and_what_became_of_its_work(string call)
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var hold = new HeldFunction(connection);
        const string HeldRows = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT x FROM c WHERE hold()";
        var transaction = call == "batch" ? null : connection.BeginTransaction();
        ConnectionTests.Scalar(connection, call == "batch" ? "SELECT 1" : "INSERT INTO t VALUES (1)");
        using var command = connection.CreateCommand();
        command.CommandText = call == "batch" ? $"BEGIN; INSERT INTO t VALUES (1); SELECT count(*) FROM ({HeldRows})" : $"INSERT INTO t {HeldRows}";
        var running = Task.Factory.StartNew(() => Should.Throw<Exception>(() => command.ExecuteNonQuery()), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            hold.Holding.Wait(Bound).ShouldBeTrue("the statement runs hold()");
            var closing = CloseRaceTests.CloseOnAnotherThread(connection);
            closing.Wait(Bound).ShouldBeTrue("the Close ended");
            closing.Result.ShouldBeOfType<InvalidOperationException>("the Close gave up");
        }
        finally
        {
            hold.Release(); // hold() returns at once from now on: the statement runs until the interrupt ends it
        }

        running.Wait(Bound).ShouldBeTrue("the call ended");
        running.Result.ShouldBeOfType<InvalidOperationException>($"the call threw {running.Result}")
            .Message.ShouldBe(RenterCalls.GivenUpCall(null, statementByStatement: call == "batch").Message);
        connection.State.ShouldBe(System.Data.ConnectionState.Open);
        if (transaction is null)
        {
            ConnectionTests.Scalar(connection, "COMMIT");
            PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L, "the INSERT that had ended, kept by the COMMIT");
        }
        else
        {
            Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("SQLite has already ended");
            PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L, "rolled back whole by SQLite");
        }

        connection.Close();
    }

    /// <summary>
    /// Cancel, then a Close that gives up on the call Cancel ended (a timeout handler that cancels a command and closes
    /// its connection): the call reports the cancellation, SQLite's SQLITE_INTERRUPT, as when the Close ends its calls
    /// (see CancelAndCloseTests.Cancel_then_Close_reports_the_cancellation), not a Close that gave up: a Close counts
    /// among the calls it gave up on only those whose token it cancelled itself.
    /// </summary>
    [Test]
    public void A_call_cancelled_before_a_Close_gave_up_on_it_reports_the_cancellation()
    {
        var connection = new SaverDbConnection(Folder.ConnectionString("Busy Timeout=0"));
        connection.Open();
        using var hold = new HeldFunction(connection);
        using var command = connection.CreateCommand();
        command.CommandText = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT count(*) FROM c WHERE hold()";
        var running = Task.Factory.StartNew(() => Should.Throw<Exception>(() => command.ExecuteScalar()), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            hold.Holding.Wait(Bound).ShouldBeTrue("the statement runs hold()");
            command.Cancel();
            var closing = CloseRaceTests.CloseOnAnotherThread(connection);
            closing.Wait(Bound).ShouldBeTrue("the Close ended");
            closing.Result.ShouldBeOfType<InvalidOperationException>("the Close gave up");
        }
        finally
        {
            hold.Release();
        }

        running.Wait(Bound).ShouldBeTrue("the call ended");
        running.Result.ShouldBeOfType<SqliteException>($"the call threw {running.Result}").SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT);
        connection.Close();
    }

    /// <summary>
    /// A call that two Closes in a row gave up on (Busy Timeout=0 and 5 s each; here a query held in an application
    /// function, then running until the interrupt ends it) says that a Close gave up and left the connection open, as
    /// after one: the second Close, which gives up on the calls begun since the first, keeps the first's call among
    /// those given up on. Had it kept only its own, the call would throw SQLite's SQLITE_INTERRUPT, as if Cancel had
    /// ended it (a mutation hunt: that passed every test).
    /// </summary>
    [Test]
    public void A_call_two_Closes_gave_up_on_says_the_connection_was_left_open()
    {
        var connection = new SaverDbConnection(Folder.ConnectionString("Busy Timeout=0"));
        connection.Open();
        using var hold = new HeldFunction(connection);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT x FROM c WHERE hold())";
        var running = Task.Factory.StartNew(() => Should.Throw<Exception>(() => command.ExecuteScalar()), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        try
        {
            hold.Holding.Wait(Bound).ShouldBeTrue("the query runs hold()");
            foreach (var which in new[] { "first", "second" })
            {
                var closing = CloseRaceTests.CloseOnAnotherThread(connection);
                closing.Wait(Bound).ShouldBeTrue($"the {which} Close ended");
                closing.Result.ShouldBeOfType<InvalidOperationException>($"the {which} Close gave up");
            }
        }
        finally
        {
            hold.Release(); // hold() returns at once from now on: the query runs until the interrupt ends it
        }

        running.Wait(Bound).ShouldBeTrue("the call ended");
        running.Result.ShouldBeOfType<InvalidOperationException>($"the call threw {running.Result}")
            .Message.ShouldBe(RenterCalls.GivenUpCall(null).Message);
        connection.State.ShouldBe(System.Data.ConnectionState.Open);
        connection.Close();
    }

    /// <summary>
    /// The same statement failing on its own after a Close gave up on the call (Busy Timeout=0 and 5 s) and left the
    /// connection open: the call throws its own SqliteException, and the transaction, with what it held before the
    /// call, is still open and commits. On the first form of the change of
    /// CloseRaceTests.A_call_Close_ends_that_fails_with_another_error_than_the_interrupt_ends_as_a_call_ended_by_Close, it threw that the connection was closed
    /// and nothing kept (a review).
    /// </summary>
    [Test]
    public void A_statement_failing_on_its_own_after_a_Close_gave_up_on_its_call_throws_its_own_error()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=0");
        Task<Exception?>? closing = null;
        var (connection, transaction, running) = InsertInTransactionOnAnotherThread(connectionString, () =>
        {
            Wait.Until(() => closing is { IsCompleted: true });
            throw new InvalidOperationException("the lookup failed");
        });
        closing = CloseRaceTests.CloseOnAnotherThread(connection);
        closing.Wait(Bound).ShouldBeTrue("the connection's Close ended");
        closing.Result.ShouldBeOfType<InvalidOperationException>("the Close gave up");
        running.Wait(Bound).ShouldBeTrue();
        running.Result.ShouldBeOfType<SqliteException>($"the call threw {running.Result}").Message.ShouldContain("the lookup failed");
        connection.State.ShouldBe(System.Data.ConnectionState.Open);
        transaction.Commit();
        connection.Close();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    /// <summary>
    /// A call a first Close gave up on, then a second Close that stops it: a statement of that call failing with
    /// another code than SQLITE_INTERRUPT once the second Close has begun to end the calls (here as it interrupts, before
    /// it waits for them) ends as a call ended by Close, as the second Close closes the connection and rolls the
    /// transaction back. On the form that the test above
    /// guards, such a call counted only once that Close waited. The window is widened by
    /// holding RenterCalls' lock, which that Close takes right after its interrupt (standing for its thread being
    /// preempted there; the private fields are read by name); a review's test.
    /// </summary>
    [Test]
    public void A_given_up_call_that_a_second_Close_stops_before_it_waits_ends_as_a_call_ended_by_Close()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=0");
        RenterCalls? calls = null;
        var closedBy = typeof(RenterCalls).GetField("_closedBy", BindingFlags.NonPublic | BindingFlags.Instance)!;
        object? closedByFirst = null; // read before the second Close begins, not by the function, which may see it late
        var (connection, _, running) = InsertInTransactionOnAnotherThread(connectionString, () =>
        {
            Wait.Until(() => Volatile.Read(ref closedByFirst) is not null);
            Wait.Until(() => !ReferenceEquals(closedBy.GetValue(calls), closedByFirst)); // the second Close has begun
            throw new InvalidOperationException("its nested query was interrupted");
        });
        calls = connection.GetOpenPhysical("test").Calls;
        var endedLock = typeof(RenterCalls).GetField("_ended", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(calls)!;
        var firstClose = CloseRaceTests.CloseOnAnotherThread(connection);
        firstClose.Wait(Bound).ShouldBeTrue("the first Close ended");
        firstClose.Result.ShouldBeOfType<InvalidOperationException>("the first Close gave up");
        Volatile.Write(ref closedByFirst, closedBy.GetValue(calls).ShouldNotBeNull());

        Task<Exception?> secondClose;
        Monitor.Enter(endedLock);
        try
        {
            secondClose = CloseRaceTests.CloseOnAnotherThread(connection);
            running.Wait(Bound).ShouldBeTrue();
        }
        finally
        {
            Monitor.Exit(endedLock);
        }

        secondClose.Wait(Bound).ShouldBeTrue();
        secondClose.Result.ShouldBeNull("the second Close closed the connection");
        connection.State.ShouldBe(System.Data.ConnectionState.Closed);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L); // rolled back by the second Close
        var ended = running.Result.ShouldBeOfType<InvalidOperationException>($"the call threw {running.Result}");
        ended.Message.ShouldBe(RenterCalls.ClosedDuringCall(null).Message);
    }

    /// <summary>
    /// An Open on another thread while a Close of the connection does not end (here it closes a reader whose statement
    /// not reached calls an application function, held, which no interrupt stops; Close's wait for the calls is not
    /// involved, as no call runs): the Open waits twice Close's bound (2 x (Busy Timeout=0 + 5 s): 10 s), then throws
    /// InvalidOperationException saying what it waited for and what to do, and opens nothing; once that Close has ended,
    /// the connection opens. No test reached this path before.
    /// </summary>
    [Test]
    public void An_Open_waiting_for_a_Close_on_another_thread_that_does_not_end_throws_and_opens_nothing()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=0");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var hold = new HeldFunction(connection);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1; SELECT hold()";
        var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();
        Task<Exception?> closing;
        Exception? opened;
        try
        {
            closing = CloseRaceTests.CloseOnAnotherThread(connection);
            hold.Holding.Wait(Bound).ShouldBeTrue("Close runs the statement the reader had not reached");
            opened = Should.Throw<InvalidOperationException>(connection.Open);
            connection.State.ShouldBe(System.Data.ConnectionState.Closed);
        }
        finally
        {
            hold.Release();
        }

        closing.Wait(Bound).ShouldBeTrue("the Close ended");
        closing.Result.ShouldBeNull();
        opened.Message.ShouldBe(
            "Open waited 10 s (2 x (Busy Timeout + 5 s)) for a Close of this connection on another thread to end, and it has not, so the connection was not opened. That Close may be held by a statement it runs, which no interrupt of its stops: one a reader had not reached, run as Close closes the reader (a long query, or a function of the application's in it), or the rollback of the connection's transaction (a hook of the application's). Open the connection again once that Close has returned.");
        reader.IsClosed.ShouldBeTrue();
        connection.Open();
        ConnectionTests.Scalar(connection, "SELECT 2").ShouldBe(2L);
        connection.Close();
    }

    /// <summary>
    /// Close from another thread while BeginTransaction runs, with a call that outlasts Close's wait (here the BEGIN's
    /// own attempt, held by the retry strategy past Busy Timeout=0 and 5 s): Close gives up, throws and keeps the
    /// connection open. The BEGIN then succeeds and BeginTransaction, ended by that Close, throws and rolls the BEGIN
    /// back itself, leaving the write gate: the next write on the connection is its own and kept, and another
    /// connection's writer passes the gate. Before, it left an SQLite transaction no SaverDbTransaction owned and the
    /// gate held, counting on Close to roll back: the next autocommit write was acknowledged, then rolled back as the
    /// connection closed, and the other writer timed out at the gate (chaos review).
    /// </summary>
    [Test]
    public void BeginTransaction_ended_by_a_Close_that_gives_up_leaves_no_hidden_transaction_or_write_gate()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var strategy = new HoldFirstAttempt();
        var builder = new SaverDataSourceBuilder(connectionString) { Name = "give-up-begin-outlives-close" }.UseRetryStrategy(strategy);
        using var dataSource = builder.Build();
        var connection = dataSource.OpenConnection();
        var physical = connection.GetOpenPhysical("test");

        strategy.Armed = true;
        var beginning = Task.Factory.StartNew(() => connection.BeginTransaction(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        strategy.Holding.Wait(Bound).ShouldBeTrue("the BEGIN's attempt is held");
        var closing = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Task.WaitAny([closing], Bound).ShouldBe(0, "Close ended"); // after ~5 s
        closing.Exception.ShouldNotBeNull("Close gave up waiting for the BEGIN and threw").InnerException.ShouldBeOfType<InvalidOperationException>();
        connection.Holds(physical).ShouldBeTrue("Close kept the connection open");

        strategy.Release.Set();
        string begin;
        try
        {
            beginning.Wait(Bound).ShouldBeTrue();
            beginning.Result.Dispose();
            begin = "returned";
        }
        catch (AggregateException wrapped) when (wrapped.InnerException is InvalidOperationException)
        {
            begin = "threw";
        }

        // Autocommit: acknowledged once ExecuteNonQuery returns.
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)").ShouldBe(1);
        string otherWriter;
        using (var other = dataSource.OpenConnection())
        using (var command = other.CreateCommand())
        {
            command.CommandText = "INSERT INTO t VALUES (2)";
            command.CommandTimeout = 1;
            try
            {
                otherWriter = $"returned {command.ExecuteNonQuery()}";
            }
            catch (Exception error)
            {
                otherWriter = error.GetType().Name;
            }
        }

        connection.Close();
        var rows = PoolTests.Scalar(connectionString, "SELECT coalesce(group_concat(x, ','), '') FROM (SELECT x FROM t ORDER BY x)");
        $"BeginTransaction {begin}; other writer {otherWriter}; rows {rows}".ShouldBe("BeginTransaction threw; other writer returned 1; rows 1,2");
    }

    /// <summary>
    /// Dispose on another thread while a Close waits for a call that outlasts its bound (a function of the application's
    /// that SQLite runs, which no interrupt stops; Busy Timeout 100 ms, so 5.1 s) finds nothing to close, and suppresses
    /// the finalizer; the Close then gives up and leaves the disposed connection open. Its finalizer takes it back once
    /// nothing holds it. Before, nothing ever did: its slot stayed in use (a review).
    /// </summary>
    [Test]
    public void A_connection_disposed_while_a_Close_that_gives_up_waits_is_taken_back_once_collected()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Busy Timeout=100;Max Pool Size=1;Pool Timeout=1"));
        using var release = new ManualResetEventSlim();
        var (query, close) = DisposeWhileACloseWaits(dataSource, release);
        close.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue("the Close gave up");
        release.Set();
        query.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue("the query ended");

        LeakTests.Collect(() => dataSource.Statistics.Leaked == 1 && dataSource.Statistics.Total == 0);
        using var next = dataSource.OpenConnection(); // the only slot is free again
    }

    /// <summary>
    /// A transaction disposed while another thread's Close waits for a call that outlasts Close's wait (a statement in
    /// an application function, which sqlite3_interrupt does not stop; Busy Timeout=0, so Close waits 5 s): Close
    /// throws and keeps the connection open, and the Dispose, which waited for Close, then rolls the transaction back
    /// itself rather than return with it open.
    /// </summary>
    [Test]
    public void A_transaction_disposed_while_a_Close_that_then_fails_waits_does_not_return_quietly_with_the_transaction_open()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var physical = connection.GetOpenPhysical("test");
        var transaction = connection.BeginTransaction();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");

        using var hold = new HeldFunction(connection);
        var held = Task.Factory.StartNew(() => ConnectionTests.Scalar(connection, "SELECT hold()"), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        hold.Holding.Wait(Bound).ShouldBeTrue("the statement runs the function");

        var closing = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Wait.Until(() => !connection.Holds(physical) || closing.IsCompleted);
        closing.IsCompleted.ShouldBeFalse("Close waits for the held call");

        // A using block ending on another thread; it waits for Close, whose wait the held call outlasts.
        var disposing = Task.Factory.StartNew(transaction.Dispose, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        string closeOutcome;
        try
        {
            closing.Wait(Bound).ShouldBeTrue("Close ended");
            closeOutcome = "closed";
        }
        catch (AggregateException wrapped) when (wrapped.InnerException is { } error)
        {
            closeOutcome = error.GetType().Name;
        }

        hold.Release();
        try
        {
            held.Wait(Bound);
        }
        catch (AggregateException)
        {
            // interrupted by Close, or ended by it: not what this test is about
        }

        Exception? disposeError = null;
        try
        {
            disposing.Wait(Bound).ShouldBeTrue("Dispose returned");
        }
        catch (AggregateException wrapped) when (wrapped.InnerException is { } error)
        {
            disposeError = error;
        }

        var stillInTransaction = connection.State == System.Data.ConnectionState.Open && physical.InTransaction;
        var completed = transaction.IsCompleted;
        if (connection.Transaction is { } left)
        {
            left.Rollback();
        }

        connection.Dispose();

        closeOutcome.ShouldBe(nameof(InvalidOperationException), "Close could not end the held call, so the connection stayed open");
        (disposeError is not null || (completed && !stillInTransaction)).ShouldBeTrue(
            $"transaction.Dispose returned quietly, yet the transaction is still open (completed: {completed}, SQLite in a transaction: {stillInTransaction})");
    }

    /// <summary>
    /// A retry strategy's callback (as a Polly OnRetry or Fallback) that closes the connection after a transient
    /// failure runs inside the call: Close would wait for the call itself. On the call's own thread (a synchronous
    /// call) it is refused at once; from an asynchronous call's callback, which may run on another thread, it waits
    /// Busy Timeout and 5 s at most, then refuses. Either way the connection stays open, rather than Close hang or hand
    /// the connection on while the call runs.
    /// </summary>
    [Test]
    public async Task Close_from_a_retry_strategy_callback_does_not_hang([Values] bool async)
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=50");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var locker = new SqliteConnection("Pooling=False;Data Source=" + new SaverDbConnection(connectionString).DataSource);
        locker.Open();
        using (var begin = locker.CreateCommand())
        {
            begin.CommandText = "BEGIN IMMEDIATE"; // another process's writer holds the write lock
            begin.ExecuteNonQuery();
        }

        SaverDbConnection? connection = null;
        var strategy = new CloseOnTransient(() => connection!.Close());
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseRetryStrategy(strategy).Build();
        connection = dataSource.OpenConnection();
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (1)";
        var run = Task.Run(async () => async ? await insert.ExecuteNonQueryAsync() : insert.ExecuteNonQuery());
        string outcome;
        try
        {
            outcome = $"returned {await run.WaitAsync(Bound)}";
        }
        catch (TimeoutException)
        {
            outcome = "hung";
        }
        catch (Exception error)
        {
            outcome = error.GetType().Name;
        }

        strategy.Closed.ShouldBeTrue("the strategy's callback ran");
        outcome.ShouldBe(nameof(InvalidOperationException), "Close from inside the call waited for the call itself, or let it go on");
        connection.State.ShouldBe(System.Data.ConnectionState.Open); // Close refused: the call still ran on it
        connection.Close(); // once the call has ended
        dataSource.Statistics.InUse.ShouldBe(0);
    }

    /// <summary>
    /// Opens a connection to a table t, begins a transaction holding one row of it, and runs on another thread an INSERT
    /// of that transaction whose value comes from <paramref name="function"/>, an application function SQLite runs;
    /// returns once the function runs, with the connection, its transaction and what the INSERT threw.
    /// </summary>
    private static (SaverDbConnection Connection, SaverDbTransaction Transaction, Task<Exception> Running) InsertInTransactionOnAnotherThread(
        string connectionString,
        Func<long> function)
    {
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var runs = new ManualResetEventSlim();
        connection.InnerConnection.CreateFunction("value_of_the_test", () =>
        {
            runs.Set();
            return function();
        });
        var transaction = connection.BeginTransaction();
        ConnectionTests.Scalar(connection, "INSERT INTO t VALUES (1)");
        var running = Task.Factory.StartNew(
            () =>
            {
                using var command = connection.CreateCommand();
                command.CommandText = "INSERT INTO t VALUES (value_of_the_test())";
                return Should.Throw<Exception>(() => command.ExecuteNonQuery());
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
        runs.Wait(Bound).ShouldBeTrue("the statement runs the function");
        runs.Dispose(); // SQLite runs the function once: the INSERT fails, and a failure of a function is not retried
        return (connection, transaction, running);
    }

    /// <summary>Holds the first attempt after <see cref="Armed"/> is set, whatever its token says, until <see cref="Release"/>.</summary>
    private sealed class HoldFirstAttempt : SaverRetryStrategy, IDisposable
    {
        public volatile bool Armed;

        public ManualResetEventSlim Holding { get; } = new();

        public ManualResetEventSlim Release { get; } = new();

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        {
            Hold();
            return attempt(state, cancellationToken);
        }

        public override async ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt, TState state, CancellationToken cancellationToken)
        {
            Hold();
            return await attempt(state, cancellationToken);
        }

        public void Dispose()
        {
            Holding.Dispose();
            Release.Dispose();
        }

        private void Hold()
        {
            if (Armed)
            {
                Armed = false;
                Holding.Set();
                Release.Wait(Bound, CancellationToken.None);
            }
        }
    }

    /// <summary>
    /// Runs a query held in a function until <paramref name="release"/> on one thread, a Close on another once it runs,
    /// and disposes the connection once that Close waits; keeps no reference to the connection.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (Thread Query, Thread Close) DisposeWhileACloseWaits(SaverDataSource dataSource, ManualResetEventSlim release)
    {
        var connection = dataSource.OpenConnection();
        var calls = connection.GetOpenPhysical("test").Calls;
        using var entered = new ManualResetEventSlim();
        HoldInFunction(connection.InnerConnection, entered, release);
        var query = new Thread(() => ConnectionTests.Scalar(connection, "SELECT held()"));
        query.Start();
        entered.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        var close = new Thread(() => Should.Throw<InvalidOperationException>(connection.Close));
        close.Start();
        Wait.Until(() => calls.CloseWaits);
        connection.Dispose(); // finds nothing to close
        return (query, close);
    }

    /// <summary>Creates held(), which sets <paramref name="entered"/> and waits for <paramref name="release"/>: its closure holds nothing else.</summary>
    private static void HoldInFunction(Microsoft.Data.Sqlite.SqliteConnection inner, ManualResetEventSlim entered, ManualResetEventSlim release)
        => inner.CreateFunction("held", () =>
        {
            entered.Set();
            release.Wait(TimeSpan.FromSeconds(30));
            return 1L;
        });

    /// <summary>A strategy like a Polly pipeline whose OnRetry/Fallback gives up on a locked connection and closes it.</summary>
    private sealed class CloseOnTransient(Action close) : SaverRetryStrategy
    {
        public bool Closed { get; private set; }

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        {
            try
            {
                return attempt(state, cancellationToken);
            }
            catch (SqliteException error) when (IsTransient(error))
            {
                Closed = true;
                close();
                return default!;
            }
        }

        public override async ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt,
            TState state,
            CancellationToken cancellationToken)
        {
            try
            {
                return await attempt(state, cancellationToken);
            }
            catch (SqliteException error) when (IsTransient(error))
            {
                Closed = true;
                close();
                return default!;
            }
        }
    }
}
