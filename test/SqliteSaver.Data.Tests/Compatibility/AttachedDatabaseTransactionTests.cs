using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// A database attached during a rental is in the transactions begun after it, as with Microsoft.Data.Sqlite: an
/// IMMEDIATE one takes its write lock too. Before, the library's <c>BEGIN IMMEDIATE</c>, prepared once as the physical
/// connection opened, began a transaction on main alone (SQLite does not prepare it again after an ATTACH), so a write
/// to the attached database inside <c>BeginTransaction()</c> met SQLITE_BUSY, and a DETACH in it succeeded (a
/// differential test's findings).
/// </summary>
public class AttachedDatabaseTransactionTests : DatabaseTest
{
    [Test]
    public void BeginTransaction_takes_the_write_lock_of_a_database_attached_after_the_connection_opened()
    {
        var aux = Folder.File("aux.db");
        using var holder = new SqliteConnection($"Data Source={aux};Pooling=False");
        holder.Open();
        Run(holder, "PRAGMA journal_mode = WAL; CREATE TABLE x (y); BEGIN IMMEDIATE;");
        using var connection = new SaverDbConnection(Folder.ConnectionString("Busy Timeout=100;Retry=0;Default Timeout=2"));
        connection.Open();
        Run(connection, $"ATTACH '{aux}' AS aux");

        Should.Throw<SqliteException>(() => connection.BeginTransaction()).SqliteErrorCode.ShouldBe(5); // as Microsoft.Data.Sqlite's

        Run(holder, "COMMIT");
        using var transaction = connection.BeginTransaction();
        Run(connection, "INSERT INTO aux.x VALUES (1)");
        transaction.Commit();
        Run(holder, "SELECT count(*) FROM x").ShouldBe(1L);
    }

    [Test]
    public void A_DETACH_inside_an_IMMEDIATE_transaction_fails_as_with_Microsoft_Data_Sqlite()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        Run(connection, $"CREATE TABLE t (x); ATTACH '{Folder.File("aux.db")}' AS aux; CREATE TABLE aux.x (y);");
        using var transaction = connection.BeginTransaction();
        Run(connection, "INSERT INTO t VALUES (1)");

        Should.Throw<SqliteException>(() => Run(connection, "DETACH aux")).Message.ShouldContain("database aux is locked");

        Run(connection, "INSERT INTO aux.x VALUES (1)").ShouldBe(1);
        transaction.Commit();
        Run(connection, "SELECT (SELECT count(*) FROM t) + (SELECT count(*) FROM aux.x)").ShouldBe(2L);
    }

    private static object? Run(System.Data.Common.DbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return sql.StartsWith("SELECT", StringComparison.Ordinal) ? command.ExecuteScalar() : command.ExecuteNonQuery();
    }
}
