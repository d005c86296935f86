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
