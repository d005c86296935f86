using System.Collections.Concurrent;

namespace SqliteSaver.Data.Tests;

/// <summary>A fresh temporary folder for one test's database files, deleted afterwards with the pools released.</summary>
public sealed class TempFolder : IDisposable
{
    private readonly ConcurrentDictionary<string, bool>? _connectionStrings;

    /// <param name="clearsOnlyItsOwnPools">
    /// Whether <see cref="Dispose"/> clears only the pools of the connection strings <see cref="ConnectionString"/> made,
    /// for a test that runs beside others, whose pools <see cref="SaverDbConnection.ClearAllPools"/> would clear under
    /// them; otherwise it clears every pool.
    /// </param>
    public TempFolder(bool clearsOnlyItsOwnPools = false)
    {
        Path = Directory.CreateTempSubdirectory("saver-test-").FullName;
        _connectionStrings = clearsOnlyItsOwnPools ? new() : null;
    }

    public string Path { get; }

    /// <summary>A database path in the folder; no file is created.</summary>
    public string File(string name = "test.db") => System.IO.Path.Combine(Path, name);

    /// <summary>A connection string for a database in the folder, with extra keywords appended.</summary>
    public string ConnectionString(string extra = "", string name = "test.db")
    {
        var connectionString = $"Data Source={File(name)};{extra}";
        _connectionStrings?.TryAdd(connectionString, true);
        return connectionString;
    }

    public void Dispose()
    {
        if (_connectionStrings is null)
        {
            SaverDbConnection.ClearAllPools();
        }
        else
        {
            foreach (var connectionString in _connectionStrings.Keys)
            {
                using var connection = new SaverDbConnection(connectionString);
                SaverDbConnection.ClearPool(connection);
            }
        }

        Directory.Delete(Path, recursive: true);
    }
}
