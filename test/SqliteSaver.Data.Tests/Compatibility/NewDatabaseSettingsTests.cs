using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// Page size and auto-vacuum of a new database file, which the pool switches to WAL as it first opens it (README,
/// "Swapping the provider factory").
/// </summary>
public class NewDatabaseSettingsTests : DatabaseTest
{
    /// <summary>
    /// The difference README lists: the WAL switch writes the new file's first page, so both settings made afterwards
    /// are ignored, where Microsoft.Data.Sqlite (rollback journal) keeps them.
    /// </summary>
    [TestCase("auto_vacuum", "INCREMENTAL", 2L, 0L)]
    [TestCase("page_size", "8192", 8192L, 4096L)]
    public void Set_through_the_library_before_the_first_table_a_setting_is_ignored_where_MDS_keeps_it(string pragma, string value, long kept, long ignored)
    {
        using (var plain = new SqliteConnection($"Data Source={Folder.File("plain.db")};Pooling=False"))
        {
            plain.Open();
            Run(plain, $"PRAGMA {pragma} = {value}; CREATE TABLE t (x)");
            Run(plain, $"PRAGMA {pragma}").ShouldBe(kept);
        }

        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, $"PRAGMA {pragma} = {value}; CREATE TABLE t (x)");

        ConnectionTests.Scalar(connection, $"PRAGMA {pragma}").ShouldBe(ignored);
    }

    [Test]
    public void Page_size_and_auto_vacuum_set_before_the_library_first_opens_a_new_file_are_kept()
    {
        using (var setup = new SqliteConnection($"Data Source={Folder.File()};Pooling=False"))
        {
            setup.Open();
            Run(setup, "PRAGMA page_size = 8192; PRAGMA auto_vacuum = INCREMENTAL; VACUUM;");
        }

        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x)");

        ConnectionTests.Scalar(connection, "PRAGMA journal_mode").ShouldBe("wal");
        ConnectionTests.Scalar(connection, "PRAGMA page_size").ShouldBe(8192L);
        ConnectionTests.Scalar(connection, "PRAGMA auto_vacuum").ShouldBe(2L);
    }

    [Test]
    public void Auto_vacuum_changes_later_through_the_library_with_a_VACUUM()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");

        ConnectionTests.Exec(connection, "PRAGMA auto_vacuum = INCREMENTAL; VACUUM;");

        ConnectionTests.Scalar(connection, "PRAGMA auto_vacuum").ShouldBe(2L);
        ConnectionTests.Scalar(connection, "SELECT x FROM t").ShouldBe(1L);
        ConnectionTests.Scalar(connection, "PRAGMA journal_mode").ShouldBe("wal");
    }

    private static object? Run(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }
}
