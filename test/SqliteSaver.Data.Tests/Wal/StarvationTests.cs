using System.Data.Common;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Shouldly;

namespace SqliteSaver.Data.Tests.Wal;

/// <summary>
/// Checkpoint starvation (sqlite.org/wal.html, section 5): with readers that overlap without a gap and a steady
/// writer, SQLite's automatic checkpoints can never start the WAL over, so it grows without bound. The background
/// checkpointer's TRUNCATE waits (briefly) for a moment without WAL readers and keeps it bounded. The writer writes a
/// fixed amount in batches and the checkpointer's clock moves one interval after each batch, so the outcome does not
/// depend on the machine's speed.
/// </summary>
public class StarvationTests : DatabaseTest
{
    private const long Limit = 1024 * 1024;
    private const int Batches = 30;
    private const int RowsPerBatch = 50; // each autocommit insert of a 1 KiB row appends a 4 KiB page: about 200 KiB a batch

    // Room for the batches written while a checkpoint came back busy (readers left running slowly on a loaded machine).
    private const long Slack = 2 * 1024 * 1024;

    [TearDown]
    public void ReleasePlainConnections() => SqliteConnection.ClearAllPools();

    [Test]
    public void With_overlapping_readers_the_wal_stays_under_Journal_Size_Limit_plus_slack()
    {
        var time = new FakeTimeProvider();
        var path = Folder.File("saver.db");
        using var dataSource = new SaverDataSourceBuilder($"Data Source={path};Journal Size Limit={Limit};Checkpoint Interval=1")
            .UseTimeProvider(time).Build();

        var (maxWal, errors) = Run(
            path,
            () => dataSource.CreateConnection(),
            c => ((SaverDbConnection)c).BeginTransaction(deferred: true),
            writerOpened: _ => { },
            afterBatch: () => time.Advance(TimeSpan.FromSeconds(1)));

        errors.ShouldBeEmpty();
        maxWal.ShouldBeLessThan(Limit + Slack);
        dataSource.Checkpointer.BackgroundRuns.ShouldBe(Batches);
    }

    [Test]
    public void The_same_workload_on_plain_Microsoft_Data_Sqlite_lets_the_wal_grow_past_the_limit_though_it_checkpoints_often()
    {
        var path = Folder.File("plain.db");
        using (var setup = new SqliteConnection($"Data Source={path}"))
        {
            setup.Open();
            using var command = setup.CreateCommand();
            command.CommandText = "PRAGMA journal_mode = WAL";
            command.ExecuteNonQuery();
        }

        // Automatic checkpoints every 100 pages (400 KiB, well under the limit): only readers that never leave a gap
        // can keep them from starting the WAL over.
        var (maxWal, errors) = Run(
            path,
            () => new SqliteConnection($"Data Source={path}"),
            c => ((SqliteConnection)c).BeginTransaction(deferred: true),
            writerOpened: c => Execute(c, "PRAGMA wal_autocheckpoint = 100"),
            afterBatch: () => { });

        errors.ShouldBeEmpty();
        maxWal.ShouldBeGreaterThan(Limit + Slack);
    }

    private static (long MaxWal, List<Exception> Errors) Run(
        string path, Func<DbConnection> connect, Func<DbConnection, DbTransaction> beginRead, Action<DbConnection> writerOpened, Action afterBatch)
    {
        using (var setup = connect())
        {
            setup.Open();
            Execute(setup, "CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)");
            Execute(setup, "INSERT INTO t (payload) VALUES (randomblob(1024))");
        }

        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        using var stop = new CancellationTokenSource();
        using var bothReading = new CountdownEvent(2);
        var holding = 0; // readers holding a snapshot

        Thread Reader() => new(() =>
        {
            try
            {
                var signalled = false;
                while (!stop.IsCancellationRequested)
                {
                    using var connection = connect();
                    connection.Open();
                    using var transaction = beginRead(connection);
                    using var read = connection.CreateCommand();
                    read.Transaction = transaction;
                    read.CommandText = "SELECT count(*) FROM t";
                    read.ExecuteScalar();
                    Interlocked.Increment(ref holding);
                    if (!signalled)
                    {
                        bothReading.Signal();
                        signalled = true;
                    }

                    Thread.Sleep(60); // pacing: hold the snapshot, as a slow report would

                    // Overlap without a gap: end this snapshot only while the other reader holds one (2 -> 1 lets
                    // one reader through at a time; the other waits until this one reads again).
                    Wait.Until(() => stop.IsCancellationRequested || Interlocked.CompareExchange(ref holding, 1, 2) == 2);
                    transaction.Commit();
                }
            }
            catch (Exception exception)
            {
                errors.Enqueue(exception);
            }
        });

        var readers = new[] { Reader(), Reader() };
        foreach (var reader in readers)
        {
            reader.Start();
        }

        long maxWal = 0;
        try
        {
            bothReading.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
            var wal = new FileInfo(path + "-wal");
            for (var batch = 0; batch < Batches; batch++)
            {
                using (var connection = connect())
                {
                    connection.Open();
                    writerOpened(connection);
                    for (var i = 0; i < RowsPerBatch; i++)
                    {
                        Execute(connection, "INSERT INTO t (payload) VALUES (randomblob(1024))");
                    }
                }

                wal.Refresh();
                maxWal = Math.Max(maxWal, wal.Exists ? wal.Length : 0);
                afterBatch();
            }
        }
        finally
        {
            stop.Cancel();
            foreach (var reader in readers)
            {
                reader.Join();
            }
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
