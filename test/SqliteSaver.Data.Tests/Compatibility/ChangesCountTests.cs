using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// SQLite's <c>changes()</c>, which Microsoft.Data.Sqlite's counts of a batch read, the same through the library as
/// through Microsoft.Data.Sqlite, on a text's first execution on a connection too. Classifying a writing text stepped
/// an <c>EXPLAIN</c> of it and finalized it halfway, which set <c>changes()</c> to 0 (a bug hunt's finding).
/// </summary>
public class ChangesCountTests : DatabaseTest
{
    [TestCase("PRAGMA foreign_keys = ON; UPDATE t SET v = 2 WHERE id = 1")]
    [TestCase("SAVEPOINT s; UPDATE t SET v = 2 WHERE id = 1; RELEASE s")]
    [TestCase("BEGIN; UPDATE t SET v = 2 WHERE id = 1; COMMIT")]
    public void A_batch_counts_as_with_Microsoft_Data_Sqlite_on_its_first_execution_and_after(string batch)
    {
        using var plain = new SqliteConnection($"Data Source={Folder.File("plain.db")}");
        using var saver = new SaverDbConnection(Folder.ConnectionString(name: "saver.db"));

        Twice(saver, batch).ShouldBe(Twice(plain, batch));
    }

    /// <summary>
    /// Also on a connection that holds a temporary view (as a connection initializer may make): a view alone cannot
    /// make a write go to the temp database only, so the classifier does not look (the review's note).
    /// </summary>
    [Test]
    public void Changes_read_before_a_batchs_first_write_is_the_last_writes_count([Values] bool besideTemporaryView)
    {
        using var saver = new SaverDbConnection(Folder.ConnectionString());
        saver.Open();
        NonQuery(saver, "CREATE TABLE t (id INTEGER PRIMARY KEY, v); INSERT INTO t (v) VALUES (1), (1), (1)");
        if (besideTemporaryView)
        {
            NonQuery(saver, "CREATE TEMP VIEW answer AS SELECT 42");
        }

        NonQuery(saver, "UPDATE t SET v = 1");
        using var command = saver.CreateCommand();
        command.CommandText = "SELECT changes(); UPDATE t SET v = 2 WHERE id = 1";

        command.ExecuteScalar().ShouldBe(3L); // as with Microsoft.Data.Sqlite
    }

    /// <summary>The counts of two executions of <paramref name="batch"/>, each after a write of three rows.</summary>
    private static (int First, int Second) Twice(DbConnection connection, string batch)
    {
        connection.Open();
        NonQuery(connection, "CREATE TABLE t (id INTEGER PRIMARY KEY, v); INSERT INTO t (v) VALUES (1), (1), (1)");
        NonQuery(connection, "UPDATE t SET v = 1");
        var first = NonQuery(connection, batch);
        NonQuery(connection, "UPDATE t SET v = 1");
        return (first, NonQuery(connection, batch));
    }

    private static int NonQuery(DbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteNonQuery();
    }
}
