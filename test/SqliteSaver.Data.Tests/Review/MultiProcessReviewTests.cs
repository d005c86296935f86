using Shouldly;
using SqliteSaver.Data.Tests.Faults;

namespace SqliteSaver.Data.Tests.Review;

/// <summary>Defects found reviewing many processes on one database file and keeping the WAL bounded.</summary>
public class MultiProcessReviewTests : DatabaseTest
{
    private string Wal => Folder.File() + "-wal";

    [Test]
    public void Checkpoint_On_Close_waits_within_its_step_for_another_processs_checkpoint_instead_of_leaving_the_wal_full()
    {
        var connectionString = Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=0");
        var dataSource = SaverDataSource.GetShared(connectionString);
        using var rented = new SaverDbConnection(connectionString);
        rented.Open();
        Execute(rented, "CREATE TABLE t (x)");
        for (var i = 0; i < 20; i++)
        {
            Execute(rented, "INSERT INTO t VALUES (randomblob(1000))");
        }

        // Another process, without this library, keeps the file open and runs a FULL checkpoint, as any process's
        // automatic checkpoint or another data source's background one may be doing when this pool drains. It holds
        // SQLite's checkpoint lock while it waits (in its busy handler) for the write lock this connection holds.
        using var other = WorkerProcess.Sql(Folder.File());
        other.Run("SELECT count(*) FROM t").ShouldBe("ok 20");
        other.Run("PRAGMA busy_timeout = 20000").ShouldStartWith("ok");
        using var transaction = rented.BeginTransaction();
        Execute(rented, "INSERT INTO t VALUES (1)");
        var checkpoint = other.Send("PRAGMA wal_checkpoint(FULL)");
        Wait.Until(() => dataSource.Checkpoint() is { Busy: true, LogFrames: -1 }); // the other process's checkpoint is running
        new FileInfo(Wal).Length.ShouldBeGreaterThan(0);

        // The pool drains: closing its last connection rolls its transaction back, and the other process's checkpoint
        // gets the write lock, copies the few frames and ends within milliseconds (at most one of its 100 ms sleeps),
        // well inside the 250 ms step the final TRUNCATE may wait.
        SaverDbConnection.ClearAllPools();
        rented.Close();
        other.Answer(checkpoint).ShouldBe("ok 0"); // the other process's FULL checkpoint succeeded meanwhile

        // Checkpoint On Close: "a Truncate checkpoint leaves the files small and consistent, even while other processes
        // keep the database open". The final TRUNCATE came back busy at once instead (SQLite answers a second
        // checkpoint with SQLITE_BUSY without calling the busy handler), and nothing tries again: the pool is drained.
        dataSource.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
        new FileInfo(Wal).Length.ShouldBe(0);
    }

    private static void Execute(SaverDbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}
