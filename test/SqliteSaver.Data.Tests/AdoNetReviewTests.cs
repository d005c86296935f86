using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests;

/// <summary>
/// Generic ADO.NET code ported from Microsoft.Data.Sqlite: each test shows a place where it behaves differently with
/// SqliteSaver.Data, where the README does not say so.
/// </summary>
public class AdoNetReviewTests : DatabaseTest
{
    [Test]
    public void A_query_with_a_typo_fails_with_its_own_error_not_database_is_locked_while_another_connection_writes()
    {
        using (var setup = new SaverDbConnection(Folder.ConnectionString()))
        {
            setup.Open();
            using var create = setup.CreateCommand();
            create.CommandText = "CREATE TABLE item (id INTEGER PRIMARY KEY)";
            create.ExecuteNonQuery();
        }

        using var writer = HoldWriteLock(); // another process's write transaction, as a long import would hold
        string[] queries = ["SELECT * FROM itme", "SELEC id FROM item"];

        using var plain = new SqliteConnection($"Data Source={Folder.File()};Default Timeout=1");
        plain.Open();
        using var saver = new SaverDbConnection(Folder.ConnectionString("Default Timeout=1"));
        saver.Open();
        foreach (var sql in queries)
        {
            using var plainCommand = plain.CreateCommand();
            plainCommand.CommandText = sql;
            Should.Throw<SqliteException>(() => plainCommand.ExecuteScalar()).SqliteErrorCode.ShouldBe(1); // SQLITE_ERROR

            // A query that cannot be prepared is classified as a write: it queues for the write lock it never needs,
            // waits out its CommandTimeout, and reports SQLITE_BUSY (5, 'database is locked') instead of its own error.
            using var saverCommand = saver.CreateCommand();
            saverCommand.CommandText = sql;
            var error = Should.Throw<SqliteException>(() => saverCommand.ExecuteScalar());
            error.SqliteErrorCode.ShouldBe(1, $"{sql}: {error.Message}");
        }
    }
}
