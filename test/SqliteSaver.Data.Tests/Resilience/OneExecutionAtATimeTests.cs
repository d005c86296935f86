using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Resilience;

/// <summary>
/// Several executions started on one connection without awaiting each (Dapper's pipelined multi-exec, or code that
/// collects tasks): the connection runs them one at a time, in the order they were started, each as it would run
/// alone. A later one waits for the latest still running before it begins; one nested in that execution (a retry
/// strategy's callback) does not, as it would wait for itself. A command whose execution still runs refuses a new
/// text, another connection and another execution, so that the execution runs with what it started with.
/// </summary>
public class OneExecutionAtATimeTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The first write holds the process's write gate and polls for the write lock another process holds (a plain
    /// Microsoft.Data.Sqlite connection here). The second waits its turn, and writes once the lock is free. Before, it
    /// took the gate the first holds for its own write as the caller's transaction's, ran unqueued and unretried, and
    /// failed with "database is locked" after Busy Timeout (inside a transaction the first had begun, it would have
    /// been committed or rolled back with the first's).
    /// </summary>
    [Test]
    public async Task A_second_async_write_on_a_connection_whose_first_waits_for_another_processs_lock_waits_its_turn()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=50");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL)");
        using var locker = OtherProcessWriter(connectionString);

        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var physical = connection.GetOpenPhysical("test");
        using var first = connection.CreateCommand();
        first.CommandText = "INSERT INTO t VALUES (1)";
        var one = first.ExecuteNonQueryAsync();
        Wait.Until(() => physical.HeldGate is not null || one.IsCompleted);
        one.IsCompleted.ShouldBeFalse("the first write waits for the other process's lock, holding the gate");

        using var second = connection.CreateCommand();
        second.CommandText = "INSERT INTO t VALUES (2)";
        var two = second.ExecuteNonQueryAsync();
        Release(locker);

        await Task.WhenAny(Task.WhenAll(one, two), Task.Delay(Bound));
        $"{Outcome(one)}; {Outcome(two)}; rows {Rows(connection)}".ShouldBe("returned 1; returned 1; rows 1,2");
    }

    /// <summary>
    /// Two commands of one connection started while the write gate is held elsewhere: the first waits at the gate, the
    /// second for the first. Cancel on the first ends the first's call only; the second was never cancelled and writes
    /// once the gate is free. Before, both waited at the gate as calls of the connection sharing one token source, which
    /// Cancel cancelled: the second failed with SQLITE_INTERRUPT too (chaos review).
    /// </summary>
    [Test]
    public async Task Cancel_of_one_command_does_not_end_another_commands_execution_started_after_it()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL)");
        await using var holder = new SaverDbConnection(connectionString);
        await holder.OpenAsync();
        var transaction = await holder.BeginTransactionAsync();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;

        using var cancelled = connection.CreateCommand();
        cancelled.CommandText = "INSERT INTO t VALUES (1)";
        using var bystander = connection.CreateCommand();
        bystander.CommandText = "INSERT INTO t VALUES (2)";
        var one = cancelled.ExecuteNonQueryAsync();
        var two = bystander.ExecuteNonQueryAsync();
        gate.WaitingCount.ShouldBe(1, "the first write waits at the gate, the second for the first");

        cancelled.Cancel();
        await Task.WhenAny(one, Task.Delay(Bound));
        one.IsCompleted.ShouldBeTrue("Cancel ended the cancelled command's wait");

        await transaction.CommitAsync();
        await transaction.DisposeAsync();
        await Task.WhenAny(two, Task.Delay(Bound));
        two.Status.ShouldBe(TaskStatus.RanToCompletion, $"the command never cancelled failed: {two.Exception?.InnerException}");
        Rows(connection).ShouldBe("2");
    }

    /// <summary>
    /// An execution waiting for the connection's earlier one ends when its own token is cancelled, having run nothing;
    /// the earlier one goes on and writes.
    /// </summary>
    [Test]
    public async Task An_execution_waiting_for_the_earlier_one_ends_on_its_token_and_runs_nothing()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL)");
        await using var holder = new SaverDbConnection(connectionString);
        await holder.OpenAsync();
        var transaction = await holder.BeginTransactionAsync();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();

        using var first = connection.CreateCommand();
        first.CommandText = "INSERT INTO t VALUES (1)";
        using var second = connection.CreateCommand();
        second.CommandText = "INSERT INTO t VALUES (2)";
        using var cancellation = new CancellationTokenSource();
        var one = first.ExecuteNonQueryAsync();
        var two = second.ExecuteNonQueryAsync(cancellation.Token);
        two.IsCompleted.ShouldBeFalse("the second waits for the first");
        Should.Throw<InvalidOperationException>(() => second.CommandText = "SELECT 1").Message.ShouldContain("still runs");

        await cancellation.CancelAsync();
        (await Should.ThrowAsync<OperationCanceledException>(() => two.WaitAsync(Bound))).CancellationToken.ShouldBe(cancellation.Token);
        one.IsCompleted.ShouldBeFalse("the first still waits at the gate");

        await transaction.CommitAsync();
        await transaction.DisposeAsync();
        (await one.WaitAsync(Bound)).ShouldBe(1);
        Rows(connection).ShouldBe("1");
    }

    /// <summary>
    /// A retry strategy's callback that runs a query on the same connection, inside an execution that has waited (at
    /// the write gate, so it is the connection's latest execution still running): the query is nested in that execution
    /// and runs at once rather than wait for it, which would never end.
    /// </summary>
    [Test]
    public async Task A_query_nested_in_a_running_execution_does_not_wait_for_it()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x INTEGER NOT NULL); INSERT INTO t VALUES (7)");
        SaverDbConnection? connection = null;
        long? nested = null;
        var strategy = new QueryingStrategy(async () => nested = (long?)await Query(connection!));
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseRetryStrategy(strategy).Build();
        await using var holder = await dataSource.OpenConnectionAsync();
        var transaction = await holder.BeginTransactionAsync();
        connection = await dataSource.OpenConnectionAsync();

        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (8)";
        var write = insert.ExecuteNonQueryAsync();
        write.IsCompleted.ShouldBeFalse("the write waits at the gate");
        strategy.Armed = true;
        await transaction.CommitAsync();
        await transaction.DisposeAsync();

        await Task.WhenAny(write, Task.Delay(Bound));
        write.Status.ShouldBe(TaskStatus.RanToCompletion, "the write's nested query waited for the write");
        nested.ShouldBe(7L);
        Rows(connection).ShouldBe("7,8");
        await connection.DisposeAsync();
    }

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
    /// up and run again (Microsoft.Data.Sqlite's commands can be run after Dispose, and its async calls have completed
    /// by then): the second execution is refused while the first runs, or writes once after it; the first's
    /// acknowledged write of 1 is there. Before, the second reused the statement the first, still waiting at the gate,
    /// held, and replaced its parameters: the first reported one row written but wrote 2, and the second failed
    /// (chaos review).
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

    private static async Task<object?> Query(SaverDbConnection connection)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT x FROM t WHERE x = 7";
        return await command.ExecuteScalarAsync();
    }

    /// <summary>A plain Microsoft.Data.Sqlite connection holding the write lock, as another process's writer would.</summary>
    private static SqliteConnection OtherProcessWriter(string connectionString)
    {
        var locker = new SqliteConnection("Data Source=" + new SaverDbConnection(connectionString).DataSource);
        locker.Open();
        using var begin = locker.CreateCommand();
        begin.CommandText = "BEGIN IMMEDIATE";
        begin.ExecuteNonQuery();
        return locker;
    }

    private static void Release(SqliteConnection locker)
    {
        using var rollback = locker.CreateCommand();
        rollback.CommandText = "ROLLBACK";
        rollback.ExecuteNonQuery();
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

    /// <summary>Once armed, runs a query of the application's before the next asynchronous attempt, as a logging callback might.</summary>
    private sealed class QueryingStrategy(Func<Task> query) : SaverRetryStrategy
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
                await query();
            }

            return await attempt(state, cancellationToken);
        }
    }
}
