using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// Outside a transaction SQLite commits what a failed statement leaves: with ON CONFLICT FAIL (or a trigger's
/// RAISE(FAIL)) the rows it changed before the failing one. The library runs such a write in a transaction of its own
/// and rolled it back on the error, so those rows were lost where Microsoft.Data.Sqlite keeps them (a differential
/// hunt). Each test runs the same statements through both, on files of their own.
/// </summary>
public class FailedStatementTests : DatabaseTest
{
    private const string Schema =
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v UNIQUE); INSERT INTO t VALUES (1, 1), (2, 2), (3, 3);"
        + "CREATE TABLE u (a UNIQUE ON CONFLICT FAIL); INSERT INTO u VALUES (3);"
        + "CREATE TRIGGER no99 AFTER INSERT ON t WHEN new.v = 99 BEGIN SELECT RAISE(FAIL, 'no 99'); END;"
        + "CREATE TABLE s (a INTEGER) STRICT; INSERT INTO s VALUES (1), (2), (3);"
        + "CREATE TABLE r (x); INSERT INTO r (rowid, x) VALUES (1, 'a');"
        + "CREATE VIRTUAL TABLE v USING rtree(id, x0, x1); INSERT INTO v VALUES (1, 0, 1);"
        + "CREATE VIRTUAL TABLE f USING fts5(x); INSERT INTO f (rowid, x) VALUES (1, 'a')";

    private const string RowsOfR = "SELECT group_concat(rowid || x) FROM (SELECT rowid, x FROM r ORDER BY rowid)";

    private const string IdsOfV = "SELECT group_concat(id) FROM (SELECT id FROM v ORDER BY id)";

    private const string ValuesOfT = "SELECT group_concat(v) FROM (SELECT v FROM t ORDER BY id)";

    [TestCase("INSERT OR FAIL INTO t (v) VALUES (10), (11), (1), (12)", ValuesOfT)]
    [TestCase("INSERT INTO u VALUES (1), (2), (3), (4)", "SELECT group_concat(a) FROM (SELECT a FROM u ORDER BY rowid)")]
    [TestCase("UPDATE OR FAIL t SET v = CASE id WHEN 3 THEN 11 ELSE v + 10 END", ValuesOfT)]
    [TestCase("INSERT INTO t (v) VALUES (97), (98), (99), (100)", ValuesOfT)] // RAISE(FAIL) in a trigger
    [TestCase("INSERT INTO t (v) VALUES (10), (1)", ValuesOfT)] // the default, ABORT: nothing of the statement stays
    [TestCase("INSERT OR ROLLBACK INTO t (v) VALUES (10), (1)", ValuesOfT)]
    [TestCase("INSERT INTO s VALUES (10), ('x'), (12)", "SELECT group_concat(a) FROM s")] // errors SQLite does not undo in a transaction (a review)
    [TestCase("UPDATE s SET a = CASE a WHEN 2 THEN 'x' ELSE a + 10 END", "SELECT group_concat(a) FROM s")]
    [TestCase("INSERT OR FAIL INTO t VALUES (10, 10), ('x', 11)", ValuesOfT)]
    [TestCase("INSERT OR FAIL INTO r (rowid, x) VALUES (10, 'b'), (11, 'c'), (1, 'd')", RowsOfR)] // a rowid's conflict (a review)
    [TestCase("INSERT INTO r (rowid, x) VALUES (10, 'b'), (1, 'd')", RowsOfR)]
    [TestCase("INSERT OR FAIL INTO v VALUES (10, 0, 1), (11, 0, 1), (1, 0, 1)", IdsOfV)] // a virtual table's constraints
    [TestCase("INSERT OR FAIL INTO v VALUES (10, 0, 1), (13, 5, 1)", IdsOfV)]
    [TestCase("INSERT INTO v VALUES (10, 0, 1), (11, 0, 1), (1, 0, 1)", IdsOfV)]
    [TestCase("INSERT INTO v VALUES (10, 0, 1), (13, 5, 1)", IdsOfV)]
    [TestCase("INSERT OR FAIL INTO f (rowid, x) VALUES (10, 'b'), (1, 'd')", "SELECT group_concat(rowid) FROM (SELECT rowid FROM f ORDER BY rowid)")]
    [TestCase("INSERT INTO f (rowid, x) VALUES (10, 'b'), (1, 'd')", "SELECT group_concat(rowid) FROM (SELECT rowid FROM f ORDER BY rowid)")]
    public void A_failed_statement_leaves_what_it_leaves_in_autocommit(string write, string read)
    {
        var plain = Outcome(new SqliteConnection($"Data Source={Folder.File("plain.db")};Pooling=False"), write, read);

        Outcome(new SaverDbConnection(Folder.ConnectionString(name: "saver.db")), write, read).ShouldBe(plain);
    }

    [Test]
    public void A_failed_batch_stays_all_or_nothing()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        Execute(connection, Schema);

        Should.Throw<SqliteException>(() => Execute(connection, "INSERT INTO t (v) VALUES (20); INSERT OR FAIL INTO t (v) VALUES (10), (1)"));

        ConnectionTests.Scalar(connection, ValuesOfT).ShouldBe("1,2,3");
    }

    /// <summary>What it committed would be applied twice: a strategy that retries any error gets the error again, and nothing runs.</summary>
    [Test]
    public void A_failed_statement_whose_rows_were_committed_is_not_run_again()
    {
        var strategy = new RetryingEverything();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString()).UseRetryStrategy(strategy).Build();
        using var connection = dataSource.OpenConnection();
        Execute(connection, Schema);
        var before = strategy.Attempts;

        var error = Should.Throw<SqliteException>(() => Execute(connection, "INSERT OR FAIL INTO t (v) VALUES (10), (1)"));

        error.SqliteErrorCode.ShouldBe(19); // SQLITE_CONSTRAINT
        (strategy.Attempts - before).ShouldBe(3);
        ConnectionTests.Scalar(connection, ValuesOfT).ShouldBe("1,2,3,10");
    }

    /// <summary>The write's result or error, then what <paramref name="read"/> finds.</summary>
    private static string Outcome(DbConnection connection, string write, string read)
    {
        using (connection)
        {
            connection.Open();
            Execute(connection, Schema);
            string result;
            try
            {
                result = "rows " + Execute(connection, write);
            }
            catch (SqliteException error)
            {
                result = $"SqliteException {error.SqliteExtendedErrorCode} {error.Message}";
            }

            using var command = connection.CreateCommand();
            command.CommandText = read;
            return result + " | " + command.ExecuteScalar();
        }
    }

    private static int Execute(DbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteNonQuery();
    }

    /// <summary>Runs an attempt up to three times, whatever it throws.</summary>
    private sealed class RetryingEverything : SaverRetryStrategy
    {
        public int Attempts { get; private set; }

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        {
            for (var i = 1; ; i++)
            {
                try
                {
                    Attempts++;
                    return attempt(state, cancellationToken);
                }
                catch (Exception) when (i < 3)
                {
                }
            }
        }

        public override ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt, TState state, CancellationToken cancellationToken)
            => throw new NotSupportedException("Only synchronous calls here.");
    }
}
