using System.Reflection;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests;

/// <summary>
/// Review of 76ec345, 48c613f and f588614 (a command disposed while its execution runs leaves the statement to that
/// execution; BeginExecution; a transaction's Dispose swallowing a Rollback refused because Close took the connection).
/// Each test fails on that change and says what it observed and what it expected.
/// </summary>
public class SecondChangeReviewTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// ExecuteReader's success path ends the command's running (EndRunning) before it wraps the reader (WrapReader). A
    /// Dispose on another thread in that window reads _running == 0 and gives the statement back to the cache, though
    /// the SqliteDataReader about to be returned still reads it; the reader, once wrapped, finds the command unbound and
    /// never gives it back itself. Another command with the same text on the connection then rents that very statement
    /// while the reader is open.
    /// The window is held open deterministically: a Cancel from a third thread, started by the retry strategy once the
    /// attempt has returned the reader, sees the call running and stops inside its lock in a callback on the call's
    /// token (which throws, so Cancel ends without its interrupt); the execution then decrements _running and waits for
    /// that lock in EndRunning. The test reads the private _running by reflection to know the decrement happened.
    /// Observed: the second command's ExecuteScalar fails (it was handed the statement the open reader reads; Microsoft.Data.Sqlite
    /// refuses to run a command whose reader is open) instead of returning 1; expected: the statement stays with the
    /// execution until its reader closes (Dispose, seeing an execution that returns a reader, must not give it back), the
    /// other command returns 1 and the reader reads 1 and 2.
    /// </summary>
    [Test]
    public void A_command_disposed_between_ExecuteReaders_EndRunning_and_WrapReader_gives_back_the_statement_its_reader_reads()
    {
        const string select = "SELECT x FROM t ORDER BY x";
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        using var strategy = new AfterAttemptStrategy();
        var builder = new SaverDataSourceBuilder(connectionString) { Name = "second-review-reader-window" }.UseRetryStrategy(strategy);
        using var dataSource = builder.Build();
        using var connection = dataSource.OpenConnection();
        var command = connection.CreateCommand();
        command.CommandText = select;
        command.Cancel(); // runs nothing: makes the command's Cancel lock

        using var inCancel = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        Task? cancelling = null;
        strategy.Arm(token =>
        {
            // Runs on the executing thread after the attempt returned the reader, while the call still runs.
            token.Register(() =>
            {
                inCancel.Set();
                release.Wait(Bound);
                throw new InvalidOperationException("test: Cancel stops here, before its interrupt");
            });
            cancelling = Task.Factory.StartNew(command.Cancel, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            inCancel.Wait(Bound, CancellationToken.None).ShouldBeTrue("Cancel saw the call running and holds its lock");
        });

        var executing = Task.Factory.StartNew(() => command.ExecuteReader(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Wait.Until(() => (inCancel.IsSet && Running(command) == 0) || executing.IsCompleted);
        executing.IsCompleted.ShouldBeFalse("the execution waits for Cancel's lock in EndRunning, before WrapReader");

        command.Dispose(); // as Dapper's pipelined code, or a using block on another thread, may
        release.Set();
        try
        {
            cancelling.ShouldNotBeNull().Wait(Bound);
        }
        catch (AggregateException)
        {
            // the callback's own exception, which kept Cancel from interrupting
        }

        executing.Wait(Bound).ShouldBeTrue("ExecuteReader returned");
        using var reader = executing.Result;
        reader.Read().ShouldBeTrue();
        var first = reader.GetInt64(0);

        string other;
        try
        {
            other = $"returned {ConnectionTests.Scalar(connection, select)}";
        }
        catch (Exception error)
        {
            other = $"{error.GetType().Name}: {error.Message}";
        }

        var rest = new List<long>();
        string readerOutcome;
        try
        {
            while (reader.Read())
            {
                rest.Add(reader.GetInt64(0));
            }

            readerOutcome = "read to its end";
        }
        catch (Exception error)
        {
            readerOutcome = $"{error.GetType().Name}: {error.Message}";
        }

        other.ShouldBe("returned 1", "another command with the same text was handed the statement the open reader reads");
        first.ShouldBe(1L);
        readerOutcome.ShouldBe("read to its end");
        rest.ShouldBe([2L]);
    }

    /// <summary>
    /// SaverDbTransaction.Dispose swallows the InvalidOperationException of a Rollback refused because the connection no
    /// longer Holds its physical connection, trusting that Close rolls the transaction back. But Close gives the physical
    /// connection back to the connection and throws when a call of the renter does not end within Busy Timeout + 5 s
    /// (here a statement in an application function, which sqlite3_interrupt does not stop): the transaction is then
    /// neither rolled back nor completed. Observed: Dispose returns quietly, Close throws InvalidOperationException, and
    /// the connection is left open in the transaction (SQLite out of autocommit, the write gate held, the row written),
    /// with nothing telling the disposing code. Expected: a Dispose that returns quietly leaves the transaction rolled
    /// back; when it could not (Close failed), it throws as it did before f588614.
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

        using var holding = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        connection.InnerConnection.CreateFunction("hold", () =>
        {
            holding.Set();
            release.Wait(Bound); // an interrupt does not stop an application function
            return 1L;
        });
        var held = Task.Factory.StartNew(() => ConnectionTests.Scalar(connection, "SELECT hold()"), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        holding.Wait(Bound).ShouldBeTrue("the statement runs the function");

        var closing = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Wait.Until(() => !connection.Holds(physical) || closing.IsCompleted);
        closing.IsCompleted.ShouldBeFalse("Close waits for the held call");

        Exception? disposeError = null;
        try
        {
            transaction.Dispose(); // a using block ending on this thread
        }
        catch (Exception error)
        {
            disposeError = error;
        }

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

        release.Set();
        try
        {
            held.Wait(Bound);
        }
        catch (AggregateException)
        {
            // interrupted by Close, or ended by it: not what this test is about
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

    /// <summary>The command's private count of running calls (see SaverDbCommand.Cancel), to know EndRunning has decremented it.</summary>
    private static int Running(SaverDbCommand command)
        => (int)typeof(SaverDbCommand).GetField("_running", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(command)!;

    /// <summary>Runs each attempt once; the first after <see cref="Arm"/> then hands its token to a callback before returning.</summary>
    private sealed class AfterAttemptStrategy : SaverRetryStrategy, IDisposable
    {
        private Action<CancellationToken>? _after;

        public void Arm(Action<CancellationToken> after) => _after = after;

        public void Dispose() => _after = null;

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        {
            var result = attempt(state, cancellationToken);
            After(cancellationToken);
            return result;
        }

        public override async ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt,
            TState state,
            CancellationToken cancellationToken)
        {
            var result = await attempt(state, cancellationToken);
            After(cancellationToken);
            return result;
        }

        private void After(CancellationToken cancellationToken)
        {
            if (Interlocked.Exchange(ref _after, null) is { } after)
            {
                after(cancellationToken);
            }
        }
    }
}
