using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>
/// When SQLite refuses to roll back a failed write (here an authorizer denies ROLLBACK; in life an I/O error, or an
/// interrupt that stays pending while another statement is active), the transaction stays open. Later commands on
/// that connection must not run in it, or they would report success and be lost with it; the write gate stays held
/// as SQLite's write lock is; once a rollback succeeds the connection works again.
/// </summary>
public class FailedRollbackTests : DatabaseTest
{
    [Test]
    public void A_write_SQLite_cannot_roll_back_stops_later_commands_until_the_rollback_succeeds()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x NOT NULL)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var physical = connection.GetOpenPhysical("test");

        using (DenyRollback(physical.Handle))
        {
            var failed = Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1); INSERT INTO t VALUES (NULL)"));
            failed.Message.ShouldContain("could not roll its transaction back");
            failed.InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(raw.SQLITE_CONSTRAINT); // the write's own error
            physical.InTransaction.ShouldBeTrue(); // with the first row in it
            physical.HeldGate.ShouldNotBeNull();

            var refused = Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)"));
            refused.Message.ShouldContain("could not roll back an earlier transaction");
            refused.InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(raw.SQLITE_AUTH);
            Should.Throw<InvalidOperationException>(() => ConnectionTests.Scalar(connection, "SELECT count(*) FROM t"));
            Should.Throw<InvalidOperationException>(() => connection.BeginTransaction());
            Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(_ => { }));
            Should.Throw<InvalidOperationException>(() => connection.Checkpoint(CheckpointMode.Truncate));
        }

        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (3)").ShouldBe(1);
        physical.HeldGate.ShouldBeNull();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("3"); // committed, and nothing else
    }

    /// <summary>
    /// An interrupt meant for a statement (Close's second one, from its own thread, say) that lands on the ROLLBACK of a
    /// transaction: the rollback is tried again and succeeds, rather than leave the connection refusing every command
    /// until it is closed. Here a progress handler interrupts the first ROLLBACK once (or the first two: it is tried up
    /// to three times). Before, Rollback threw SQLITE_INTERRUPT with the transaction still open (a chaos trial saw it as
    /// "could not roll its transaction back").
    /// </summary>
    [TestCase(1)]
    [TestCase(2)]
    public void A_rollback_an_interrupt_stops_once_is_tried_again(int interrupted)
    {
        var connectionString = Folder.ConnectionString();
        var (connection, transaction) = InTransactionWithOneRow(connectionString);
        using var opened = connection;
        var physical = connection.GetOpenPhysical("test");

        var interrupts = 0;
        raw.sqlite3_progress_handler(physical.Handle, 1, _ => Interlocked.Increment(ref interrupts) <= interrupted ? 1 : 0, null);
        try
        {
            transaction.Rollback();
        }
        finally
        {
            raw.sqlite3_progress_handler(physical.Handle, 0, null, null);
        }

        interrupts.ShouldBeGreaterThan(1, "the first ROLLBACK was interrupted, and another ran");
        physical.InTransaction.ShouldBeFalse();
        physical.RollbackFailure.ShouldBeNull();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)").ShouldBe(1);
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("2");
    }

    /// <summary>
    /// A ROLLBACK an interrupt stops every time (one that stays pending while another statement runs) is tried three
    /// times, not forever: the failure is kept, the transaction stays open, and a later rollback that is not
    /// interrupted ends it.
    /// </summary>
    [Test]
    public void A_rollback_interrupted_every_time_is_tried_three_times_and_kept_as_failed()
    {
        var connectionString = Folder.ConnectionString();
        var (connection, transaction) = InTransactionWithOneRow(connectionString);
        using var opened = connection;
        var physical = connection.GetOpenPhysical("test");

        var runs = 0;
        raw.sqlite3_progress_handler(physical.Handle, 1, _ => Interlocked.Increment(ref runs) <= 10 ? 1 : 0, null); // bounded: a loop without end still ends
        try
        {
            Should.Throw<SqliteException>(() => physical.Rollback()).SqliteErrorCode.ShouldBe(raw.SQLITE_INTERRUPT);
        }
        finally
        {
            raw.sqlite3_progress_handler(physical.Handle, 0, null, null);
        }

        runs.ShouldBe(3, "each ROLLBACK run is stopped at the handler's first call");
        physical.InTransaction.ShouldBeTrue();
        physical.RollbackFailure.ShouldNotBeNull().SqliteErrorCode.ShouldBe(raw.SQLITE_INTERRUPT);
        physical.TryRollback().ShouldBeTrue();
        physical.RollbackFailure.ShouldBeNull();
        transaction.Dispose();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public async Task An_async_write_SQLite_cannot_roll_back_stops_later_commands_until_the_rollback_succeeds()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x NOT NULL)");
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var physical = connection.GetOpenPhysical("test");
        using var cancellation = new CancellationTokenSource();

        using (DenyRollback(physical.Handle))
        {
            await Should.ThrowAsync<InvalidOperationException>(() => ExecAsync(connection, "INSERT INTO t VALUES (1); INSERT INTO t VALUES (NULL)", cancellation.Token));
            await Should.ThrowAsync<InvalidOperationException>(() => ExecAsync(connection, "INSERT INTO t VALUES (2)", cancellation.Token));
            await Should.ThrowAsync<InvalidOperationException>(async () => await connection.BeginTransactionAsync(cancellation.Token));
        }

        (await ExecAsync(connection, "INSERT INTO t VALUES (3)", cancellation.Token)).ShouldBe(1);
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("3");
    }

    [Test]
    public void A_transaction_whose_rollback_SQLite_refuses_keeps_the_gate_and_lets_no_command_join_it()
    {
        var connectionString = Folder.ConnectionString();
        var (connection, transaction) = InTransactionWithOneRow(connectionString);
        using var opened = connection;
        var physical = connection.GetOpenPhysical("test");

        using (DenyRollback(physical.Handle))
        {
            Should.Throw<SqliteException>(transaction.Rollback).SqliteErrorCode.ShouldBe(raw.SQLITE_AUTH);
            transaction.Connection.ShouldBeNull(); // completed, as a failed rollback leaves an ADO.NET transaction
            physical.HeldGate.ShouldNotBeNull();
            Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)"));
        }

        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (3)").ShouldBe(1);
        physical.HeldGate.ShouldBeNull();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("3");
    }

    /// <summary>
    /// A checkpoint or a WAL status read, the first call on the connection once SQLite can roll back the transaction it
    /// refused to, rolls it back first, as a command would, and leaves the write gate kept for it: the checkpoint then
    /// runs rather than be refused for that transaction (SQLITE_LOCKED). Before a test, dropping that rollback from
    /// them passed every test (a hunt).
    /// </summary>
    [TestCase("Checkpoint")]
    [TestCase("GetWalStatus")]
    public void A_checkpoint_call_once_SQLite_can_roll_back_the_refused_transaction_rolls_it_back_first(string call)
    {
        var connectionString = Folder.ConnectionString();
        var (connection, transaction) = InTransactionWithOneRow(connectionString);
        using var opened = connection;
        var physical = connection.GetOpenPhysical("test");
        using (DenyRollback(physical.Handle))
        {
            Should.Throw<SqliteException>(transaction.Rollback).SqliteErrorCode.ShouldBe(raw.SQLITE_AUTH);
        }

        if (call == "Checkpoint")
        {
            connection.Checkpoint(CheckpointMode.Truncate).ShouldBe(new CheckpointResult(false, 0, 0));
        }
        else
        {
            connection.GetWalStatus().JournalMode.ShouldBe("wal");
        }

        physical.InTransaction.ShouldBeFalse();
        physical.HeldGate.ShouldBeNull();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public void A_reader_of_a_write_whose_rollback_SQLite_refuses_lets_no_command_join_that_write()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var physical = connection.GetOpenPhysical("test");
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (5) RETURNING id; INSERT INTO t VALUES (5)";

        using (DenyRollback(physical.Handle))
        {
            var reader = command.ExecuteReader();
            reader.Read().ShouldBeTrue();
            Should.Throw<SqliteException>(() => reader.NextResult()).SqliteErrorCode.ShouldBe(raw.SQLITE_CONSTRAINT);
            reader.Dispose(); // rolls back, and SQLite refuses
            physical.InTransaction.ShouldBeTrue();
            Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (6)"));
        }

        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (7)").ShouldBe(1);
        PoolTests.Scalar(connectionString, "SELECT group_concat(id) FROM t").ShouldBe("7");
    }

    [Test]
    public async Task A_reader_open_when_a_write_on_its_connection_cannot_be_rolled_back_does_not_run_its_next_statement()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x NOT NULL)");
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var physical = connection.GetOpenPhysical("test");
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1; SELECT count(*) FROM t";
        var reader = await command.ExecuteReaderAsync();
        reader.Read().ShouldBeTrue();

        using (DenyRollback(physical.Handle))
        {
            Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1); INSERT INTO t VALUES (NULL)"));

            // The next SELECT would read the failed write's row, which no one will ever commit.
            Should.Throw<InvalidOperationException>(() => reader.NextResult()).InnerException.ShouldBeOfType<SqliteException>();
            using var cancellation = new CancellationTokenSource();
            await Should.ThrowAsync<InvalidOperationException>(() => reader.NextResultAsync(cancellation.Token));
            await reader.DisposeAsync();
        }

        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (7)").ShouldBe(1);
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("7");
    }

    [Test]
    public void A_write_that_meets_BUSY_and_whose_rollback_SQLite_refuses_is_not_retried_inside_the_kept_transaction()
    {
        var connectionString = Folder.ConnectionString("Base Delay=0.001;Max Delay=0.001");
        PoolTests.Execute(connectionString, "CREATE TABLE a (x); CREATE TABLE b (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var physical = connection.GetOpenPhysical("test");
        var calls = 0;
        connection.InnerConnection.CreateFunction("busy_once", () =>
            Interlocked.Increment(ref calls) == 1 ? throw new SqliteException("SQLite Error 5: 'database is locked'.", 5) : 1L);

        using (DenyRollback(physical.Handle))
        {
            Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "INSERT INTO a VALUES (1); INSERT INTO b VALUES (busy_once());"))
                .InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(raw.SQLITE_BUSY); // the write's own error
            calls.ShouldBe(1); // not retried inside the first attempt's transaction
        }

        ConnectionTests.Exec(connection, "INSERT INTO a VALUES (1); INSERT INTO b VALUES (busy_once());").ShouldBe(2);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM a").ShouldBe(1L);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM b").ShouldBe(1L);
    }

    [Test]
    public void A_retry_strategy_that_swallows_a_write_SQLite_cannot_roll_back_does_not_free_the_gate_of_the_kept_transaction()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString()).UseRetryStrategy(new Fallback()).Build();
        using (var setup = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(setup, "CREATE TABLE t (x NOT NULL)");
        }

        using var connection = dataSource.OpenConnection();
        var physical = connection.GetOpenPhysical("test");
        using (DenyRollback(physical.Handle))
        {
            ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1); INSERT INTO t VALUES (NULL)").ShouldBe(0); // the fallback's value
            physical.InTransaction.ShouldBeTrue();
            physical.HeldGate.ShouldNotBeNull(); // as SQLite keeps its write lock: the next writer waits in line, not on SQLite
            Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)"));
        }

        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (3)").ShouldBe(1);
        physical.HeldGate.ShouldBeNull();
        ConnectionTests.Scalar(connection, "SELECT group_concat(x) FROM t").ShouldBe("3");
    }

    /// <summary>
    /// The attempt leaves the gate only as it succeeds; after a failure a strategy turns into a result, SQLite having rolled
    /// the write back, the gate is left once the strategy returns (kept held, the connection's next command ran unretried
    /// as one in the caller's transaction; this passed every test, a hunt).
    /// </summary>
    [Test]
    public async Task A_retry_strategy_that_swallows_a_failed_write_SQLite_rolled_back_frees_the_gate([Values] bool async)
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString()).UseRetryStrategy(new Fallback()).Build();
        using var connection = dataSource.OpenConnection();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x NOT NULL)");
        var physical = connection.GetOpenPhysical("test");
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1); INSERT INTO t VALUES (NULL)";

        (async ? await command.ExecuteNonQueryAsync() : command.ExecuteNonQuery()).ShouldBe(0); // the fallback's value

        physical.InTransaction.ShouldBeFalse();
        physical.HeldGate.ShouldBeNull();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    /// <summary>
    /// A strategy that retries the error of a write SQLite could not roll back: its next attempt rolls that transaction
    /// back first, then writes in a transaction of its own (without that, its BEGIN failed inside the kept transaction;
    /// this passed every test, a hunt).
    /// </summary>
    [Test]
    public async Task A_retry_strategy_that_retries_a_write_SQLite_could_not_roll_back_rolls_it_back_before_the_next_attempt([Values] bool async)
    {
        Allow? deny = null;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString()).UseRetryStrategy(new RetryOnce(() => deny!.Dispose())).Build();
        using var connection = dataSource.OpenConnection();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x NOT NULL)");
        var physical = connection.GetOpenPhysical("test");
        var calls = 0;
        connection.InnerConnection.CreateFunction("null_once", () => Interlocked.Increment(ref calls) == 1 ? null : (long?)1);
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (2); INSERT INTO t VALUES (null_once())";
        deny = DenyRollback(physical.Handle);

        (async ? await command.ExecuteNonQueryAsync() : command.ExecuteNonQuery()).ShouldBe(2);

        calls.ShouldBe(2);
        physical.InTransaction.ShouldBeFalse();
        physical.HeldGate.ShouldBeNull();
        ConnectionTests.Scalar(connection, "SELECT group_concat(x) FROM t").ShouldBe("2,1"); // the first attempt's 2 rolled back
    }

    [Test]
    public void Closing_a_connection_whose_rollback_SQLite_refuses_frees_the_gate_and_loses_no_later_write()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x NOT NULL)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var physical = connection.GetOpenPhysical("test");
        using (DenyRollback(physical.Handle))
        {
            Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1); INSERT INTO t VALUES (NULL)"));
            connection.Dispose(); // the pool cannot reset it either, and discards it
        }

        using (var next = new SaverDbConnection(connectionString))
        {
            next.Open();
            next.GetOpenPhysical("test").ShouldNotBeSameAs(physical);
            ConnectionTests.Exec(next, "INSERT INTO t VALUES (2)").ShouldBe(1);
        }

        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("2");
    }

    /// <summary>Makes SQLite refuse every ROLLBACK on the connection (SQLITE_AUTH) until disposed.</summary>
    private static Allow DenyRollback(sqlite3 handle)
    {
        raw.sqlite3_set_authorizer(
            handle,
            (_, action, operation, _, _, _) => action == raw.SQLITE_TRANSACTION && operation == "ROLLBACK" ? raw.SQLITE_DENY : raw.SQLITE_OK,
            null);
        return new Allow(handle);
    }

    /// <summary>Creates table t, opens a connection and begins a transaction on it that has inserted 1 into t.</summary>
    private static (SaverDbConnection Connection, SaverDbTransaction Transaction) InTransactionWithOneRow(string connectionString)
    {
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (1)";
        insert.Transaction = transaction;
        insert.ExecuteNonQuery();
        return (connection, transaction);
    }

    private static async Task<int> ExecAsync(SaverDbConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private sealed class Allow(sqlite3 handle) : IDisposable
    {
        public void Dispose()
        {
            if (!handle.IsClosed) // a connection the pool discarded
            {
                raw.sqlite3_set_authorizer(handle, (strdelegate_authorizer)null!, null);
            }
        }
    }

    /// <summary>Tries an attempt that failed with an <see cref="InvalidOperationException"/> once more, after <paramref name="beforeRetry"/>.</summary>
    private sealed class RetryOnce(Action beforeRetry) : SaverRetryStrategy
    {
        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        {
            try
            {
                return attempt(state, cancellationToken);
            }
            catch (InvalidOperationException)
            {
                beforeRetry();
                return attempt(state, cancellationToken);
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
            catch (InvalidOperationException)
            {
                beforeRetry();
                return await attempt(state, cancellationToken);
            }
        }
    }

    /// <summary>A strategy like a Polly Fallback: a failed attempt yields a default result instead of an exception.</summary>
    private sealed class Fallback : SaverRetryStrategy
    {
        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        {
            try
            {
                return attempt(state, cancellationToken);
            }
            catch (Exception error) when (error is InvalidOperationException or SqliteException)
            {
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
            catch (Exception error) when (error is InvalidOperationException or SqliteException)
            {
                return default!;
            }
        }
    }
}
