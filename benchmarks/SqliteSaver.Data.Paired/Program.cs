// Paired benchmark: what SqliteSaver.Data adds to a statement inside a transaction, as a ratio to Microsoft.Data.Sqlite.
// Usage: make bench-paired (or dotnet run -c Release --project benchmarks/SqliteSaver.Data.Paired).
//
// Runs of 4,000 inserts on a command reused in a transaction (rolled back after each run), each stack on a WAL file of
// its own, in turn: SqliteSaver, Microsoft.Data.Sqlite, SqliteSaver. Each triple gives one ratio, SqliteSaver's mean
// time per insert over Microsoft.Data.Sqlite's, so that a machine whose speed drifts (a shared VM) moves both sides of a
// ratio alike. Prints the median and quartiles of 201 ratios. BenchmarkDotNet runs its benchmarks one after another, so
// on such a machine it cannot resolve a difference of a tenth here (see benchmarks/README.md).
using System.Data.Common;
using System.Diagnostics;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data;

const int Inserts = 4000;
const int Pairs = 201;

var folder = Directory.CreateTempSubdirectory("saver-paired-").FullName;
try
{
    using var saver = new SaverDbConnection($"Data Source={Database("saver.db")}");
    saver.Open();
    using var plain = new SqliteConnection($"Data Source={Database("plain.db")}");
    plain.Open();
    using (var synchronous = plain.CreateCommand())
    {
        synchronous.CommandText = "PRAGMA synchronous = NORMAL"; // as SqliteSaver's default
        synchronous.ExecuteNonQuery();
    }

    for (var warmup = 0; warmup < 5; warmup++)
    {
        NanosecondsPerInsert(saver, 20_000);
        NanosecondsPerInsert(plain, 20_000);
    }

    var ratios = new double[Pairs];
    for (var pair = 0; pair < Pairs; pair++)
    {
        var before = NanosecondsPerInsert(saver, Inserts);
        var baseline = NanosecondsPerInsert(plain, Inserts);
        var after = NanosecondsPerInsert(saver, Inserts);
        ratios[pair] = (before + after) / 2 / baseline;
    }

    Array.Sort(ratios);
    Console.WriteLine($"Insert in a transaction, SqliteSaver / Microsoft.Data.Sqlite: median {ratios[Pairs / 2]:F3}, quartiles {ratios[Pairs / 4]:F3} and {ratios[3 * Pairs / 4]:F3} ({Pairs} paired runs of {Inserts:N0} inserts)");
}
finally
{
    SaverDbConnection.ClearAllPools();
    Directory.Delete(folder, recursive: true);
}

string Database(string name)
{
    var path = Path.Combine(folder, name);
    using var setup = new SqliteConnection($"Data Source={path};Pooling=False");
    setup.Open();
    using var command = setup.CreateCommand();
    command.CommandText = "PRAGMA journal_mode = WAL; CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL)";
    command.ExecuteNonQuery();
    return path;
}

static double NanosecondsPerInsert(DbConnection connection, int inserts)
{
    using var transaction = connection.BeginTransaction();
    using var command = connection.CreateCommand();
    command.Transaction = transaction;
    command.CommandText = "INSERT INTO item (name) VALUES ($name)";
    var name = command.CreateParameter();
    name.ParameterName = "$name";
    command.Parameters.Add(name);
    var watch = Stopwatch.StartNew();
    for (var i = 0; i < inserts; i++)
    {
        name.Value = "row";
        command.ExecuteNonQuery();
    }

    var nanoseconds = watch.Elapsed.TotalNanoseconds / inserts;
    transaction.Rollback();
    return nanoseconds;
}
