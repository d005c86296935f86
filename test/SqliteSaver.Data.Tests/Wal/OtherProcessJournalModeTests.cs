using Shouldly;
using SqliteSaver.Data.Tests.Faults;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Wal;

/// <summary>Another process switches the database file to WAL while this process's pooled connection is open.</summary>
public class OtherProcessJournalModeTests : DatabaseTest
{
    [Test]
    public void After_another_process_switched_the_file_to_WAL_the_status_and_a_checkpoint_say_WAL_not_rollback_mode()
    {
        var connectionString = Folder.ConnectionString("Journal Mode=Delete;Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        connection.GetWalStatus().JournalMode.ShouldBe("delete");

        // Another process (an operator's tool, another application) switches the file to WAL and commits a row: the
        // pooled connection holds no lock between transactions in rollback-journal mode, so nothing stops it.
        using var other = WorkerProcess.Sql(Folder.File());
        other.Run("PRAGMA journal_mode = WAL").ShouldBe("ok wal");
        other.Run("INSERT INTO t VALUES (1)").ShouldBe("ok 1");
        new FileInfo(Folder.File() + "-wal").Length.ShouldBeGreaterThan(0); // the committed frame is in the -wal file

        // The database is in WAL mode with a frame in its -wal file: the status says so, and a checkpoint copies it
        // back, as after the connection's next read (where SQLite notices the switch), not "delete" and -1 frames
        // ("not in WAL mode").
        var status = connection.GetWalStatus();
        var checkpoint = connection.Checkpoint();
        status.JournalMode.ShouldBe("wal");
        checkpoint.LogFrames.ShouldBeGreaterThan(0);
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(1L);
    }
}
