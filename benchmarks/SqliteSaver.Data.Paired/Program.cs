// Paired benchmark: what SqliteSaver.Data adds to a statement inside a transaction, and to one long statement, as ratios
// to Microsoft.Data.Sqlite.
// Usage: make bench-paired (or dotnet run -c Release --project benchmarks/SqliteSaver.Data.Paired).
//
// Runs of 4,000 inserts on a command reused in a transaction (rolled back after each run), each stack on a WAL file of
// its own, in turn: SqliteSaver, Microsoft.Data.Sqlite, SqliteSaver. Each triple gives one ratio, SqliteSaver's mean
// time per insert over Microsoft.Data.Sqlite's, so that a machine whose speed drifts (a shared VM) moves both sides of a
// ratio alike. Prints the median and quartiles of 201 ratios. BenchmarkDotNet runs its benchmarks one after another, so
// on such a machine it cannot resolve a difference of a tenth here (see benchmarks/README.md).
// Then the same for one query of 1.8 million of SQLite's steps (a sum over 100,000 generated rows; the sqlite3 shell's
// .stats counts the steps), in which SqliteSaver's progress handler looks at the call's token every 100 steps.
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

    Report($"Insert in a transaction ({Pairs} paired runs of {Inserts:N0} inserts)", Ratios(saver, plain, connection => NanosecondsPerInsert(connection, Inserts)));

    for (var warmup = 0; warmup < 5; warmup++)
    {
        NanosecondsOfLongQuery(saver);
        NanosecondsOfLongQuery(plain);
    }

    Report($"A query of 1.8 million steps ({Pairs} paired runs)", Ratios(saver, plain, NanosecondsOfLongQuery));
}
finally
{
    SaverDbConnection.ClearAllPools();
    Directory.Delete(folder, recursive: true);
}

// One ratio a triple, SqliteSaver's mean over Microsoft.Data.Sqlite's, sorted.
static double[] Ratios(DbConnection saver, DbConnection plain, Func<DbConnection, double> nanoseconds)
{
    var ratios = new double[Pairs];
    for (var pair = 0; pair < Pairs; pair++)
    {
        var before = nanoseconds(saver);
        var baseline = nanoseconds(plain);
        var after = nanoseconds(saver);
        ratios[pair] = (before + after) / 2 / baseline;
    }

    Array.Sort(ratios);
    return ratios;
}

static void Report(string what, double[] ratios)
    => Console.WriteLine($"{what}, SqliteSaver / Microsoft.Data.Sqlite: median {ratios[ratios.Length / 2]:F3}, quartiles {ratios[ratios.Length / 4]:F3} and {ratios[3 * ratios.Length / 4]:F3}");

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

static double NanosecondsOfLongQuery(DbConnection connection)
{
    using var command = connection.CreateCommand();
    command.CommandText = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT sum(x) FROM c";
    var watch = Stopwatch.StartNew();
    command.ExecuteScalar();
    return watch.Elapsed.TotalNanoseconds;
}
