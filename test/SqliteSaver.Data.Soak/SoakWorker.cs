using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace SqliteSaver.Data.Soak;

/// <summary>
/// One worker process: threads that write and read through the pool until the coordinator's stop file appears. After
/// each commit returns, the ids of its rows are appended to this incarnation's log and flushed, so they survive a
/// SIGKILL; an exception is recorded in the error log (and stderr), then the thread goes on.
/// </summary>
internal sealed class SoakWorker : IDisposable
{
    private readonly string _connectionString;
    private readonly string _name;
    private readonly string _stopFile;
    private readonly StreamWriter _log;
    private readonly StreamWriter _errors;
    private readonly Lock _lock = new();

    /// <summary>Never cancelled: a cancellable token puts the library's own busy handler in place for async calls.</summary>
    private readonly CancellationTokenSource _neverCancelled = new();
    private volatile bool _stopping;
    private long _acknowledged;
    private int _failed;

    private SoakWorker(string folder, int worker, int incarnation)
    {
        _connectionString = SoakSettings.ConnectionString(Path.Combine(folder, Coordinator.DatabaseName));
        _name = string.Create(CultureInfo.InvariantCulture, $"{worker}.{incarnation}");
        _stopFile = Path.Combine(folder, Coordinator.StopFileName);
        _log = new StreamWriter(new FileStream(Path.Combine(folder, $"worker-{_name}.log"), FileMode.Append, FileAccess.Write, FileShare.Read));
        _errors = new StreamWriter(new FileStream(Path.Combine(folder, $"worker-{_name}.errors"), FileMode.Append, FileAccess.Write, FileShare.Read));
    }

    /// <summary>Arguments: folder, worker id, incarnation, threads.</summary>
    public static int Run(string[] args)
    {
        using var worker = new SoakWorker(args[0], int.Parse(args[1], CultureInfo.InvariantCulture), int.Parse(args[2], CultureInfo.InvariantCulture));
        return worker.Run(int.Parse(args[3], CultureInfo.InvariantCulture));
    }

    public void Dispose()
    {
        _neverCancelled.Dispose();
        _log.Dispose();
        _errors.Dispose();
    }

    private int Run(int threadCount)
    {
        var started = Stopwatch.GetTimestamp();
        var threads = Enumerable.Range(0, threadCount).Select(thread => new Thread(() => Loop(thread, started)) { Name = $"soak {thread}" }).ToList();
        threads.ForEach(t => t.Start());
        while (!File.Exists(_stopFile))
        {
            Thread.Sleep(50);
        }

        _stopping = true;
        threads.ForEach(t => t.Join());
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"acknowledged {Interlocked.Read(ref _acknowledged)}"));
        return Volatile.Read(ref _failed) == 0 ? 0 : 1;
    }

    private void Loop(int thread, long started)
    {
        var random = new Random(HashCode.Combine(_name, thread));
        for (var sequence = 0L; !_stopping; sequence++)
        {
            try
            {
                RunOne(random, $"{_name}.{thread}.{sequence}");
                Pace(started);
            }
            catch (Exception exception)
            {
                Interlocked.Increment(ref _failed);
                lock (_lock)
                {
                    _errors.WriteLine($"{DateTime.UtcNow:O} thread {thread}: {exception}");
                    _errors.Flush();
                }

                Console.Error.WriteLine(exception);
            }
        }
    }

    /// <summary>One operation, chosen at random; rows get ids "prefix.0", "prefix.1", ... and the transaction id "prefix".</summary>
    private void RunOne(Random random, string prefix)
    {
        switch (random.Next(10))
        {
            case 0 or 1:
                {
                    // An autocommit write: the library wraps it in a transaction of its own and retries it whole.
                    using var connection = new SaverDbConnection(_connectionString);
                    connection.Open();
                    Execute(connection, Insert(prefix, 1, 0, random));
                    Acknowledge(prefix, 1);
                    break;
                }

            case 2:
                {
                    // A batch of three statements in one command: all or nothing, never applied twice.
                    using var connection = new SaverDbConnection(_connectionString);
                    connection.Open();
                    Execute(connection, Insert(prefix, 3, 0, random) + Insert(prefix, 3, 1, random) + Insert(prefix, 3, 2, random));
                    Acknowledge(prefix, 3);
                    break;
                }

            case 3 or 4:
                {
                    // A read-then-write unit of work, IMMEDIATE or DEFERRED (which meets stale snapshots and is run again whole).
                    using var connection = new SaverDbConnection(_connectionString);
                    var size = random.Next(1, 5);
                    var sql = new StringBuilder();
                    for (var i = 0; i < size; i++)
                    {
                        sql.Append(Insert(prefix, size, i, random));
                    }

                    connection.RunInTransaction(
                        _ =>
                        {
                            Scalar(connection, "SELECT count(*) FROM item WHERE rowid > (SELECT max(rowid) - 50 FROM item)");
                            Execute(connection, sql.ToString());
                        },
                        deferred: random.Next(2) == 0);
                    Acknowledge(prefix, size);
                    break;
                }

            case 5:
                {
                    // The caller's own transaction, statement by statement.
                    using var connection = new SaverDbConnection(_connectionString);
                    connection.Open();
                    using var transaction = connection.BeginTransaction();
                    Execute(connection, Insert(prefix, 2, 0, random));
                    Execute(connection, Insert(prefix, 2, 1, random));
                    transaction.Commit();
                    Acknowledge(prefix, 2);
                    break;
                }

            case 6:
                RunAsync(random, prefix).GetAwaiter().GetResult();
                break;

            default:
                {
                    // Readers, some of them slow, so that checkpoints meet readers holding old snapshots.
                    using var connection = new SaverDbConnection(_connectionString);
                    connection.Open();
                    using var command = connection.CreateCommand();
                    command.CommandText = "SELECT id, length(payload) FROM item WHERE rowid > (SELECT max(rowid) - 200 FROM item)";
                    using var reader = command.ExecuteReader();
                    while (reader.Read())
                    {
                        if (random.Next(100) == 0)
                        {
                            Thread.Sleep(1);
                        }
                    }

                    break;
                }
        }
    }

    /// <summary>
    /// Asynchronous writes, half of them with a cancellable token (the library's busy handler) and half without
    /// (SQLite's own); units of work in IMMEDIATE or, waiting in the busy handler for the write lock, DEFERRED transactions.
    /// </summary>
    private async Task RunAsync(Random random, string prefix)
    {
        var cancellationToken = random.Next(2) == 0 ? _neverCancelled.Token : CancellationToken.None;
        await using var connection = new SaverDbConnection(_connectionString);
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        if (random.Next(2) == 0)
        {
            await using var command = connection.CreateCommand();
            command.CommandText = Insert(prefix, 1, 0, random);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            Acknowledge(prefix, 1);
            return;
        }

        var sql = Insert(prefix, 2, 0, random) + Insert(prefix, 2, 1, random);
        await connection.RunInTransactionAsync(
            async (_, token) =>
            {
                await using var command = connection.CreateCommand();
                command.CommandText = sql;
                await command.ExecuteNonQueryAsync(token).ConfigureAwait(false);
            },
            deferred: random.Next(2) == 0,
            cancellationToken).ConfigureAwait(false);
        Acknowledge(prefix, 2);
    }

    /// <summary>Sleeps while this process has written more rows than <see cref="SoakSettings.RowsPerSecondPerWorker"/> allows so far.</summary>
    private void Pace(long started)
    {
        var ahead = Interlocked.Read(ref _acknowledged) - (Stopwatch.GetElapsedTime(started).TotalSeconds * SoakSettings.RowsPerSecondPerWorker);
        if (ahead > 0)
        {
            Thread.Sleep(TimeSpan.FromSeconds(ahead / SoakSettings.RowsPerSecondPerWorker));
        }
    }

    /// <summary>Records the rows of a transaction whose commit has returned: written and flushed before the next operation.</summary>
    private void Acknowledge(string transaction, int size)
    {
        lock (_lock)
        {
            for (var i = 0; i < size; i++)
            {
                _log.Write(transaction);
                _log.Write('.');
                _log.Write(i.ToString(CultureInfo.InvariantCulture));
                _log.Write('\n');
            }

            _log.Flush();
        }

        Interlocked.Add(ref _acknowledged, size);
    }

    private static string Insert(string transaction, int size, int index, Random random) => string.Create(
        CultureInfo.InvariantCulture,
        $"INSERT INTO item (id, tx, size, payload) VALUES ('{transaction}.{index}', '{transaction}', {size}, randomblob({random.Next(100, 4000)}));");

    private static void Execute(SaverDbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static object? Scalar(SaverDbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }
}
