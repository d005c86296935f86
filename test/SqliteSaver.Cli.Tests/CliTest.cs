using Microsoft.Data.Sqlite;
using SqliteSaver.Data;

namespace SqliteSaver.Cli.Tests;

/// <summary>A test with a fresh temporary folder for its database files, deleted with the pools released after each test.</summary>
public abstract class CliTest
{
    private string? _folder;

    protected string Folder => _folder ?? throw new InvalidOperationException("The folder exists only while a test runs.");

    [SetUp]
    public void CreateFolder() => _folder = Directory.CreateTempSubdirectory("saver-cli-test-").FullName;

    [TearDown]
    public void DeleteFolder()
    {
        SaverDbConnection.ClearAllPools();
        SqliteConnection.ClearAllPools();
        Directory.Delete(Folder, recursive: true);
        _folder = null;
    }

    /// <summary>A database path in the folder; no file is created.</summary>
    protected string PathOf(string name = "test.db") => Path.Combine(Folder, name);

    /// <summary>Opens a plain connection without pooling, creating the file if needed.</summary>
    protected static SqliteConnection Open(string path)
    {
        var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        connection.Open();
        return connection;
    }

    /// <summary>Takes away or gives back the right to write a file: its mode for a user; for root, whom modes do not stop, the immutable attribute.</summary>
    protected static void MayWrite(string path, bool write)
    {
        if (OperatingSystem.IsWindows())
        {
            Assert.Ignore("file modes and attributes of Unix");
        }
        else if (Environment.UserName != "root")
        {
            File.SetUnixFileMode(path, write ? UnixFileMode.UserRead | UnixFileMode.UserWrite : UnixFileMode.UserRead);
            return;
        }

        using var chattr = System.Diagnostics.Process.Start("chattr", [write ? "-i" : "+i", path])!;
        chattr.WaitForExit();
        if (chattr.ExitCode != 0)
        {
            Assert.Ignore("chattr cannot make the file immutable here");
        }
    }

    /// <summary>Runs SQL on a connection.</summary>
    protected static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>Creates a WAL database with a table of rows, and returns a connection left open so the -wal file stays.</summary>
    protected static SqliteConnection CreateWalDatabase(string path, int rows = 200)
    {
        var connection = Open(path);
        Execute(connection, $"""
            PRAGMA journal_mode = WAL;
            PRAGMA wal_autocheckpoint = 0;
            CREATE TABLE item (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
            INSERT INTO item (text) SELECT printf('%0200d', i) FROM n;
            """);
        return connection;
    }
}
