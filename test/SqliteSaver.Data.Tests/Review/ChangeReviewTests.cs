using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Tests.Review;

/// <summary>
/// Review of "one execution at a time per connection" and its companions: executions that should wait and do not,
/// waits that never end, refusals and promises of the README and XML docs that do not hold.
/// </summary>
public class ChangeReviewTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Three async writes started on one connection: the first holds the write gate and polls for another process's
    /// write lock, the second waits for the first, the third for the second. The second's token is cancelled: it ends,
    /// and the third must still wait for the first (the connection's execution still running). It does not: it
    /// waited for the second's task only (the connection's LatestAsyncExecution when it started), so it runs while the
    /// first holds the gate, takes that gate as its caller's transaction's, runs unqueued and unretried and fails with
    /// "database is locked", the very failure the change fixes for two executions.
    /// </summary>
    [Test]
    public async Task Cancelling_a_waiting_execution_does_not_let_the_next_one_run_during_the_first()
    {
        // The first keeps waiting for the lock for 5 s at least (100 attempts of 50 ms); a statement run unqueued in
        // its transaction fails within 50 ms.
        var connectionString = Folder.ConnectionString("Busy Timeout=50;Retry=100;Base Delay=0.001;Max Delay=0.001");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL)");
        using var locker = HoldWriteLock();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var physical = connection.GetOpenPhysical("test");

        using var first = Insert(connection, 1);
        var one = first.ExecuteNonQueryAsync();
        Wait.Until(() => physical.HeldGate is not null || one.IsCompleted);
        one.IsCompleted.ShouldBeFalse("the first write holds the gate and waits for the other process's lock");

        using var second = Insert(connection, 2);
        using var cancellation = new CancellationTokenSource();
        var two = second.ExecuteNonQueryAsync(cancellation.Token);
        using var third = Insert(connection, 3);
        var three = third.ExecuteNonQueryAsync();
        two.IsCompleted.ShouldBeFalse();
        three.IsCompleted.ShouldBeFalse();

        await cancellation.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(() => two.WaitAsync(Bound));

        // The third may only run once the first has ended; on the code under review it fails within Busy Timeout.
        await Task.WhenAny(three, Task.Delay(TimeSpan.FromSeconds(3)));
        var beforeRelease = three.IsCompleted ? $"third {Outcome(three)} while the first still ran" : "third waited";
        Release(locker);
        await Task.WhenAny(Task.WhenAll(one, three), Task.Delay(Bound));

        $"{beforeRelease}; {Outcome(one)}; {Outcome(three)}; rows {Rows(connection)}".ShouldBe("third waited; returned 1; returned 1; rows 1,3");
    }

    /// <summary>
    /// Cancel on a command whose ExecuteNonQueryAsync waits for the connection's earlier execution. The README and
    /// Cancel's XML doc: "A call it finds waiting (at the gate, for another process's lock, between retries) stops
    /// waiting and throws SQLITE_INTERRUPT". Before the change that execution waited at the gate as a call, and Cancel
    /// ended it. Now Cancel sees no call running (_running is 0 while it waits for the earlier one) and does nothing:
    /// the execution writes once the earlier one has ended, after the caller cancelled it.
    /// </summary>
    [Test]
    public async Task Cancel_of_a_command_waiting_for_the_earlier_execution_ends_it()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL)");
        await using var holder = new SaverDbConnection(connectionString);
        await holder.OpenAsync();
        var transaction = await holder.BeginTransactionAsync(); // holds the process's write gate
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;

        using var first = Insert(connection, 1);
        var one = first.ExecuteNonQueryAsync();
        gate.WaitingCount.ShouldBe(1, "the first write waits at the gate");
        using var second = Insert(connection, 2);
        var two = second.ExecuteNonQueryAsync();
        two.IsCompleted.ShouldBeFalse("the second waits for the first");

        second.Cancel();
        await Task.WhenAny(two, Task.Delay(TimeSpan.FromSeconds(5)));
        var afterCancel = two.IsCompleted ? "second ended by Cancel" : "second still waits after Cancel";

        await transaction.CommitAsync();
        await transaction.DisposeAsync();
        await Task.WhenAny(Task.WhenAll(one, two), Task.Delay(Bound));
        $"{afterCancel}; {Outcome(one)}; {Outcome(two)}; rows {Rows(connection)}".ShouldBe(
            "second ended by Cancel; returned 1; SqliteException; rows 1");
    }

    /// <summary>
    /// An async execution started on a single-threaded SynchronizationContext (a UI thread's) whose retry strategy
    /// awaits without ConfigureAwait(false) (application code, or a Polly pipeline with ContinueOnCapturedContext),
    /// then a synchronous query on the same connection, on that thread, before the task is awaited. The synchronous
    /// query is refused (InvalidOperationException: await the async execution first), and the async one completes.
    /// On the code reviewed it blocked the context's thread until the async execution ended, and that execution's
    /// continuation was queued on the blocked thread: a deadlock. (Before that change the query ran at once, inside
    /// whatever transaction the async execution had open.)
    /// </summary>
    [Test]
    public async Task A_synchronous_query_after_an_async_one_started_on_a_UI_context_does_not_deadlock()
    {
        var connectionString = Folder.ConnectionString();
        var strategy = new YieldingStrategy();
        using var dataSource = new SaverDataSourceBuilder(connectionString) { Name = "change-review-ui-deadlock" }.UseRetryStrategy(strategy).Build();
        await using var connection = await dataSource.OpenConnectionAsync();
        ConnectionTests.Scalar(connection, "SELECT 1").ShouldBe(1L);

        var context = new SingleThreadedContext();
        var work = context.Start(async () =>
        {
            await using var first = connection.CreateCommand();
            first.CommandText = "SELECT 1";
            await using var second = connection.CreateCommand();
            second.CommandText = "SELECT 2";
            strategy.Armed = true;
            var one = first.ExecuteScalarAsync(); // its strategy yields to this context
            string two;
            try
            {
                two = $"{second.ExecuteScalar()}";
            }
            catch (InvalidOperationException refused) when (refused.Message.Contains("still runs", StringComparison.Ordinal))
            {
                two = "refused";
            }

            return $"{await one},{two}";
        });

        var finished = await Task.WhenAny(work, Task.Delay(TimeSpan.FromSeconds(10))) == work;
        if (!finished)
        {
            context.RunPendingHere(work, Bound); // runs the queued continuation here, which ends the deadlock
        }

        $"finished: {finished}; {await work.WaitAsync(Bound)}".ShouldBe("finished: True; 1,refused");
    }

    /// <summary>
    /// An async query whose retry strategy yields before its attempt runs a query of the application's on the same
    /// connection in the strategy, as a logging callback might (nested: it runs at once, as the change intends), and
    /// that nested query does not complete at once (its own pass through the strategy waits, as a Polly pipeline's
    /// may). The nested query's task replaces the outer query as the connection's LatestAsyncExecution, so a write the
    /// caller starts now (not nested) waits for the nested query only and then runs before the outer query's attempt:
    /// the count started before the write sees the write ("executions ... run in the order they were started").
    /// </summary>
    [Test]
    public async Task A_nested_execution_that_has_not_finished_does_not_let_a_later_execution_overtake_the_outer_one()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL)");
        SaverDbConnection? connection = null;
        var strategy = new NestingStrategy(() => QueryAsync(connection!));
        using var dataSource = new SaverDataSourceBuilder(connectionString) { Name = "change-review-nested-latest" }.UseRetryStrategy(strategy).Build();
        connection = await dataSource.OpenConnectionAsync();

        using var count = connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM t";
        strategy.Armed = true;
        var one = count.ExecuteScalarAsync();
        await strategy.NestedStarted.Task.WaitAsync(Bound);

        using var insert = Insert(connection, 2);
        var two = insert.ExecuteNonQueryAsync(); // the caller's, not nested: must wait for the count
        strategy.SecondStarted = two;
        strategy.ReleaseNested.SetResult();

        await Task.WhenAny(Task.WhenAll(one, two), Task.Delay(Bound));
        $"count {Outcome(one)}; insert {Outcome(two)}".ShouldBe("count returned 0; insert returned 1");
        await connection.DisposeAsync();
    }

    /// <summary>
    /// BeginTransactionAsync on a connection whose async write (not awaited yet, as in the change's own test) holds the
    /// write gate and polls for another process's write lock. "A connection runs one command execution at a time"
    /// does not cover BeginTransaction: it neither waits for the execution nor is refused, finds the gate held by its
    /// physical connection (EnterGate skips), and polls for the lock alongside the write. Seen: the write fails with
    /// SqliteException (its BEGIN lost, nothing written), or it commits; either way the caller's transaction is then
    /// open without the write gate (the write released it as it ended), so the process's other writers pass the gate
    /// and meet SQLITE_BUSY unqueued. The write should be committed on its own, and the transaction begin after it,
    /// holding the gate (or be refused).
    /// </summary>
    [Test]
    public async Task BeginTransaction_while_an_async_write_holds_the_gate_does_not_take_or_break_that_write()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=50");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL)");
        using var locker = HoldWriteLock();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var physical = connection.GetOpenPhysical("test");

        using var first = Insert(connection, 1);
        var one = first.ExecuteNonQueryAsync();
        Wait.Until(() => physical.HeldGate is not null || one.IsCompleted);
        one.IsCompleted.ShouldBeFalse("the write holds the gate and waits for the other process's lock");

        var begin = connection.BeginTransactionAsync().AsTask();
        await Task.WhenAny(begin, Task.Delay(TimeSpan.FromMilliseconds(500)));
        Release(locker);
        await Task.WhenAny(Task.WhenAll(one, begin), Task.Delay(Bound));
        var transaction = begin.Status == TaskStatus.RanToCompletion ? begin.Result : null;
        var beginOutcome = begin.Status switch
        {
            TaskStatus.RanToCompletion => $"began, holding the gate: {physical.HeldGate is not null}",
            TaskStatus.Faulted => begin.Exception!.InnerException!.GetType().Name,
            var status => status.ToString(),
        };
        if (transaction is not null)
        {
            await transaction.RollbackAsync(); // the caller's transaction, not the write's
            await transaction.DisposeAsync();
        }

        $"write {Outcome(one)}; BeginTransaction {beginOutcome}; rows {Rows(connection)}".ShouldBeOneOf(
            "write returned 1; BeginTransaction began, holding the gate: True; rows 1",
            "write returned 1; BeginTransaction InvalidOperationException; rows 1");
    }

    /// <summary>
    /// As CloseRaceTests' test of GetValue racing a Close from another thread, for GetStream and GetTextReader, which
    /// the change left unguarded (they forward to the SQLite reader, not through Read): each read gives the row's
    /// value, "42", or throws InvalidOperationException. They return an empty value read from the statement Close
    /// reset (or another renter's), as GetValue did before the change. Stochastic: the loop stops at the first wrong
    /// value, or after 3 s.
    /// </summary>
    [TestCase("GetStream")]
    [TestCase("GetTextReader")]
    public void A_stream_read_while_another_thread_closes_the_connection_is_the_rows_value_or_an_InvalidOperationException(string getter)
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x TEXT NOT NULL); INSERT INTO t VALUES ('42')");
        var seen = new List<string>();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (seen.Count == 0 && watch.Elapsed < TimeSpan.FromSeconds(3))
        {
            using var connection = new SaverDbConnection(connectionString);
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT x FROM t";
            var reader = command.ExecuteReader();
            reader.Read().ShouldBeTrue();
            using var reading = new ManualResetEventSlim();
            var reads = Task.Factory.StartNew(
                () =>
                {
                    reading.Set();
                    try
                    {
                        while (true)
                        {
                            string value;
                            if (getter == "GetStream")
                            {
                                using var stream = reader.GetStream(0);
                                using var text = new StreamReader(stream);
                                value = text.ReadToEnd();
                            }
                            else
                            {
                                using var text = reader.GetTextReader(0);
                                value = text.ReadToEnd();
                            }

                            if (value != "42")
                            {
                                return $"{getter} returned '{value}'";
                            }
                        }
                    }
                    catch (InvalidOperationException error) when (error is not ObjectDisposedException)
                    {
                        return null; // the reader is closed
                    }
                    catch (Exception error)
                    {
                        return error.GetType().Name;
                    }
                },
                CancellationToken.None,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default);
            reading.Wait(Bound).ShouldBeTrue();
            connection.Close();
            reads.Wait(Bound).ShouldBeTrue("the reads stop once the reader is closed");
            if (reads.Result is { } wrong)
            {
                seen.Add(wrong);
            }
        }

        seen.ShouldBeEmpty();
    }

    /// <summary>
    /// CommandTimeout: "Seconds the command may wait for locks in all before failing with SQLITE_BUSY: in the
    /// process's write queue, ...". A write with CommandTimeout=1 started while the connection's earlier write (no
    /// CommandTimeout: 0) waits at the gate, held by another connection's transaction. Before the change it queued at
    /// the gate and failed after 1 s with SQLITE_BUSY (CommandTimeoutException); now its wait for the earlier execution
    /// has no bound but the earlier one's, here none: it waits as long as the transaction stays open.
    /// </summary>
    [Test]
    public async Task An_execution_waiting_for_the_earlier_one_still_ends_at_its_CommandTimeout()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL)");
        await using var holder = new SaverDbConnection(connectionString);
        await holder.OpenAsync();
        var transaction = await holder.BeginTransactionAsync();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;

        using var first = Insert(connection, 1);
        first.CommandTimeout = 0;
        var one = first.ExecuteNonQueryAsync();
        gate.WaitingCount.ShouldBe(1);
        using var second = Insert(connection, 2);
        second.CommandTimeout = 1;
        var two = second.ExecuteNonQueryAsync();

        await Task.WhenAny(two, Task.Delay(TimeSpan.FromSeconds(10)));
        var afterTenSeconds = !two.IsCompleted
            ? "second still waits"
            : two.Exception?.InnerException is SqliteException { SqliteErrorCode: 5 } ? "second failed with SQLITE_BUSY" : $"second {Outcome(two)}";
        await transaction.CommitAsync();
        await transaction.DisposeAsync();
        await Task.WhenAny(Task.WhenAll(one, two), Task.Delay(Bound));
        $"{afterTenSeconds}; first {Outcome(one)}; rows {Rows(connection)}".ShouldBe("second failed with SQLITE_BUSY; first returned 1; rows 1");
    }

    private static async Task QueryAsync(SaverDbConnection connection)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 7";
        await command.ExecuteScalarAsync();
    }

    private static SaverDbCommand Insert(SaverDbConnection connection, int value)
    {
        var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (@x)";
        command.Parameters.AddWithValue("@x", value);
        return command;
    }

    private static void Release(SqliteConnection locker)
    {
        using var rollback = locker.CreateCommand();
        rollback.CommandText = "ROLLBACK";
        rollback.ExecuteNonQuery();
    }

    /// <summary>What a call's task did: "returned value", or the type of its exception.</summary>
    private static string Outcome<T>(Task<T> task)
        => task.Status switch
        {
            TaskStatus.RanToCompletion => $"returned {task.Result}",
            TaskStatus.Faulted => task.Exception!.InnerException!.GetType().Name,
            var status => status.ToString(),
        };

    /// <summary>The values of t, in order, joined with commas.</summary>
    private static string Rows(SaverDbConnection connection)
        => ConnectionTests.Scalar(connection, "SELECT coalesce(group_concat(x, ','), '') FROM (SELECT x FROM t ORDER BY x)") as string ?? "";

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

    /// <summary>Once armed, yields before the next asynchronous attempt, capturing the caller's context as application code does.</summary>
    private sealed class YieldingStrategy : SaverRetryStrategy
    {
        public volatile bool Armed;

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
            => attempt(state, cancellationToken);

        public override async ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt, TState state, CancellationToken cancellationToken)
        {
            if (Armed)
            {
                Armed = false;
                await Task.Yield(); // continues on the SynchronizationContext, as an await without ConfigureAwait(false) does
            }

            return await attempt(state, cancellationToken);
        }
    }

    /// <summary>
    /// Once armed, the next asynchronous attempt (the outer execution's) yields, runs the nested query and awaits it;
    /// the nested query's own pass waits for <see cref="ReleaseNested"/>. The outer one then waits for the caller's
    /// second execution to end, at most 5 s, before its attempt: had that one waited for it, as it should, it ends
    /// later.
    /// </summary>
    private sealed class NestingStrategy(Func<Task> nested) : SaverRetryStrategy
    {
        private int _armed;
        private int _holdNested;

        public bool Armed
        {
            set => _armed = value ? 1 : 0;
        }

        public TaskCompletionSource NestedStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource ReleaseNested { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public volatile Task? SecondStarted;

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
            => attempt(state, cancellationToken);

        public override async ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt, TState state, CancellationToken cancellationToken)
        {
            if (Interlocked.Exchange(ref _armed, 0) == 1)
            {
                await Task.Yield(); // the outer execution is the connection's latest, as its caller got its task
                Volatile.Write(ref _holdNested, 1);
                var query = nested();
                NestedStarted.TrySetResult();
                await query;
                await Task.WhenAny(SecondStarted ?? Task.CompletedTask, Task.Delay(TimeSpan.FromSeconds(5), CancellationToken.None));
            }
            else if (Interlocked.Exchange(ref _holdNested, 0) == 1)
            {
                await ReleaseNested.Task; // the nested query's pass: it has not finished when its task is returned
            }

            return await attempt(state, cancellationToken);
        }
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
