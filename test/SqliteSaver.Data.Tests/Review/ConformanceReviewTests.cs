using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Review;

/// <summary>ADO.NET conformance and README review: each test shows a difference from the documented or Microsoft.Data.Sqlite behaviour.</summary>
public class ConformanceReviewTests : DatabaseTest
{
    /// <summary>
    /// SaverDbConnection.DataSource is documented as "the full path of the database file (or :memory:)", and an open
    /// SqliteConnection reports the file's path (sqlite3_db_filename). For a file: URI Data Source it reports the URI text.
    /// </summary>
    [Test]
    public void DataSource_of_a_connection_opened_by_a_file_URI_is_the_database_files_full_path_as_with_MDS()
    {
        var path = Folder.File();
        var connectionString = $"Data Source=file:{path}?cache=private";
        using var plain = new SqliteConnection(connectionString + ";Pooling=False");
        plain.Open();
        using var saver = new SaverDbConnection(connectionString);
        saver.Open();

        plain.DataSource.ShouldBe(path);
        saver.DataSource.ShouldBe(path);
    }

    /// <summary>
    /// ADO.NET providers (Microsoft.Data.Sqlite, SqlClient, Npgsql) refuse to change a command's Connection while a
    /// reader of the command is open; SaverDbCommand.Connection accepts it silently (CommandText already refuses).
    /// </summary>
    [Test]
    public void Changing_a_commands_Connection_while_its_reader_is_open_throws_as_with_MDS()
    {
        using (var plain = new SqliteConnection($"Data Source={Folder.File("plain.db")};Pooling=False"))
        {
            plain.Open();
            using var plainCommand = plain.CreateCommand();
            plainCommand.CommandText = "SELECT 1";
            using var plainReader = plainCommand.ExecuteReader();
            Should.Throw<InvalidOperationException>(() => plainCommand.Connection = null);
        }

        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1";
        using var reader = command.ExecuteReader();

        Should.Throw<InvalidOperationException>(() => command.Connection = null);
    }
}
