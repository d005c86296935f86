using System.Data;
using System.Data.Common;
using Dapper;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// SQLite rolls a whole transaction back itself after some errors (a trigger's RAISE(ROLLBACK), ON CONFLICT ROLLBACK,
/// a full disk). A unit of work that carries on must not have its later writes committed one by one outside the
/// transaction: Microsoft.Data.Sqlite refuses them, and so does this library.
/// </summary>
public class TransactionEndedBySqliteTests : DatabaseTest
{
    [Test]
    public void A_unit_of_work_that_sends_COMMIT_as_SQL_is_told_that_running_it_again_would_apply_it_twice()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        connection.Execute("CREATE TABLE t (x)");

        var refused = Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(transaction =>
        {
            connection.Execute("INSERT INTO t VALUES (1)", transaction: transaction);
            connection.Execute("COMMIT", transaction: transaction); // a migration script's own COMMIT, say
        }));

        refused.Message.ShouldContain("running it again would apply that twice");
        connection.ExecuteScalar<long>("SELECT count(*) FROM t").ShouldBe(1L); // committed once
    }

    /// <summary>
    /// A unit of work whose connection is closed inside it (here by a reader opened with CloseConnection, as helper
    /// methods hand them out) has its transaction rolled back by the close. RunInTransaction then does not return as
    /// if it had committed (it returns "the result of the attempt that committed"), nor run it again.
    /// </summary>
    [Test]
    public async Task A_unit_of_work_whose_connection_closed_inside_it_is_not_reported_as_committed([Values] bool async)
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        connection.Execute("CREATE TABLE t (x)");

        int Work(SaverDbTransaction transaction)
        {
            connection.Execute("INSERT INTO t VALUES (1)", transaction: transaction);
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT count(*) FROM t";
            using (var reader = command.ExecuteReader(CommandBehavior.CloseConnection))
            {
                reader.Read();
            }

            return 42;
        }

        var error = async
            ? await Should.ThrowAsync<InvalidOperationException>(() => connection.RunInTransactionAsync((transaction, _) => Task.FromResult(Work(transaction))))
            : Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(Work));

        error.Message.ShouldContain("closed while the unit of work ran");
        using var check = new SaverDbConnection(Folder.ConnectionString());
        check.ExecuteScalar<long>("SELECT count(*) FROM t").ShouldBe(0L);
    }

    /// <summary>
    /// A COMMIT sent as SQL inside a unit of work is detected, so that the unit of work is never run again after it
    /// committed part of its work, also when the batch that sends it begins a transaction again: the transaction is
    /// open when the next busy error comes, but the part the batch committed would be applied twice.
    /// </summary>
    [Test]
    public async Task A_unit_of_work_whose_batch_commits_and_begins_again_is_not_run_again_after_a_busy_error([Values] bool async)
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        connection.Execute("CREATE TABLE t (x)");
        var attempts = 0;

        void Work(SaverDbTransaction transaction) => EndAndBeginThenMeetAStaleSnapshot(connection, transaction, "COMMIT; BEGIN", ++attempts);

        var error = async
            ? await Should.ThrowAsync<InvalidOperationException>(() => connection.RunInTransactionAsync(
                (transaction, _) =>
                {
                    Work(transaction);
                    return Task.CompletedTask;
                },
                deferred: true))
            : Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(Work, deferred: true));

        error.Message.ShouldContain("COMMIT sent as SQL");
        error.InnerException.ShouldBeOfType<SqliteException>().SqliteExtendedErrorCode.ShouldBe(517);
        attempts.ShouldBe(1);
        connection.ExecuteScalar<long>("SELECT count(*) FROM t WHERE x = 1").ShouldBe(1L);
        connection.ExecuteScalar<long>("SELECT count(*) FROM t WHERE x = 2").ShouldBe(0L);
    }

    /// <summary>
    /// A unit of work that rolled its transaction back by SQL and began again ("ROLLBACK; BEGIN") kept nothing of what
    /// it did before, so after a busy error it is run again like any other, and each write lands once.
    /// </summary>
    [Test]
    public void A_unit_of_work_that_rolls_back_by_SQL_and_begins_again_is_run_again_after_a_busy_error()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        connection.Execute("CREATE TABLE t (x)");
        var attempts = 0;

        void Work(SaverDbTransaction transaction) => EndAndBeginThenMeetAStaleSnapshot(connection, transaction, "ROLLBACK; BEGIN", ++attempts);

        connection.RunInTransaction(Work, deferred: true);

        attempts.ShouldBe(2);
        connection.ExecuteScalar<long>("SELECT count(*) FROM t WHERE x = 1").ShouldBe(0L);
        connection.ExecuteScalar<long>("SELECT count(*) FROM t WHERE x = 2").ShouldBe(1L);
    }

    /// <summary>
    /// A unit of work's attempt that inserts 1, sends <paramref name="batch"/> (which ends its transaction and begins
    /// another), reads, and inserts 2, which on the first attempt meets SQLITE_BUSY_SNAPSHOT: another connection wrote
    /// after the read began the new transaction's snapshot.
    /// </summary>
    private void EndAndBeginThenMeetAStaleSnapshot(SaverDbConnection connection, SaverDbTransaction transaction, string batch, int attempt)
    {
        connection.Execute("INSERT INTO t VALUES (1)", transaction: transaction);
        connection.Execute(batch, transaction: transaction);
        connection.ExecuteScalar<long>("SELECT count(*) FROM t", transaction: transaction); // the snapshot starts
        if (attempt == 1)
        {
            using var other = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
            other.Open();
            other.Execute("INSERT INTO t VALUES (100)"); // makes that snapshot stale
        }

        connection.Execute("INSERT INTO t VALUES (2)", transaction: transaction); // SQLITE_BUSY_SNAPSHOT on attempt 1
    }

    [Test]
    public void Later_writes_of_a_unit_of_work_whose_transaction_SQLite_rolled_back_are_refused_not_committed()
    {
        using (var plain = new SqliteConnection($"Data Source={Folder.File("plain.db")};Pooling=False"))
        {
            CarryOnAfterRollback(plain).ShouldBe(0L);
        }

        using var saver = new SaverDbConnection(Folder.ConnectionString());
        CarryOnAfterRollback(saver).ShouldBe(0L);

        using var other = new SaverDbConnection(Folder.ConnectionString("Default Timeout=1"));
        other.Execute("INSERT INTO t VALUES (4)").ShouldBe(1); // the write gate was left
    }

    [Test]
    public async Task An_async_write_and_commit_after_SQLite_rolled_the_transaction_back_are_refused()
    {
        await using var connection = new SaverDbConnection(Folder.ConnectionString());
        await Prepare(connection);
        await using var transaction = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("INSERT INTO t VALUES (1)", transaction: transaction);
        await Should.ThrowAsync<SqliteException>(() => connection.ExecuteAsync("INSERT INTO u VALUES (-1)", transaction: transaction));

        await Should.ThrowAsync<InvalidOperationException>(() => connection.ExecuteAsync("INSERT INTO t VALUES (2)", transaction: transaction));
        await Should.ThrowAsync<InvalidOperationException>(() => transaction.CommitAsync());
        await using (var command = connection.CreateCommand())
        {
            command.CommandText = "INSERT INTO t VALUES (3)";
            Should.Throw<InvalidOperationException>(command.Prepare);
            await Should.ThrowAsync<InvalidOperationException>(() => command.ExecuteReaderAsync(CommandBehavior.CloseConnection));
            connection.State.ShouldBe(ConnectionState.Open); // refused before it runs, as Microsoft.Data.Sqlite refuses it
        }

        await transaction.RollbackAsync();
        (await connection.ExecuteScalarAsync<long>("SELECT count(*) FROM t")).ShouldBe(0L);
    }

    /// <summary>
    /// Writes a row, meets RAISE(ROLLBACK), then writes two more, commits and disposes, each step that throws an
    /// <see cref="InvalidOperationException"/> caught as a logging caller would; returns the rows kept.
    /// </summary>
    private static long CarryOnAfterRollback(DbConnection connection)
    {
        Prepare(connection).GetAwaiter().GetResult();
        var transaction = connection.BeginTransaction();
        connection.Execute("INSERT INTO t VALUES (1)", transaction: transaction);
        Should.Throw<SqliteException>(() => connection.Execute("INSERT INTO u VALUES (-1)", transaction: transaction)).Message.ShouldContain("negative");

        Should.Throw<InvalidOperationException>(() => connection.Execute("INSERT INTO t VALUES (2)", transaction: transaction));
        Should.Throw<InvalidOperationException>(() => connection.Execute("INSERT INTO t VALUES (3)", transaction: transaction));
        Should.Throw<InvalidOperationException>(transaction.Commit);
        transaction.Dispose();

        return connection.ExecuteScalar<long>("SELECT count(*) FROM t");
    }

    private static async Task Prepare(DbConnection connection)
    {
        await connection.OpenAsync();
        await connection.ExecuteAsync("""
            CREATE TABLE t (id INTEGER PRIMARY KEY);
            CREATE TABLE u (v INTEGER);
            CREATE TRIGGER no_negative BEFORE INSERT ON u WHEN NEW.v < 0 BEGIN SELECT RAISE(ROLLBACK, 'negative'); END;
            """);
    }
}
