using System.Data.Common;
using BenchmarkDotNet.Attributes;
using Dapper;
using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Benchmarks;

/// <summary>
/// One statement of a unit of work: a command reused inside a transaction open for the whole run (an UPDATE of one
/// row, rolled back at the end), with no BEGIN or COMMIT in the measurement, so what each stack adds to a statement
/// shows. Each stack has a WAL database file of its own (synchronous=NORMAL); Microsoft.Data.Sqlite pooled is the
/// baseline.
/// </summary>
[MemoryDiagnoser]
public class TransactionStatementBenchmarks
{
    private string _folder = null!;
    private Stack _saver = null!;
    private Stack _pooled = null!;

    [GlobalSetup]
    public void Setup()
    {
        _folder = Directory.CreateTempSubdirectory("saver-bench-").FullName;
        _saver = new Stack(new SaverDbConnection($"Data Source={Database("saver.db")}"));
        _pooled = new Stack(new SqliteConnection($"Data Source={Database("pooled.db")}"));
        _pooled.Connection.Execute("PRAGMA synchronous = NORMAL");
        _saver.Begin();
        _pooled.Begin();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _saver.Dispose();
        _pooled.Dispose();
        SaverDbConnection.ClearAllPools();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    [Benchmark]
    public int Update_Saver() => _saver.Update();

    [Benchmark(Baseline = true)]
    public int Update_MdsPooled() => _pooled.Update();

    private string Database(string name)
    {
        var path = Path.Combine(_folder, name);
        using var setup = new SqliteConnection($"Data Source={path};Pooling=False");
        setup.Open();
        setup.Execute("PRAGMA journal_mode = WAL; CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL); INSERT INTO item (name) VALUES ('first')");
        return path;
    }

    /// <summary>An open connection, its transaction and the command the benchmark runs in it.</summary>
    private sealed class Stack(DbConnection connection) : IDisposable
    {
        private DbTransaction? _transaction;
        private DbCommand? _command;
        private DbParameter? _name;

        public DbConnection Connection { get; } = Open(connection);

        public void Begin()
        {
            _transaction = Connection.BeginTransaction();
            _command = Connection.CreateCommand();
            _command.Transaction = _transaction;
            _command.CommandText = "UPDATE item SET name = $name WHERE id = 1";
            _name = _command.CreateParameter();
            _name.ParameterName = "$name";
            _command.Parameters.Add(_name);
        }

        public int Update()
        {
            _name!.Value = "row";
            return _command!.ExecuteNonQuery();
        }

        public void Dispose()
        {
            _command?.Dispose();
            _transaction?.Dispose();
            Connection.Dispose();
        }

        private static DbConnection Open(DbConnection connection)
        {
            connection.Open();
            return connection;
        }
    }
}
