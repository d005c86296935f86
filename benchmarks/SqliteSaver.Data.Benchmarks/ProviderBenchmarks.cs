using System.Data.Common;
using System.Data.SQLite;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Dapper;
using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Benchmarks;

/// <summary>
/// One WAL database file (synchronous=NORMAL) through four stacks: SqliteSaver.Data, Microsoft.Data.Sqlite pooled
/// (the baseline of every category) and unpooled, and System.Data.SQLite.
/// </summary>
[MemoryDiagnoser]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class ProviderBenchmarks
{
    private string _folder = null!;
    private string _currentDirectory = null!;
    private string _saver = null!;
    private string _pooled = null!;
    private string _unpooled = null!;
    private string _systemData = null!;
    private SaverDbConnection _saverOpen = null!;
    private SqliteConnection _pooledOpen = null!;
    private SQLiteConnection _systemDataOpen = null!;
    private CancellationTokenSource _cancellation = null!;
    private SaverDbConnection _saverBeside = null!; // each with a reader held open on its first row
    private SqliteConnection _pooledBeside = null!;
    private DbCommand _saverHolding = null!; // disposing a command closes its reader
    private DbCommand _pooledHolding = null!;
    private DbDataReader _saverHeld = null!;
    private DbDataReader _pooledHeld = null!;
    private SaverDbConnection _saverTemp = null!; // each with a temporary view made on it
    private SqliteConnection _pooledTemp = null!;

    [GlobalSetup]
    public void Setup()
    {
        _folder = Directory.CreateTempSubdirectory("saver-bench-").FullName;
        var path = Path.Combine(_folder, "bench.db");
        _saver = $"Data Source={path}";
        _pooled = $"Data Source={path}";
        _unpooled = $"Data Source={path};Pooling=False";
        _systemData = $"Data Source={path};Pooling=True;Journal Mode=Wal;Synchronous=Normal";

        CreateItems(path);
        _currentDirectory = Environment.CurrentDirectory;
        Environment.CurrentDirectory = _folder; // for "Open+Close, relative Data Source": bench.db names the same file
        // The readers held open for "beside an open reader" read a file of their own: on the file the inserts write,
        // their snapshots would keep the WAL from starting over, so that past 1,000 frames every commit would try a
        // checkpoint, which syncs the WAL first (500 us and more per insert, on both stacks).
        var beside = Path.Combine(_folder, "beside.db");
        CreateItems(beside);

        _saverOpen = new SaverDbConnection(_saver);
        _saverOpen.Open();
        _pooledOpen = new SqliteConnection(_pooled);
        _pooledOpen.Open();
        _pooledOpen.Execute("PRAGMA synchronous = NORMAL");
        _systemDataOpen = new SQLiteConnection(_systemData);
        _systemDataOpen.Open();
        _cancellation = new CancellationTokenSource();
        _saverBeside = new SaverDbConnection($"Data Source={beside}");
        (_saverHolding, _saverHeld) = HoldReader(_saverBeside);
        _pooledBeside = new SqliteConnection($"Data Source={beside}");
        (_pooledHolding, _pooledHeld) = HoldReader(_pooledBeside);
        _saverTemp = new SaverDbConnection(_saver);
        _saverTemp.Open();
        _saverTemp.Execute("CREATE TEMP VIEW answer AS SELECT 42 AS value");
        _pooledTemp = new SqliteConnection(_pooled);
        _pooledTemp.Open();
        _pooledTemp.Execute("PRAGMA synchronous = NORMAL; CREATE TEMP VIEW answer AS SELECT 42 AS value");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _saverHeld.Dispose();
        _pooledHeld.Dispose();
        _saverHolding.Dispose();
        _pooledHolding.Dispose();
        _saverBeside.Dispose();
        _pooledBeside.Dispose();
        _saverTemp.Dispose();
        _pooledTemp.Dispose();
        _saverOpen.Dispose();
        _pooledOpen.Dispose();
        _systemDataOpen.Dispose();
        _cancellation.Dispose();
        SaverDbConnection.ClearAllPools();
        SqliteConnection.ClearAllPools();
        SQLiteConnection.ClearAllPools();
        Environment.CurrentDirectory = _currentDirectory;
        Directory.Delete(_folder, recursive: true);
    }

    [BenchmarkCategory("Open+Close"), Benchmark]
    public void OpenClose_Saver() => OpenClose(new SaverDbConnection(_saver));

    [BenchmarkCategory("Open+Close"), Benchmark(Baseline = true)]
    public void OpenClose_MdsPooled() => OpenClose(new SqliteConnection(_pooled));

    [BenchmarkCategory("Open+Close"), Benchmark]
    public void OpenClose_MdsUnpooled() => OpenClose(new SqliteConnection(_unpooled));

    [BenchmarkCategory("Open+Close"), Benchmark]
    public void OpenClose_SystemDataSqlite() => OpenClose(new SQLiteConnection(_systemData));

    [BenchmarkCategory("Open+Close, relative Data Source"), Benchmark]
    public void OpenCloseRelative_Saver() => OpenClose(new SaverDbConnection("Data Source=bench.db"));

    [BenchmarkCategory("Open+Close, relative Data Source"), Benchmark(Baseline = true)]
    public void OpenCloseRelative_MdsPooled() => OpenClose(new SqliteConnection("Data Source=bench.db"));

    [BenchmarkCategory("Open+Select+Close"), Benchmark]
    public object? Select_Saver() => SelectById(new SaverDbConnection(_saver));

    [BenchmarkCategory("Open+Select+Close"), Benchmark(Baseline = true)]
    public object? Select_MdsPooled() => SelectById(new SqliteConnection(_pooled));

    [BenchmarkCategory("Open+Select+Close"), Benchmark]
    public object? Select_MdsUnpooled() => SelectById(new SqliteConnection(_unpooled));

    [BenchmarkCategory("Open+Select+Close"), Benchmark]
    public object? Select_SystemDataSqlite() => SelectById(new SQLiteConnection(_systemData));

    [BenchmarkCategory("Dapper QueryFirst"), Benchmark]
    public string Dapper_Saver() => QueryFirst(new SaverDbConnection(_saver));

    [BenchmarkCategory("Dapper QueryFirst"), Benchmark(Baseline = true)]
    public string Dapper_MdsPooled() => QueryFirst(new SqliteConnection(_pooled));

    [BenchmarkCategory("Dapper QueryFirst"), Benchmark]
    public string Dapper_MdsUnpooled() => QueryFirst(new SqliteConnection(_unpooled));

    [BenchmarkCategory("Dapper QueryFirst"), Benchmark]
    public string Dapper_SystemDataSqlite() => QueryFirst(new SQLiteConnection(_systemData));

    [BenchmarkCategory("Insert"), Benchmark]
    public int Insert_Saver() => Insert(_saverOpen);

    [BenchmarkCategory("Insert"), Benchmark(Baseline = true)]
    public int Insert_MdsPooled() => Insert(_pooledOpen);

    [BenchmarkCategory("Insert"), Benchmark]
    public int Insert_SystemDataSqlite() => Insert(_systemDataOpen);

    [BenchmarkCategory("Insert, temporary view on the connection"), Benchmark]
    public int InsertBesideTempView_Saver() => Insert(_saverTemp);

    [BenchmarkCategory("Insert, temporary view on the connection"), Benchmark(Baseline = true)]
    public int InsertBesideTempView_MdsPooled() => Insert(_pooledTemp);

    [BenchmarkCategory("Async select, cancellable token"), Benchmark]
    public Task<object?> SelectAsync_Saver() => SelectAsync(_saverOpen, _cancellation.Token);

    [BenchmarkCategory("Async select, cancellable token"), Benchmark(Baseline = true)]
    public Task<object?> SelectAsync_MdsPooled() => SelectAsync(_pooledOpen, _cancellation.Token);

    [BenchmarkCategory("Async select beside an open reader"), Benchmark]
    public Task<object?> SelectBesideReader_Saver() => SelectAsync(_saverBeside, _cancellation.Token);

    [BenchmarkCategory("Async select beside an open reader"), Benchmark(Baseline = true)]
    public Task<object?> SelectBesideReader_MdsPooled() => SelectAsync(_pooledBeside, _cancellation.Token);

    [BenchmarkCategory("100-row transaction"), Benchmark]
    public void Transaction_Saver() => HundredRows(_saverOpen);

    [BenchmarkCategory("100-row transaction"), Benchmark(Baseline = true)]
    public void Transaction_MdsPooled() => HundredRows(_pooledOpen);

    [BenchmarkCategory("100-row transaction"), Benchmark]
    public void Transaction_SystemDataSqlite() => HundredRows(_systemDataOpen);

    /// <summary>Creates a WAL database at <paramref name="path"/> whose table item holds three rows.</summary>
    private static void CreateItems(string path)
    {
        using var setup = new SqliteConnection($"Data Source={path};Pooling=False");
        setup.Open();
        setup.Execute("PRAGMA journal_mode = WAL; CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
        setup.Execute("INSERT INTO item (name) VALUES ('first'), ('second'), ('third')");
    }

    /// <summary>Opens <paramref name="connection"/> and a reader of item on its first row, left open with its command.</summary>
    private static (DbCommand Command, DbDataReader Reader) HoldReader(DbConnection connection)
    {
        connection.Open();
        var command = connection.CreateCommand();
        command.CommandText = "SELECT id FROM item";
        var reader = command.ExecuteReader();
        reader.Read();
        return (command, reader);
    }

    private static void OpenClose(DbConnection connection)
    {
        using (connection)
        {
            connection.Open();
        }
    }

    private static object? SelectById(DbConnection connection)
    {
        using (connection)
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT name FROM item WHERE id = 2";
            return command.ExecuteScalar();
        }
    }

    private static string QueryFirst(DbConnection connection)
    {
        using (connection)
        {
            return connection.QueryFirst<string>("SELECT name FROM item WHERE id = @id", new { id = 2 });
        }
    }

    private static async Task<object?> SelectAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT name FROM item WHERE id = 2";
        return await command.ExecuteScalarAsync(cancellationToken);
    }

    private static int Insert(DbConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO item (name) VALUES ('inserted')";
        return command.ExecuteNonQuery();
    }

    private static void HundredRows(DbConnection connection)
    {
        using var transaction = connection.BeginTransaction();
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "INSERT INTO item (name) VALUES ($name)";
        var name = command.CreateParameter();
        name.ParameterName = "$name";
        command.Parameters.Add(name);
        for (var i = 0; i < 100; i++)
        {
            name.Value = "row";
            command.ExecuteNonQuery();
        }

        transaction.Commit();
    }
}
