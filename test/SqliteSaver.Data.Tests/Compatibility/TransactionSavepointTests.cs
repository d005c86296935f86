using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// Savepoints through <see cref="DbTransaction"/> (<c>Save</c>, <c>Rollback(name)</c>, <c>Release</c>), in plain
/// ADO.NET, as Microsoft.Data.Sqlite runs them.
/// </summary>
public class TransactionSavepointTests : DatabaseTest
{
    [Test]
    public async Task A_savepoint_round_trip_undoes_only_what_followed_it_as_with_MDS([Values] bool async)
    {
        using (var mds = new SqliteConnection($"Data Source={Folder.File("mds.db")};Pooling=False"))
        {
            (await RoundTrip(mds, async)).ShouldBe("1,3");
        }

        var connectionString = Folder.ConnectionString();
        using var saver = new SaverDbConnection(connectionString);
        (await RoundTrip(saver, async)).ShouldBe("1,3");
        using var other = new SaverDbConnection(connectionString);
        other.Open();
        Rows(other).ShouldBe("1,3"); // committed
    }

    [Test]
    public void Rolling_back_to_a_savepoint_keeps_the_transaction_open_with_its_write_gate()
    {
        var connectionString = Folder.ConnectionString();
        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;
        using DbConnection connection = new SaverDbConnection(connectionString);
        connection.Open();
        Execute(connection, null, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
        using var transaction = connection.BeginTransaction();
        transaction.Save("a");
        Execute(connection, transaction, "INSERT INTO t VALUES (1)");

        transaction.Rollback("a");

        gate.IsHeld.ShouldBeTrue();
        transaction.Connection.ShouldBeSameAs(connection);
        Execute(connection, transaction, "INSERT INTO t VALUES (2)");
        transaction.Rollback(); // the whole transaction: nothing after the savepoint is left committed
        gate.IsHeld.ShouldBeFalse();
        Rows(connection).ShouldBeEmpty();
    }

    [Test]
    public void Savepoints_nest_and_rolling_back_to_an_outer_one_removes_the_inner_ones()
    {
        using DbConnection connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        Execute(connection, null, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
        using var transaction = connection.BeginTransaction();
        Execute(connection, transaction, "INSERT INTO t VALUES (1)");
        transaction.Save("outer");
        Execute(connection, transaction, "INSERT INTO t VALUES (2)");
        transaction.Save("inner");
        Execute(connection, transaction, "INSERT INTO t VALUES (3)");

        transaction.Rollback("inner");
        Rows(connection, transaction).ShouldBe("1,2");
        Execute(connection, transaction, "INSERT INTO t VALUES (4)");
        transaction.Rollback("outer");
        Rows(connection, transaction).ShouldBe("1");

        Should.Throw<SqliteException>(() => transaction.Rollback("inner")).Message.ShouldContain("no such savepoint");
        transaction.Save("o");
        transaction.Save("outer one"); // begins with the name of the savepoint set before it, and is another savepoint
        Execute(connection, transaction, "INSERT INTO t VALUES (7)");
        transaction.Rollback("o");
        Rows(connection, transaction).ShouldBe("1");
        transaction.Save("same");
        Execute(connection, transaction, "INSERT INTO t VALUES (5)");
        transaction.Save("same");
        Execute(connection, transaction, "INSERT INTO t VALUES (6)");
        transaction.Rollback("same"); // the newer of the two
        Rows(connection, transaction).ShouldBe("1,5");
        transaction.Release("outer"); // and the savepoints set after it
        Should.Throw<SqliteException>(() => transaction.Release("same")).Message.ShouldContain("no such savepoint");
        transaction.Commit();

        Rows(connection).ShouldBe("1,5");
    }

    [TestCase("a \"b\" c")]
    [TestCase("x\"; DROP TABLE t; --")]
    [TestCase("ROLLBACK")]
    public void A_savepoint_name_is_quoted_not_parsed(string name)
    {
        using DbConnection connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        Execute(connection, null, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
        using var transaction = connection.BeginTransaction();
        transaction.Save(name);
        Execute(connection, transaction, "INSERT INTO t VALUES (1)");
        transaction.Rollback(name);
        Execute(connection, transaction, "INSERT INTO t VALUES (2)");

        // The savepoint has exactly that name: SQL that quotes it by hand finds it.
        Execute(connection, transaction, $"RELEASE SAVEPOINT \"{name.Replace("\"", "\"\"", StringComparison.Ordinal)}\"");
        transaction.Commit();

        Rows(connection).ShouldBe("2");
    }

    [Test]
    public void Savepoints_of_a_completed_transaction_throw_as_its_Commit_does()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        DbTransaction committed = connection.BeginTransaction();
        committed.Commit();
        var expected = Should.Throw<InvalidOperationException>(committed.Commit).Message.Replace("Commit", string.Empty, StringComparison.Ordinal);

        foreach (var (operation, call) in Calls(committed))
        {
            Should.Throw<InvalidOperationException>(call).Message.ShouldBe(operation + expected);
        }

        DbTransaction closed = connection.BeginTransaction();
        connection.Close();
        var expectedClosed = Should.Throw<InvalidOperationException>(closed.Commit).Message.Replace("Commit", string.Empty, StringComparison.Ordinal);
        expectedClosed.ShouldBe(expected + " It ended as its connection was closed (from another thread, say, or by a reader opened with CommandBehavior.CloseConnection), which rolled it back.");
        foreach (var (operation, call) in Calls(closed))
        {
            Should.Throw<InvalidOperationException>(call).Message.ShouldBe(operation + expectedClosed);
        }
    }

    [Test]
    public void A_bad_savepoint_name_is_an_ArgumentException_naming_the_parameter_and_the_transaction_stays_usable()
    {
        using DbConnection connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        Execute(connection, null, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
        using var transaction = connection.BeginTransaction();
        var save = (Action<string>)transaction.Save;
        var rollback = (Action<string>)transaction.Rollback;
        var release = (Action<string>)transaction.Release;
        foreach (var call in new[] { save, rollback, release })
        {
            Should.Throw<ArgumentNullException>(() => call(null!)).ParamName.ShouldBe("savepointName");
            var empty = Should.Throw<ArgumentException>(() => call(string.Empty));
            empty.ParamName.ShouldBe("savepointName");
            empty.Message.ShouldContain("empty");
            empty.Message.ShouldContain("any non-empty text without NUL characters");
            var nul = Should.Throw<ArgumentException>(() => call("a\0b"));
            nul.ParamName.ShouldBe("savepointName");
            nul.Message.ShouldContain("'a\\0b' holds a NUL character");
        }

        Execute(connection, transaction, "INSERT INTO t VALUES (1)");
        transaction.Commit();
        Rows(connection).ShouldBe("1");
    }

    [Test]
    public void A_savepoint_after_SQLite_ended_the_transaction_itself_is_refused_rather_than_run_outside_it()
    {
        using DbConnection connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        Execute(connection, null, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
        Execute(connection, null, "CREATE TRIGGER no_negative BEFORE INSERT ON t WHEN NEW.id < 0 BEGIN SELECT RAISE(ROLLBACK, 'negative'); END");
        using var transaction = connection.BeginTransaction();
        Execute(connection, transaction, "INSERT INTO t VALUES (1)");
        Should.Throw<SqliteException>(() => Execute(connection, transaction, "INSERT INTO t VALUES (-1)")); // SQLite rolls back

        Should.Throw<InvalidOperationException>(() => transaction.Save("a")).Message.ShouldContain("SQLite has already ended");
        Should.Throw<InvalidOperationException>(() => transaction.Release("a")).Message.ShouldContain("SQLite has already ended");

        transaction.Rollback();
        Rows(connection).ShouldBeEmpty();
    }

    private static async Task<string> RoundTrip(DbConnection connection, bool async)
    {
        connection.Open();
        Execute(connection, null, "CREATE TABLE t (id INTEGER PRIMARY KEY)");
        using var transaction = connection.BeginTransaction();
        transaction.SupportsSavepoints.ShouldBeTrue();
        Execute(connection, transaction, "INSERT INTO t VALUES (1)");
        if (async)
        {
            await transaction.SaveAsync("before two");
            Execute(connection, transaction, "INSERT INTO t VALUES (2)");
            await transaction.RollbackAsync("before two");
            Execute(connection, transaction, "INSERT INTO t VALUES (3)");
            await transaction.ReleaseAsync("before two");
            await transaction.CommitAsync();
        }
        else
        {
            transaction.Save("before two");
            Execute(connection, transaction, "INSERT INTO t VALUES (2)");
            transaction.Rollback("before two");
            Execute(connection, transaction, "INSERT INTO t VALUES (3)");
            transaction.Release("before two");
            transaction.Commit();
        }

        return Rows(connection);
    }

    private static (string Operation, Action Call)[] Calls(DbTransaction transaction)
        =>
        [
            ("Save", () => transaction.Save("a")),
            ("Rollback", () => transaction.Rollback("a")),
            ("Release", () => transaction.Release("a")),
            ("Save", () => transaction.SaveAsync("a").GetAwaiter().GetResult()),
            ("Rollback", () => transaction.RollbackAsync("a").GetAwaiter().GetResult()),
            ("Release", () => transaction.ReleaseAsync("a").GetAwaiter().GetResult()),
        ];

    private static void Execute(DbConnection connection, DbTransaction? transaction, string sql)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static string Rows(DbConnection connection, DbTransaction? transaction = null)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT coalesce(group_concat(id, ','), '') FROM (SELECT id FROM t ORDER BY id)";
        return (string)command.ExecuteScalar()!;
    }
}
