using System.Diagnostics.Metrics;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Review;

/// <summary>
/// Found by a chaos review of the call tracking (RenterCalls, SaverDbCommand's running executions, the statement cache):
/// each test fails on the code it was written against.
/// </summary>
public class ChaosReviewTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A command whose ExecuteNonQueryAsync waits at the write gate (held by another connection's transaction) is
    /// moved to another connection, given another text, or run again, as Microsoft.Data.Sqlite allows once its call
    /// has returned (its async calls complete before they return); another command on the first connection then runs
    /// the same text. Each change is refused while the execution runs, as Microsoft.Data.Sqlite refuses them while a
    /// reader of the command is open, and the waiting execution writes its own value, once; awaited, the command moves
    /// and runs again. Before, the move or the new text gave the waiting execution's statement back to the cache, the
    /// other command rented it with its own parameters, and the waiting execution wrote the other's value (3 twice, 1
    /// never, or 2 twice).
    /// </summary>
    [Test]
    public async Task A_command_whose_async_execution_waits_is_not_moved_changed_or_run_again_under_it()
    {
        const string insert = "INSERT INTO t VALUES (@x)";
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL)");
        await using var holder = new SaverDbConnection(connectionString);
        await holder.OpenAsync();
        var transaction = await holder.BeginTransactionAsync(); // holds the process's write gate
        await using var first = new SaverDbConnection(connectionString);
        await first.OpenAsync();
        await using var second = new SaverDbConnection(connectionString);
        await second.OpenAsync();
        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;

        using var moved = first.CreateCommand();
        moved.CommandText = insert;
        moved.Parameters.AddWithValue("@x", 1);
        var one = moved.ExecuteNonQueryAsync();
        gate.WaitingCount.ShouldBe(1, "the write waits at the gate");

        Should.Throw<InvalidOperationException>(() => moved.Connection = second).Message.ShouldContain("still runs");
        Should.Throw<InvalidOperationException>(() => moved.CommandText = "SELECT 1").Message.ShouldContain("still runs");
        (await Should.ThrowAsync<InvalidOperationException>(() => moved.ExecuteNonQueryAsync())).Message.ShouldContain("still runs");
        Should.Throw<InvalidOperationException>(() => moved.ExecuteScalar()).Message.ShouldContain("still runs");

        using var other = first.CreateCommand();
        other.CommandText = insert;
        other.Parameters.AddWithValue("@x", 3);
        var three = other.ExecuteNonQueryAsync(); // waits for the first connection's earlier execution
        gate.WaitingCount.ShouldBe(1);

        await transaction.CommitAsync();
        await transaction.DisposeAsync();
        await Task.WhenAny(Task.WhenAll(one, three), Task.Delay(Bound));
        $"{Outcome(one)}; {Outcome(three)}; rows {Rows(second)}".ShouldBe("returned 1; returned 1; rows 1,3", "each write once, with its own value");

        moved.Connection = second;
        moved.Parameters["@x"].Value = 2;
        (await moved.ExecuteNonQueryAsync()).ShouldBe(1);
        Rows(first).ShouldBe("1,2,3");
    }

    /// <summary>
    /// Dapper's pattern of disposing a command before awaiting its ExecuteNonQueryAsync, after which the command is set
    /// up and run again (Microsoft.Data.Sqlite's commands can be run after Dispose, and its async calls have completed by
    /// then). The second execution reuses the statement the first, still waiting at the gate, holds, and replaces its
    /// parameters: the first reports one row written but writes 2, and the second, whose statement the first gave back
    /// with its parameters cleared, fails. Either outcome for the second is acceptable (written once, or refused with
    /// nothing written), but the first's acknowledged write of 1 must be there.
    /// </summary>
    [Test]
    public async Task Running_a_disposed_command_again_while_its_earlier_async_execution_waits_keeps_the_earlier_ones_values()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL)");
        await using var holder = new SaverDbConnection(connectionString);
        await holder.OpenAsync();
        var transaction = await holder.BeginTransactionAsync();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;

        var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (@x)";
        command.Parameters.AddWithValue("@x", 1);
        var one = command.ExecuteNonQueryAsync();
        gate.WaitingCount.ShouldBe(1, "the write waits at the gate");
        command.Dispose();

        command.Parameters.Clear();
        command.Parameters.AddWithValue("@x", 2);
        var two = command.ExecuteNonQueryAsync();

        await transaction.CommitAsync();
        await transaction.DisposeAsync();
        await Task.WhenAny(Task.WhenAll(one, two), Task.Delay(Bound));

        // The second may write once or be refused (InvalidOperationException) with nothing written.
        var outcome = $"{Outcome(one)}; {Outcome(two)}; rows {Rows(connection)}";
        outcome.ShouldBeOneOf(
            ["returned 1; returned 1; rows 1,2", "returned 1; InvalidOperationException; rows 1"],
            "the first execution's acknowledged write is kept, with its value, once");
    }

    /// <summary>
    /// A reader's value read on one thread while another thread closes the connection (the use Close is documented for:
    /// calls running on another thread are ended and waited for). Each read must give the row's value, 42, or fail with
    /// InvalidOperationException (the reader is closed). The getters forward to the SQLite reader with no call begun,
    /// so Close resets and gives back the statement under them: GetValue returns 0 or DBNull for a NOT NULL column
    /// holding 42 (and sometimes a NullReferenceException or an ObjectDisposedException for sqlite3_stmt escapes).
    /// The statement is by then back in the cache, for the next renter of the physical connection to step. Stochastic:
    /// on the code it was written against more than half the rounds show it, so the loop stops at the first one.
    /// </summary>
    [Test]
    public void A_value_read_while_another_thread_closes_the_connection_is_the_rows_value_or_an_InvalidOperationException()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL); INSERT INTO t VALUES (42)");
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
            var getter = Task.Factory.StartNew(
                () =>
                {
                    reading.Set();
                    try
                    {
                        while (true)
                        {
                            var value = reader.GetValue(0);
                            if (value is not 42L)
                            {
                                return $"GetValue returned {(value is DBNull ? "DBNull" : value)}";
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
            getter.Wait(Bound).ShouldBeTrue("the getter stops once the reader is closed");
            if (getter.Result is { } wrong)
            {
                seen.Add(wrong);
            }
        }

        seen.ShouldBeEmpty();
    }

    /// <summary>
    /// A command disposed on another thread just as its ExecuteReader starts (a using block or an abort handler on
    /// another thread, as DisposeDuringCallTests has at the end of an execution): after the execution has rented its
    /// statement from the cache, before its call begins. Dispose sees no call running, gives the statement back and
    /// clears the command's hold on it. The execution must then be refused (InvalidOperationException) or run to a
    /// reader that the connection's Close closes, leaving the pooled connection usable by the next renter. Instead
    /// Bind returns the command's _prepared field, read again after the lookup, which Dispose has just set to null,
    /// and BindWithParameters throws NullReferenceException. The Dispose is made from inside the statement-cache
    /// lookup (a metric callback on the executing thread), as in CloseRaceTests.
    /// </summary>
    [Test]
    public void A_command_disposed_as_its_ExecuteReader_starts_leaves_no_statement_running_in_the_pool()
    {
        const string select = "SELECT x FROM t ORDER BY x";
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        var builder = new SaverDataSourceBuilder(connectionString) { Name = "chaos-review-dispose-at-start" };
        using var dataSource = builder.Build();
        var connection = dataSource.OpenConnection();
        var command = connection.CreateCommand();
        command.CommandText = select;

        Task? disposing = null;
        System.Data.Common.DbDataReader? reader = null;
        string execution;
        using (OnFirstStatementLookup(builder.Name!, () =>
        {
            disposing = Task.Factory.StartNew(command.Dispose, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            disposing.Wait(Bound).ShouldBeTrue("Dispose returned");
        }))
        {
            try
            {
                reader = command.ExecuteReader();
                execution = "ran";
            }
            catch (InvalidOperationException)
            {
                execution = "refused";
            }
            catch (Exception error)
            {
                execution = error.ToString();
            }
        }

        disposing.ShouldNotBeNull().IsCompletedSuccessfully.ShouldBeTrue();
        connection.Close();
        var readerClosed = reader is null || reader.IsClosed;

        using var next = dataSource.OpenConnection(); // the same physical connection, the only one idle
        string nextOutcome;
        try
        {
            nextOutcome = $"returned {ConnectionTests.Scalar(next, select)}";
        }
        catch (Exception error)
        {
            nextOutcome = $"{error.GetType().Name}: {error.Message}";
        }

        $"{execution}; reader closed: {readerClosed}; next renter: {nextOutcome}".ShouldBeOneOf(
            "ran; reader closed: True; next renter: returned 1",
            "refused; reader closed: True; next renter: returned 1");
    }

    /// <summary>
    /// Prepare racing a Close from another thread, as CloseRaceTests has for an execution (Close runs to its end from
    /// inside Prepare's statement-cache lookup, after Prepare found the connection open). Executions are calls of the
    /// renter that see Close came (BeginCall) and run nothing; Prepare is not a call, so it prepares its text on the
    /// physical connection Close has already reset and returned to the pool, and reports success on a closed
    /// connection. SQLite applies a flag PRAGMA such as recursive_triggers as it prepares it, so the next renter of
    /// that physical connection gets the setting this closed connection's Prepare made. Prepare must throw
    /// InvalidOperationException, and the next renter must see the connection string's setting.
    /// </summary>
    [Test]
    public void Prepare_whose_connection_is_closed_as_it_starts_does_not_change_the_next_renters_connection()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var builder = new SaverDataSourceBuilder(connectionString) { Name = "chaos-review-prepare-after-close" };
        using var dataSource = builder.Build();
        var connection = dataSource.OpenConnection();
        ConnectionTests.Pragma(connection, "recursive_triggers").ShouldBe(0L);
        var prepare = connection.CreateCommand();
        prepare.CommandText = "PRAGMA recursive_triggers = ON";

        Task? closing = null;
        string outcome;
        using (OnFirstStatementLookup(builder.Name!, () =>
        {
            closing = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            closing.Wait(Bound).ShouldBeTrue("Close returned");
        }))
        {
            try
            {
                prepare.Prepare();
                outcome = "prepared";
            }
            catch (InvalidOperationException)
            {
                outcome = nameof(InvalidOperationException);
            }
        }

        closing.ShouldNotBeNull().IsCompletedSuccessfully.ShouldBeTrue("Close completed before Prepare went on");
        using var next = dataSource.OpenConnection(); // the same physical connection, the only one idle
        var nextSetting = ConnectionTests.Pragma(next, "recursive_triggers");
        $"Prepare: {outcome}; next renter's recursive_triggers: {nextSetting}".ShouldBe(
            "Prepare: InvalidOperationException; next renter's recursive_triggers: 0");
    }

    /// <summary>Runs <paramref name="onLookup"/> once, on the thread of the first statement-cache lookup of the pool named <paramref name="poolName"/>.</summary>
    private static MeterListener OnFirstStatementLookup(string poolName, Action onLookup)
    {
        var fired = 0;
        var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, meterListener) =>
        {
            if (instrument.Meter.Name == SaverMetrics.MeterName && instrument.Name == SaverMetrics.StatementCacheLookups.Name)
            {
                meterListener.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == SaverMetrics.PoolNameTag && (string?)tag.Value == poolName && Interlocked.Exchange(ref fired, 1) == 0)
                {
                    onLookup();
                }
            }
        });
        listener.Start();
        return listener;
    }

    /// <summary>
    /// Close from another thread while BeginTransaction runs, with a call that outlasts Close's wait (here the BEGIN's
    /// own attempt, held by the retry strategy past Busy Timeout=0 and 5 s): Close gives up, throws and keeps the
    /// connection open. The BEGIN then succeeds, and BeginTransaction throws the "closed while this call ran; nothing of
    /// it was kept" error (RenterCalls.ClosedDuring), counting on Close to roll back what it began. But Close
    /// gave up: the connection stays open holding the process's write gate and an open SQLite transaction that no
    /// SaverDbTransaction owns. The next command on the connection runs in that hidden transaction and reports its row
    /// written; closing the connection then rolls it back, and until then every other writer of the process waits at
    /// the gate. BeginTransaction that throws must leave no transaction and no gate behind (or, having begun one, return
    /// it).
    /// </summary>
    [Test]
    public void BeginTransaction_ended_by_a_Close_that_gives_up_leaves_no_hidden_transaction_or_write_gate()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var strategy = new HoldFirstAttempt();
        var builder = new SaverDataSourceBuilder(connectionString) { Name = "chaos-review-begin-outlives-close" }.UseRetryStrategy(strategy);
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
        $"BeginTransaction {begin}; other writer {otherWriter}; rows {rows}".ShouldBeOneOf(
            "BeginTransaction threw; other writer returned 1; rows 1,2",
            "BeginTransaction returned; other writer returned 1; rows 1,2");
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

    /// <summary>What a call's task did: "returned value", or the type of its exception.</summary>
    private static string Outcome(Task<int> task)
        => task.Status switch
        {
            TaskStatus.RanToCompletion => $"returned {task.Result}",
            TaskStatus.Faulted => task.Exception!.InnerException!.GetType().Name,
            var status => status.ToString(),
        };

    /// <summary>The values of t, in order, joined with commas.</summary>
    private static string Rows(SaverDbConnection connection)
        => ConnectionTests.Scalar(connection, "SELECT coalesce(group_concat(x, ','), '') FROM (SELECT x FROM t ORDER BY x)") as string ?? "";
}
