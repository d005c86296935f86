using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// What a write outside a transaction keeps when its statement fails, compared with Microsoft.Data.Sqlite's autocommit:
/// the same for every error but a constraint ON CONFLICT FAIL resolves, where autocommit commits the rows changed before
/// the failing one and the library, which runs the write in a transaction of its own, rolls all of it back (README).
/// Committing what SQLite left was tried (a differential hunt) and undone: SQLite does not undo a failed statement
/// that opened no statement journal inside a transaction (a one-row write whose index expression fails), so it would
/// have committed a half-written index (reviews). Each test runs the same statements through both, on files of their own.
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
        + "CREATE VIRTUAL TABLE f USING fts5(x); INSERT INTO f (rowid, x) VALUES (1, 'a');"
        + "CREATE TABLE q (id INTEGER PRIMARY KEY, x); CREATE INDEX q_veto ON q (veto(x)); CREATE INDEX q_x ON q (x); INSERT INTO q VALUES (1, 1), (2, 2)";

    private const string Integrity = "SELECT (SELECT group_concat(id || ':' || x) FROM q) || ' ' || (SELECT group_concat(integrity_check) FROM pragma_integrity_check)";

    private const string RowsOfR = "SELECT group_concat(rowid || x) FROM (SELECT rowid, x FROM r ORDER BY rowid)";

    private const string IdsOfV = "SELECT group_concat(id) FROM (SELECT id FROM v ORDER BY id)";

    private const string ValuesOfT = "SELECT group_concat(v) FROM (SELECT v FROM t ORDER BY id)";

    [TestCase("INSERT INTO t (v) VALUES (10), (1)", ValuesOfT)] // the default, ABORT: nothing of the statement stays
    [TestCase("INSERT OR ROLLBACK INTO t (v) VALUES (10), (1)", ValuesOfT)]
    [TestCase("INSERT INTO s VALUES (10), ('x'), (12)", "SELECT group_concat(a) FROM s")] // errors SQLite does not undo in a transaction
    [TestCase("UPDATE s SET a = CASE a WHEN 2 THEN 'x' ELSE a + 10 END", "SELECT group_concat(a) FROM s")]
    [TestCase("INSERT OR FAIL INTO t VALUES (10, 10), ('x', 11)", ValuesOfT)]
    [TestCase("INSERT INTO r (rowid, x) VALUES (10, 'b'), (1, 'd')", RowsOfR)]
    [TestCase("INSERT INTO v VALUES (10, 0, 1), (11, 0, 1), (1, 0, 1)", IdsOfV)]
    [TestCase("INSERT INTO v VALUES (10, 0, 1), (13, 5, 1)", IdsOfV)]
    [TestCase("INSERT INTO f (rowid, x) VALUES (10, 'b'), (1, 'd')", "SELECT group_concat(rowid) FROM (SELECT rowid FROM f ORDER BY rowid)")]
    [TestCase("DELETE FROM q WHERE id = 2", Integrity)] // an index expression's function fails halfway through the row's indexes
    [TestCase("UPDATE q SET x = 5 WHERE id = 2", Integrity)]
    public void A_failed_statement_keeps_what_autocommit_keeps(string write, string read)
    {
        var plain = Outcome(new SqliteConnection($"Data Source={Folder.File("plain.db")};Pooling=False"), write, read);

        Outcome(new SaverDbConnection(Folder.ConnectionString(name: "saver.db")), write, read).ShouldBe(plain);
    }

    [TestCase("INSERT OR FAIL INTO t (v) VALUES (10), (11), (1), (12)", ValuesOfT, "1,2,3")]
    [TestCase("INSERT INTO u VALUES (1), (2), (3), (4)", "SELECT group_concat(a) FROM (SELECT a FROM u ORDER BY rowid)", "3")]
    [TestCase("INSERT INTO t (v) VALUES (97), (98), (99), (100)", ValuesOfT, "1,2,3")] // RAISE(FAIL) in a trigger
    [TestCase("INSERT OR FAIL INTO r (rowid, x) VALUES (10, 'b'), (11, 'c'), (1, 'd')", RowsOfR, "1a")]
    [TestCase("UPDATE OR FAIL t SET v = CASE id WHEN 3 THEN 11 ELSE v + 10 END", ValuesOfT, "1,2,3")]
    [TestCase("INSERT OR FAIL INTO v VALUES (10, 0, 1), (11, 0, 1), (1, 0, 1)", IdsOfV, "1")]
    [TestCase("INSERT OR FAIL INTO f (rowid, x) VALUES (10, 'b'), (1, 'd')", "SELECT group_concat(rowid) FROM (SELECT rowid FROM f ORDER BY rowid)", "1")]
    public void Under_ON_CONFLICT_FAIL_nothing_of_the_failed_statement_is_kept_where_autocommit_keeps_the_rows_before_it(string write, string read, string before)
    {
        var plain = Outcome(new SqliteConnection($"Data Source={Folder.File("plain.db")};Pooling=False"), write, read).Split(" | ");
        var saver = Outcome(new SaverDbConnection(Folder.ConnectionString(name: "saver.db")), write, read).Split(" | ");

        saver[0].ShouldBe(plain[0]); // the same error
        plain[1].ShouldNotBe(before);
        saver[1].ShouldBe(before);
    }

    [Test]
    public void A_failed_batch_stays_all_or_nothing()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        OpenWithSchema(connection);

        Should.Throw<SqliteException>(() => Execute(connection, "INSERT INTO t (v) VALUES (20); INSERT OR FAIL INTO t (v) VALUES (10), (1)"));

        ConnectionTests.Scalar(connection, ValuesOfT).ShouldBe("1,2,3");
    }

    /// <summary>The write's result or error, then what <paramref name="read"/> finds.</summary>
    private static string Outcome(DbConnection connection, string write, string read)
    {
        using (connection)
        {
            var veto = OpenWithSchema(connection);
            veto.Vetoing = true;
            string result;
            try
            {
                result = "rows " + Execute(connection, write);
            }
            catch (SqliteException error)
            {
                result = $"SqliteException {error.SqliteExtendedErrorCode} {error.Message}";
            }

            veto.Vetoing = false; // the integrity check computes the index expression too

            using var command = connection.CreateCommand();
            command.CommandText = read;
            return result + " | " + command.ExecuteScalar();
        }
    }

    /// <summary>
    /// Opens <paramref name="connection"/>, gives it the function <c>veto</c> of the schema's index expression, which
    /// fails for 2 while its switch is on, and creates the schema.
    /// </summary>
    private static Veto OpenWithSchema(DbConnection connection)
    {
        connection.Open();
        var veto = new Veto();
        var sqlite = connection as SqliteConnection ?? ((SaverDbConnection)connection).InnerConnection;
        sqlite.CreateFunction("veto", (long x) => veto.Vetoing && x == 2 ? throw new SqliteException("vetoed", 19) : x, isDeterministic: true);
        Execute(connection, Schema);
        return veto;
    }

    private static int Execute(DbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteNonQuery();
    }

    /// <summary>The switch of the function <c>veto</c> (see <see cref="OpenWithSchema"/>).</summary>
    private sealed class Veto
    {
        public bool Vetoing { get; set; }
    }
}
