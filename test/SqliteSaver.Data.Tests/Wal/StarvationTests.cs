using System.Data;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Wal;

/// <summary>
/// Checkpoint starvation (sqlite.org/wal.html, section 5): with readers that overlap without a gap and a steady
/// writer, SQLite's automatic checkpoints can never reset the WAL, so it grows without bound. The background
/// checkpointer's TRUNCATE waits (briefly) for a moment without WAL readers and keeps it bounded.
/// </summary>
public class StarvationTests : DatabaseTest
{
    private const long Limit = 1024 * 1024;
    // Each autocommit insert of a 1 KiB row appends a 4 KiB page to the WAL: at up to 2,000 a second the writer adds
    // about 0.8 MiB per 0.1 s Checkpoint Interval. The slack allows for that and for a checkpoint that had to wait.
    private const long Slack = 2 * 1024 * 1024;

    [TearDown]
    public void ReleasePlainConnections() => SqliteConnection.ClearAllPools();

    [Test]
    public void With_overlapping_readers_the_wal_stays_under_Journal_Size_Limit_plus_slack()
    {
        var path = Folder.File("saver.db");
        var connectionString = $"Data Source={path};Journal Size Limit={Limit};Checkpoint Interval=0.1";

        var (maxWal, errors) = Run(path, () => new SaverDbConnection(connectionString), c => ((SaverDbConnection)c).BeginTransaction(deferred: true));

        errors.ShouldBeEmpty();
        maxWal.ShouldBeLessThan(Limit + Slack);
        SaverDataSource.GetShared(connectionString).LastCheckpointResult.ShouldNotBeNull();
    }

    [Test]
    public void The_same_workload_on_plain_Microsoft_Data_Sqlite_lets_the_wal_grow_past_the_limit()
    {
        var path = Folder.File("plain.db");
        using (var setup = new SqliteConnection($"Data Source={path}"))
        {
            setup.Open();
            using var command = setup.CreateCommand();
            command.CommandText = "PRAGMA journal_mode = WAL";
            command.ExecuteNonQuery();
        }

        var (maxWal, errors) = Run(path, () => new SqliteConnection($"Data Source={path}"), c => ((SqliteConnection)c).BeginTransaction(deferred: true));

        errors.ShouldBeEmpty();
        maxWal.ShouldBeGreaterThan(Limit + Slack);
    }

    private static (long MaxWal, List<Exception> Errors) Run(string path, Func<DbConnection> connect, Func<DbConnection, DbTransaction> beginRead)
    {
        using (var setup = connect())
        {
            setup.Open();
            Execute(setup, "CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)");
            Execute(setup, "INSERT INTO t (payload) VALUES (randomblob(1024))");
        }

        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        var stop = DateTime.UtcNow.AddSeconds(2.5);
        long maxWal = 0;
        using var readersStarted = new CountdownEvent(2);

        void Guard(Action body)
        {
            try
            {
                body();
            }
            catch (Exception exception)
            {
                errors.Enqueue(exception);
            }
        }

        Thread Reader(int offsetMs) => new(() => Guard(() =>
        {
            Thread.Sleep(offsetMs); // the two readers are out of step, so one always holds a snapshot
            readersStarted.Signal();
            while (DateTime.UtcNow < stop)
            {
                using var connection = connect();
                connection.Open();
                using var transaction = beginRead(connection);
                using var read = connection.CreateCommand();
                read.Transaction = transaction;
                read.CommandText = "SELECT count(*) FROM t";
                read.ExecuteScalar();
                Thread.Sleep(60); // hold the snapshot, as a slow report would
                transaction.Commit();
            }
        }));

        var writer = new Thread(() => Guard(() =>
        {
            readersStarted.Wait();
            var wal = new FileInfo(path + "-wal");
            while (DateTime.UtcNow < stop)
            {
                using (var connection = connect())
                {
                    connection.Open();
                    for (var i = 0; i < 10; i++)
                    {
                        Execute(connection, "INSERT INTO t (payload) VALUES (randomblob(1024))");
                    }
                }

                wal.Refresh();
                maxWal = Math.Max(maxWal, wal.Exists ? wal.Length : 0);
                Thread.Sleep(5); // a steady writer, about 2,000 rows a second at most
            }
        }));

        var threads = new[] { Reader(0), Reader(30), writer };
        foreach (var thread in threads)
        {
            thread.Start();
        }

        foreach (var thread in threads)
        {
            thread.Join();
        }

        return (maxWal, [.. errors]);
    }

    private static void Execute(DbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}
