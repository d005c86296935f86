using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests;

/// <summary>
/// Generic ADO.NET code ported from Microsoft.Data.Sqlite: each test shows a place where it behaves differently with
/// SqliteSaver.Data, where the README does not say so.
/// </summary>
public class AdoNetReviewTests : DatabaseTest
{
    [TestCase("PRAGMA auto_vacuum = INCREMENTAL", "PRAGMA auto_vacuum", 2L)]
    [TestCase("PRAGMA page_size = 8192", "PRAGMA page_size", 8192L)]
    public void A_setting_made_before_the_first_table_of_a_new_database_takes_effect_as_with_MDS(string set, string read, long expected)
    {
        // Setting up a new database file the usual way: page size and auto-vacuum before the first table.
        using (var plain = new SqliteConnection($"Data Source={Folder.File("plain.db")}"))
        {
            plain.Open();
            CreateWith(plain, set);
            Scalar(plain, read).ShouldBe(expected);
        }

        // The pool switched the new file to WAL as it opened it, which writes its first page: from then on SQLite
        // ignores both settings without an error, so the database silently keeps 4096-byte pages and no auto-vacuum.
        using var saver = new SaverDbConnection(Folder.ConnectionString(name: "saver.db"));
        saver.Open();
        CreateWith(saver, set);
        Scalar(saver, read).ShouldBe(expected);
    }


    private static void CreateWith(System.Data.Common.DbConnection connection, string set)
    {
        using var command = connection.CreateCommand();
        command.CommandText = set;
        command.ExecuteNonQuery();
        command.CommandText = "CREATE TABLE item (id INTEGER PRIMARY KEY, body BLOB)";
        command.ExecuteNonQuery();
    }

    private static object? Scalar(System.Data.Common.DbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }
}
