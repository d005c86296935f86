using Shouldly;

namespace SqliteSaver.Data.Tests.Pooling;

/// <summary>
/// Close made inside one of the connection's own calls, on its thread (a function SQLite runs in a statement, a retry
/// strategy's callback of a synchronous call) cannot end that call, which waits for it to return: it is refused at once,
/// the connection stays open and the call goes on as if it had not been made. Before, Close ended the call and waited
/// for it (for itself) until Busy Timeout and 5 s had passed, was refused only then, and the call then failed saying
/// the connection had been closed, though it was still open. Busy Timeout is 1 ms here, so that such a wait ends within
/// about 5 s.
/// </summary>
public class CloseInsideOwnCallTests : DatabaseTest
{
    private const string RefusedMessage = "inside one of this connection's own calls";

    [Test]
    public void Close_in_a_retry_strategys_attempt_of_a_synchronous_write_is_refused_and_the_write_is_kept()
    {
        using var strategy = new ClosingStrategy();
        using var dataSource = DataSource(strategy);
        using var connection = dataSource.OpenConnection();
        strategy.Arm(connection);

        Execute(connection, "INSERT INTO t VALUES (1)").ShouldBe(1);

        strategy.Refusal.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(RefusedMessage);
        connection.State.ShouldBe(System.Data.ConnectionState.Open);
        Count(connection).ShouldBe(1);
    }

    /// <summary>
    /// A Close by work that a retry strategy's callback of an asynchronous call started on another thread (a watchdog,
    /// which carries the call's async context) is not taken for one inside the call: it ends the call, whose long
    /// statement it interrupts, and closes the connection. A first version of the refusal looked at that context and
    /// refused it, leaving the watchdog unable to end the call (a review).
    /// </summary>
    [Test]
    public async Task Close_by_a_watchdog_a_retry_strategys_callback_started_ends_the_call_and_closes_the_connection()
    {
        using var strategy = new WatchdogStrategy();
        using var dataSource = DataSource(strategy);
        await using var connection = await dataSource.OpenConnectionAsync().ConfigureAwait(false);
        using var running = new ManualResetEventSlim();
        connection.InnerConnection.CreateFunction("running", () =>
        {
            running.Set();
            return 1L;
        });
        strategy.Arm(connection, running);

        await using var query = connection.CreateCommand();
        query.CommandText = "WITH RECURSIVE c(x) AS (SELECT running() UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT count(*) FROM c";
        var ended = await Should.ThrowAsync<InvalidOperationException>(() => query.ExecuteScalarAsync()).ConfigureAwait(false);

        ended.Message.ShouldContain("closed while this call ran");
        (await strategy.Watchdog!.WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false)).ShouldBeNull("the watchdog's Close threw");
        connection.State.ShouldBe(System.Data.ConnectionState.Closed);
    }

    [Test]
    public void Close_in_a_retry_strategys_attempt_of_BeginTransaction_is_refused_and_the_transaction_begins()
    {
        using var strategy = new ClosingStrategy();
        using var dataSource = DataSource(strategy);
        using var connection = dataSource.OpenConnection();
        strategy.Arm(connection);

        using (var transaction = connection.BeginTransaction())
        {
            Execute(connection, "INSERT INTO t VALUES (1)", transaction).ShouldBe(1);
            transaction.Commit();
        }

        strategy.Refusal.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(RefusedMessage);
        Count(connection).ShouldBe(1);
    }

    [Test]
    public async Task Close_in_a_function_SQLite_runs_in_a_statement_is_refused_and_the_statement_goes_on([Values] bool async)
    {
        using var dataSource = DataSource(strategy: null);
        await using var connection = await dataSource.OpenConnectionAsync().ConfigureAwait(false);
        Exception? refusal = null;
        connection.InnerConnection.CreateFunction("close_here", () =>
        {
            refusal = Record(connection.Close);
            return 7L;
        });

        await using var select = connection.CreateCommand();
        select.CommandText = "SELECT close_here()";
        (async ? await select.ExecuteScalarAsync().ConfigureAwait(false) : select.ExecuteScalar()).ShouldBe(7L);

        refusal.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(RefusedMessage);
        connection.State.ShouldBe(System.Data.ConnectionState.Open);
    }

    /// <summary>
    /// Calls nested deeper than a thread first makes room for (a function SQLite runs in one connection's statement runs
    /// a statement on another, whose function does so again) run, and the outermost is still seen running on the thread:
    /// a Close of its connection from the innermost is refused.
    /// </summary>
    [Test]
    public void Close_in_a_function_of_a_call_nested_six_deep_in_the_connections_own_is_refused()
    {
        using var dataSource = DataSource(strategy: null);
        var connections = Enumerable.Range(0, 6).Select(_ => dataSource.OpenConnection()).ToArray();
        Exception? refusal = null;
        for (var i = 0; i < connections.Length; i++)
        {
            var next = i + 1 < connections.Length ? connections[i + 1] : null;
            connections[i].InnerConnection.CreateFunction("nested", () =>
            {
                if (next is null)
                {
                    refusal = Record(connections[0].Close);
                    return 1L;
                }

                using var inner = next.CreateCommand();
                inner.CommandText = "SELECT nested() + 1";
                return (long)inner.ExecuteScalar()!;
            });
        }

        using (var outer = connections[0].CreateCommand())
        {
            outer.CommandText = "SELECT nested()";
            outer.ExecuteScalar().ShouldBe(6L);
        }

        refusal.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(RefusedMessage);
        connections[0].State.ShouldBe(System.Data.ConnectionState.Open);
        Array.ForEach(connections, connection => connection.Dispose());
    }

    [Test]
    public async Task Close_in_a_function_SQLite_runs_in_a_readers_step_is_refused_and_the_reader_reads_on([Values] bool async)
    {
        using var dataSource = DataSource(strategy: null);
        await using var connection = await dataSource.OpenConnectionAsync().ConfigureAwait(false);
        Execute(connection, "INSERT INTO t VALUES (1), (2)");
        Exception? refusal = null;
        connection.InnerConnection.CreateFunction("close_here", (long x) =>
        {
            if (x == 2)
            {
                refusal = Record(connection.Close);
            }

            return x;
        });

        await using var select = connection.CreateCommand();
        select.CommandText = "SELECT close_here(x) FROM t ORDER BY x";
        await using var reader = async ? await select.ExecuteReaderAsync().ConfigureAwait(false) : select.ExecuteReader();
        var values = new List<long>();
        while (async ? await reader.ReadAsync().ConfigureAwait(false) : reader.Read())
        {
            values.Add(reader.GetInt64(0));
        }

        values.ShouldBe([1L, 2L]);
        refusal.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(RefusedMessage);
        connection.State.ShouldBe(System.Data.ConnectionState.Open);
    }

    /// <summary>
    /// A reader opened with CommandBehavior.CloseConnection and disposed in a function SQLite runs in another statement
    /// of the connection: its closing of the connection is refused at once, as Close is there, and the statement goes on.
    /// </summary>
    [Test]
    public void A_CloseConnection_reader_disposed_in_a_function_SQLite_runs_in_a_statement_is_refused_its_closing()
    {
        using var dataSource = DataSource(strategy: null);
        using var connection = dataSource.OpenConnection();
        Execute(connection, "INSERT INTO t VALUES (1)");
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT x FROM t";
        var reader = command.ExecuteReader(System.Data.CommandBehavior.CloseConnection);
        Exception? refusal = null;
        connection.InnerConnection.CreateFunction("close_reader", () =>
        {
            refusal = Record(reader.Dispose);
            return 7L;
        });

        using var select = connection.CreateCommand();
        select.CommandText = "SELECT close_reader()";
        select.ExecuteScalar().ShouldBe(7L);

        refusal.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(RefusedMessage);
        connection.State.ShouldBe(System.Data.ConnectionState.Open);
    }

    private SaverDataSource DataSource(SaverRetryStrategy? strategy)
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var builder = new SaverDataSourceBuilder(connectionString) { Name = "close-inside-own-call" };
        if (strategy is not null)
        {
            builder.UseRetryStrategy(strategy);
        }

        return builder.Build();
    }

    private static int Execute(SaverDbConnection connection, string sql, SaverDbTransaction? transaction = null)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        return command.ExecuteNonQuery();
    }

    private static long Count(SaverDbConnection connection)
    {
        using var count = connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM t";
        return (long)count.ExecuteScalar()!;
    }

    private static Exception? Record(Action action)
    {
        try
        {
            action();
            return null;
        }
        catch (Exception exception)
        {
            return exception;
        }
    }

    /// <summary>Runs each attempt once; the first synchronous one after <see cref="Arm"/> first closes the connection, recording what Close threw.</summary>
    private sealed class ClosingStrategy : SaverRetryStrategy, IDisposable
    {
        private SaverDbConnection? _connection;

        public Exception? Refusal { get; private set; }

        public void Arm(SaverDbConnection connection) => _connection = connection;

        public void Dispose() => _connection = null;

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        {
            CloseOnce();
            return attempt(state, cancellationToken);
        }

        public override ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt,
            TState state,
            CancellationToken cancellationToken)
            => attempt(state, cancellationToken);

        private void CloseOnce()
        {
            if (Interlocked.Exchange(ref _connection, null) is { } connection)
            {
                Refusal = Record(connection.Close);
            }
        }
    }

    /// <summary>
    /// Runs each attempt once; the first asynchronous one after <see cref="Arm"/> starts a watchdog that closes the
    /// connection once the statement runs, on another thread, in the call's async context.
    /// </summary>
    private sealed class WatchdogStrategy : SaverRetryStrategy, IDisposable
    {
        private (SaverDbConnection Connection, ManualResetEventSlim Running)? _armed;

        /// <summary>What the watchdog's Close threw, null for nothing.</summary>
        public Task<Exception?>? Watchdog { get; private set; }

        public void Arm(SaverDbConnection connection, ManualResetEventSlim running) => _armed = (connection, running);

        public void Dispose() => _armed = null;

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
            => attempt(state, cancellationToken);

        public override ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt,
            TState state,
            CancellationToken cancellationToken)
        {
            if (_armed is var (connection, running))
            {
                _armed = null;
                Watchdog = Task.Run(() =>
                {
                    running.Wait(TimeSpan.FromSeconds(30));
                    return Record(connection.Close);
                });
            }

            return attempt(state, cancellationToken);
        }
    }
}
