using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Tests.Wal;

/// <summary>
/// connection.Checkpoint is a call of the connection like any other: Close from another thread ends it and waits for
/// it, so that it never runs on a physical connection the pool has handed on or closed.
/// </summary>
public class CloseDuringCheckpointTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A checkpoint on a SaverDbConnection that finds another connection's checkpoint running polls for it, every few
    /// milliseconds up to the busy timeout (README, WAL and checkpoints). Another thread closes the connection meanwhile,
    /// as a request timeout would. The README promises that Close ends a call of the connection still running on
    /// another thread (InvalidOperationException) and waits for it to return, "so that it never runs on the
    /// connection's next renter". But Close does not know of the checkpoint: it returns at once, the physical
    /// connection goes back to the pool with the checkpoint still polling on it, and once the pool closes that
    /// connection (dataSource.Clear here) the next poll fails with an ObjectDisposedException for SQLitePCL's handle.
    /// </summary>
    [Test]
    public async Task Close_from_another_thread_ends_and_waits_for_a_checkpoint_polling_for_another_checkpoint()
    {
        var path = Folder.File();
        var connectionString = Folder.ConnectionString("Busy Timeout=20000;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = SaverDataSource.Create(connectionString);
        var connection = dataSource.OpenConnection();
        ConnectionTests.Scalar(connection, "INSERT INTO t VALUES (1) RETURNING x");

        // A reader on a snapshot older than the WAL's end, and a plain connection whose TRUNCATE checkpoint holds the
        // checkpoint lock while it waits for that reader: any other checkpoint gets SQLITE_BUSY at once meanwhile.
        using var reader = new SqliteConnection($"Data Source={path};Pooling=False");
        reader.Open();
        Run(reader, "BEGIN");
        Run(reader, "SELECT count(*) FROM t");
        ConnectionTests.Scalar(connection, "INSERT INTO t VALUES (2) RETURNING x");
        var blocker = Task.Factory.StartNew(
            () =>
            {
                using var other = new SqliteConnection($"Data Source={path};Pooling=False");
                other.Open();
                Run(other, "PRAGMA busy_timeout = 25000");
                Run(other, "PRAGMA wal_checkpoint(TRUNCATE)");
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
        using var probe = new SqliteConnection($"Data Source={path};Pooling=False");
        probe.Open();
        Run(probe, "SELECT count(*) FROM t"); // SQLite opens the WAL on a connection's first read
        Wait.Until(() => blocker.IsCompleted || raw.sqlite3_wal_checkpoint_v2(probe.Handle, "main", raw.SQLITE_CHECKPOINT_PASSIVE, out var log, out _) == raw.SQLITE_BUSY && log == -1);
        blocker.IsCompleted.ShouldBeFalse();

        // The checkpoint reads the busy timeout once it has met the other checkpoint, and then polls.
        var polling = new ManualResetEventSlim();
        raw.sqlite3_trace(
            connection.InnerConnection.Handle,
            (_, statement) =>
            {
                if (statement.utf8_to_string().Contains("busy_timeout", StringComparison.Ordinal))
                {
                    polling.Set();
                }
            },
            null);
        var checkpoint = Task.Factory.StartNew(() => connection.Checkpoint(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        polling.Wait(Bound).ShouldBeTrue();

        connection.Close(); // from another thread than the checkpoint's
        var endedWhenCloseReturned = checkpoint.IsCompleted;
        dataSource.Clear(); // the returned physical connection is idle: closed at once

        string outcome;
        try
        {
            outcome = $"returned {await checkpoint.WaitAsync(Bound)}";
        }
        catch (Exception error)
        {
            outcome = error is ObjectDisposedException disposed ? $"ObjectDisposedException ({disposed.ObjectName})" : error.GetType().Name;
        }
        finally
        {
            Run(reader, "COMMIT");
            await blocker.WaitAsync(Bound);
        }

        (endedWhenCloseReturned, outcome).ShouldBe(
            (true, nameof(InvalidOperationException)),
            "Close returned while the connection's checkpoint still ran on the pooled physical connection");
    }

    private static void Run(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteScalar();
    }
}
