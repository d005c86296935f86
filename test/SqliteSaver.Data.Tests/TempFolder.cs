namespace SqliteSaver.Data.Tests;

/// <summary>A fresh temporary folder for one test's database files, deleted afterwards with the pools released.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = Directory.CreateTempSubdirectory("saver-test-").FullName;
    }

    public string Path { get; }

    /// <summary>A database path in the folder; no file is created.</summary>
    public string File(string name = "test.db") => System.IO.Path.Combine(Path, name);

    /// <summary>A connection string for a database in the folder, with extra keywords appended.</summary>
    public string ConnectionString(string extra = "", string name = "test.db") => $"Data Source={File(name)};{extra}";

    public void Dispose()
    {
        SaverDbConnection.ClearAllPools();
        Directory.Delete(Path, recursive: true);
    }
}
