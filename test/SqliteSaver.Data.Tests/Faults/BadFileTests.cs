using System.Data;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Pooling;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>
/// A database file that is not SQLite (SQLITE_NOTADB), or is truncated (SQLITE_CORRUPT: its header still says SQLite):
/// Open fails with an error naming the file, leaks no slot, and works once the file is fixed.
/// </summary>
public class BadFileTests : DatabaseTest
{
    private const int SqliteCorrupt = 11;
    private const int SqliteNotADb = 26;

    private static IEnumerable<TestCaseData> BadFiles()
    {
        yield return new TestCaseData("text", SqliteNotADb, (Action<string>)(path => File.WriteAllText(path, string.Concat(Enumerable.Repeat("this is not a database. ", 400)))))
            .SetName("A text file");
        yield return new TestCaseData("random", SqliteNotADb, (Action<string>)(path => File.WriteAllBytes(path, RandomBytes(8192))))
            .SetName("A file of random bytes");
        yield return new TestCaseData("header", SqliteCorrupt, (Action<string>)(path => Truncate(path, 40)))
            .SetName("A database truncated inside its header");
        yield return new TestCaseData("schema", SqliteCorrupt, (Action<string>)(path => Truncate(path, 4096 + 100)))
            .SetName("A database truncated inside its schema");
    }

    [TestCaseSource(nameof(BadFiles))]
    public async Task Open_fails_with_SQLITE_NOTADB_or_CORRUPT_naming_the_file_leaks_no_slot_and_works_once_the_file_is_fixed(
        string kind,
        int code,
        Action<string> spoil)
    {
        var path = Folder.File($"{kind}.db");
        var connectionString = $"Data Source={path};Max Pool Size=1;Pool Timeout=5";
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1); CREATE TABLE u (y); INSERT INTO u VALUES (randomblob(5000))");
        SaverDbConnection.ClearAllPools();
        spoil(path);
        var dataSource = SaverDataSource.GetShared(connectionString);

        for (var i = 0; i < 3; i++)
        {
            using var connection = new SaverDbConnection(connectionString);
            var error = Should.Throw<SqliteException>(connection.Open);
            error.SqliteErrorCode.ShouldBe(code);
            error.Message.ShouldContain(path);
            (await Should.ThrowAsync<SqliteException>(() => connection.OpenAsync())).SqliteErrorCode.ShouldBe(code);
            connection.State.ShouldBe(ConnectionState.Closed);
            dataSource.Statistics.Total.ShouldBe(0);
        }

        foreach (var file in Directory.GetFiles(Folder.Path))
        {
            File.Delete(file);
        }

        using var fixedConnection = new SaverDbConnection(connectionString);
        fixedConnection.Open();
        ConnectionTests.Exec(fixedConnection, "CREATE TABLE t (x); INSERT INTO t VALUES (2)");
        ConnectionTests.Scalar(fixedConnection, "SELECT x FROM t").ShouldBe(2L);
        dataSource.Statistics.Total.ShouldBe(1);
    }

    [Test]
    public void A_folder_the_process_may_not_write_is_named_with_the_cause_of_a_readonly_database()
    {
        // SQLITE_READONLY_DIRECTORY as SQLite gives it for a WAL database in a folder the process may not write
        // (a user's, not root's, which ignores the folder's permissions: no test here can make SQLite meet it).
        var path = Folder.File("app.db");
        var options = SaverOptions.Parse($"Data Source={path}");
        var error = PhysicalConnection.Named(new SqliteException("SQLite Error 8: 'attempt to write a readonly database'.", 8, 1544), options);

        error.SqliteErrorCode.ShouldBe(8);
        error.SqliteExtendedErrorCode.ShouldBe(1544);
        error.Message.ShouldStartWith($"SQLite Error 8: 'attempt to write a readonly database'. Database: '{path}'. SQLite must create files beside the database");
        error.Message.ShouldContain($"may not create files in the folder '{Folder.Path}'");
        PhysicalConnection.Named(new SqliteException("SQLite Error 8: 'attempt to write a readonly database'.", 8, 8), options).Message
            .ShouldBe($"SQLite Error 8: 'attempt to write a readonly database'. Database: '{path}'.");
    }

    private static byte[] RandomBytes(int count)
    {
        var bytes = new byte[count];
        new Random(8).NextBytes(bytes);
        return bytes;
    }

    private static void Truncate(string path, int length)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Write);
        file.SetLength(length);
    }
}
