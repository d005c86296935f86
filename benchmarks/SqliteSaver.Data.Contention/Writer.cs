using System.Data.Common;
using System.Diagnostics;
using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Contention;

/// <summary>Runs one stack's workload on threads for a fixed time and records every transaction's latency.</summary>
internal static class Writer
{
    public const int SeedRows = 1000;

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

    public static Result Run(Stack stack, Workload workload, string path, string options, int threads, TimeSpan duration)
    {
        var connectionString = $"Data Source={path};{options}";
        var latencies = new List<long>[threads];
        var errors = new int[threads];
        var commits = new int[threads];
        var stop = DateTime.UtcNow + duration;
        using var start = new Barrier(threads + 1);

        var running = Enumerable.Range(0, threads).Select(thread => new Thread(() =>
        {
            var mine = latencies[thread] = new List<long>(4096);
            var random = new Random(thread);
            start.SignalAndWait();
            while (DateTime.UtcNow < stop)
            {
                var began = Stopwatch.GetTimestamp();
                try
                {
                    Transaction(stack, workload, connectionString, thread, random);
                    commits[thread]++;
                    mine.Add(Stopwatch.GetTimestamp() - began);
                }
                catch (DbException)
                {
                    errors[thread]++;
                }
            }
        })).ToList();

        running.ForEach(t => t.Start());
        start.SignalAndWait();
        var clock = Stopwatch.StartNew();
        running.ForEach(t => t.Join());
        clock.Stop();

        return new Result(
            commits.Sum(),
            errors.Sum(),
            clock.Elapsed.TotalSeconds,
            [.. latencies.SelectMany(l => l).Select(ticks => (int)(ticks * 1_000_000 / Stopwatch.Frequency))]);
    }

    private static void Transaction(Stack stack, Workload workload, string connectionString, int thread, Random random)
    {
        using DbConnection connection = stack == Stack.Saver
            ? new SaverDbConnection(connectionString)
            : new SqliteConnection(connectionString);
        connection.Open();
        switch (stack)
        {
            // The workload runs with synchronous=NORMAL on every stack (SqliteSaver's default).
            case Stack.Plain:
                Execute(connection, null, "PRAGMA synchronous = NORMAL");
                break;
            case Stack.PlainBusyTimeout:
                Execute(connection, null, "PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000");
                break;
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
