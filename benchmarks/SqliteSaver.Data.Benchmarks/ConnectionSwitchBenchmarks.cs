using System.Data.Common;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Dapper;
using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Benchmarks;

/// <summary>
/// What a switch of connection costs a writer, without any thread switch: one thread runs read-then-insert
/// transactions on <see cref="Connections"/> open connections in turn. A connection that finds the WAL changed by
/// another connection since its last transaction drops its page cache and reads its pages again; with one
/// connection the cache stays warm. Many threads writing through a pool switch connection at nearly every write.
/// </summary>
[MemoryDiagnoser]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class ConnectionSwitchBenchmarks
{
    private string _folder = null!;
    private SaverDbConnection[] _saver = null!;
    private SqliteConnection[] _plain = null!;
    private int _next;

    /// <summary>How many connections the transactions take turns on.</summary>
    [Params(1, 2, 16)]
    public int Connections { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _folder = Directory.CreateTempSubdirectory("saver-bench-switch-").FullName;
        var path = Path.Combine(_folder, "bench.db");
        using (var setup = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            setup.Open();
            setup.Execute("""
                PRAGMA journal_mode = WAL;
                CREATE TABLE bench (id INTEGER PRIMARY KEY, value TEXT NOT NULL);
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
                INSERT INTO bench (value) SELECT 'seed' FROM n;
                """);
        }

        _saver = [.. Enumerable.Range(0, Connections).Select(_ => new SaverDbConnection($"Data Source={path};Max Pool Size=32"))];
        _plain = [.. Enumerable.Range(0, Connections).Select(_ => new SqliteConnection($"Data Source={path}"))];
        foreach (var connection in _saver)
        {
            connection.Open();
        }

        foreach (var connection in _plain)
        {
            connection.Open();
            connection.Execute("PRAGMA synchronous = NORMAL");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        Array.ForEach(_saver, static connection => connection.Dispose());
        Array.ForEach(_plain, static connection => connection.Dispose());
        SaverDbConnection.ClearAllPools();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    [BenchmarkCategory("Read-then-insert, connections in turn"), Benchmark]
    public void ReadThenInsert_Saver() => ReadThenInsert(_saver[_next++ % Connections]);

    [BenchmarkCategory("Read-then-insert, connections in turn"), Benchmark(Baseline = true)]
    public void ReadThenInsert_MdsPooled() => ReadThenInsert(_plain[_next++ % Connections]);

    private void ReadThenInsert(DbConnection connection)
    {
        using var transaction = connection.BeginTransaction();
        connection.ExecuteScalar<string>("SELECT value FROM bench WHERE id = @id", new { id = (_next % 1000) + 1 }, transaction);
        connection.Execute("INSERT INTO bench (value) VALUES ('payload')", transaction: transaction);
        transaction.Commit();
    }
}
