using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Tests;

/// <summary>A test with a fresh temporary folder for its database files, released and deleted after each test.</summary>
/// <param name="clearsOnlyItsOwnPools">For tests that run beside others: see <see cref="TempFolder(bool)"/>.</param>
public abstract class DatabaseTest(bool clearsOnlyItsOwnPools = false)
{
    private TempFolder? _folder;

    protected TempFolder Folder => _folder ?? throw new InvalidOperationException("The folder exists only while a test runs.");

    [SetUp]
    public void CreateFolder() => _folder = new TempFolder(clearsOnlyItsOwnPools);

    [TearDown]
    public void DeleteFolder()
    {
        _folder?.Dispose();
        _folder = null;
    }

    /// <summary>A plain Microsoft.Data.Sqlite connection to the folder's test.db holding the write lock, as another process would.</summary>
    protected SqliteConnection HoldWriteLock()
    {
        var holder = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        holder.Open();
        using var begin = holder.CreateCommand();
        begin.CommandText = "BEGIN IMMEDIATE";
        begin.ExecuteNonQuery();
        return holder;
    }
}
