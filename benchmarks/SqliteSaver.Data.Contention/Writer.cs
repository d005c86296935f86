using System.Data.Common;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Contention;

/// <summary>Runs one stack's workload on threads for a fixed time and records every transaction's latency.</summary>
internal static class Writer
{
    public const int SeedRows = 1000;

    /// <summary>The plain stacks' physical connections (SQLite handles) whose PRAGMAs are set.</summary>
    private static readonly ConditionalWeakTable<SQLitePCL.sqlite3, object> Configured = [];

    private static readonly object Yes = new();

    /// <summary>Creates the table, seeds it and switches the file to WAL with synchronous=NORMAL.</summary>
    public static void Prepare(string path)
    {
        using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            PRAGMA journal_mode = WAL;
            CREATE TABLE bench (id INTEGER PRIMARY KEY, thread INTEGER NOT NULL, value TEXT NOT NULL);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {SeedRows})
            INSERT INTO bench (thread, value) SELECT -1, 'seed' FROM n;
            """;
        command.ExecuteNonQuery();
    }

    /// <summary>
    /// Runs the workload on <paramref name="threads"/> threads for <paramref name="duration"/>: the rate counts the
    /// commits that finished within that window, so that a stack whose threads finish their last transaction late
    /// (asleep in a busy handler as the window ends) is not charged for the wait; every commit's latency is kept.
    /// </summary>
    public static Result Run(Stack stack, Workload workload, string path, string options, int threads, TimeSpan duration)
    {
        var connectionString = $"Data Source={path};{options}";
        var latencies = new List<long>[threads];
        var errors = new int[threads];
        var commits = new int[threads];
        var inWindow = new int[threads];
        var stop = 0L;
        using var start = new Barrier(threads + 1);

        var running = Enumerable.Range(0, threads).Select(thread => new Thread(() =>
        {
            var mine = latencies[thread] = new List<long>(4096);
            var random = new Random(thread);
            start.SignalAndWait();
            while (Stopwatch.GetTimestamp() < stop)
            {
                var began = Stopwatch.GetTimestamp();
                try
                {
                    Transaction(stack, workload, connectionString, thread, random);
                    var ended = Stopwatch.GetTimestamp();
                    commits[thread]++;
                    inWindow[thread] += ended <= stop ? 1 : 0;
                    mine.Add(ended - began);
                }
                catch (DbException)
                {
                    errors[thread]++;
                }
            }
        })).ToList();

        running.ForEach(t => t.Start());
        stop = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency); // the barrier publishes it
        start.SignalAndWait();
        running.ForEach(t => t.Join());

        return new Result(
            commits.Sum(),
            inWindow.Sum(),
            inWindow.Min(),
            errors.Sum(),
            duration.TotalSeconds,
            [.. latencies.SelectMany(l => l).Select(ticks => (int)(ticks * 1_000_000 / Stopwatch.Frequency))]);
    }

    private static void Transaction(Stack stack, Workload workload, string connectionString, int thread, Random random)
    {
        using DbConnection connection = stack == Stack.Saver
            ? new SaverDbConnection(connectionString)
            : new SqliteConnection(connectionString);
        connection.Open();

        // The workload runs with synchronous=NORMAL on every stack (SqliteSaver's default), set once per physical
        // connection as SqliteSaver sets it: Microsoft.Data.Sqlite's pool keeps a connection's PRAGMAs.
        if (stack != Stack.Saver && Configured.TryAdd(((SqliteConnection)connection).Handle!, Yes))
        {
            Execute(connection, null, stack == Stack.Plain ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000");
        }

        if (workload == Workload.Insert)
        {
            Insert(connection, null, thread);
            return;
        }

        using var transaction = connection.BeginTransaction();
        using (var read = connection.CreateCommand())
        {
            read.Transaction = transaction;
            read.CommandText = "SELECT value FROM bench WHERE id = $id";
            read.Parameters.Add(Parameter(read, "$id", random.Next(1, SeedRows + 1)));
            read.ExecuteScalar();
        }

        Insert(connection, transaction, thread);
        transaction.Commit();
    }

    private static void Insert(DbConnection connection, DbTransaction? transaction, int thread)
    {
        using var insert = connection.CreateCommand();
        insert.Transaction = transaction;
        insert.CommandText = "INSERT INTO bench (thread, value) VALUES ($thread, 'payload')";
        insert.Parameters.Add(Parameter(insert, "$thread", thread));
        insert.ExecuteNonQuery();
    }

    private static void Execute(DbConnection connection, DbTransaction? transaction, string sql)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static DbParameter Parameter(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        return parameter;
    }
}
