using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>
/// The database file deleted or replaced under an open pool (the behaviour the README documents): connections opened
/// before keep the file they opened, nothing crashes, and clearing the pool makes the next Open see what is now at the path.
/// </summary>
public class MovedFileTests : DatabaseTest
{
    [Test]
    public void A_database_deleted_under_an_open_pool_keeps_serving_the_old_file_until_ClearPool_then_starts_afresh()
    {
        var (connectionString, rented) = OpenPoolWithRows(checkpointOnClose: true);

        foreach (var file in Directory.GetFiles(Folder.Path))
        {
            File.Delete(file); // rm app.db app.db-wal app.db-shm
        }

        // Connections opened before go on with the deleted file: reads and writes work, the writes go nowhere lasting.
        ConnectionTests.Scalar(rented, "SELECT group_concat(x) FROM t").ShouldBe("1,2");
        ConnectionTests.Exec(rented, "INSERT INTO t VALUES (3)").ShouldBe(1);
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1,2,3"); // the idle connection
        File.Exists(Folder.File()).ShouldBeFalse();

        SaverDbConnection.ClearPool(rented);
        ConnectionTests.Scalar(rented, "SELECT count(*) FROM t").ShouldBe(3L); // still rented: closed on return
        rented.Dispose();

        Directory.GetFiles(Folder.Path).ShouldBeEmpty(); // the final checkpoint did not create the file again
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM sqlite_master").ShouldBe(0L); // a new, empty database
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (10)");
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("10");
        PoolTests.Scalar(connectionString, "PRAGMA integrity_check").ShouldBe("ok");
    }

    [Test]
    public void A_database_replaced_under_an_open_pool_is_read_as_replaced_after_ClearPool()
    {
        var (connectionString, rented) = OpenPoolWithRows(checkpointOnClose: true);

        Replace(Folder);

        ConnectionTests.Scalar(rented, "SELECT group_concat(x) FROM t").ShouldBe("1,2"); // the file it opened
        ConnectionTests.Exec(rented, "INSERT INTO t VALUES (3)").ShouldBe(1);

        SaverDbConnection.ClearPool(rented);
        rented.Dispose();

        // The final TRUNCATE checkpoint emptied the old -wal file, so none of its pages are read into the replacement.
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("100");
        PoolTests.Execute(connectionString, "INSERT INTO t VALUES (101)");
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("100,101");
        PoolTests.Scalar(connectionString, "PRAGMA integrity_check").ShouldBe("ok");
    }

    [Test]
    public void Without_Checkpoint_On_Close_a_replacement_is_read_as_replaced_once_the_old_wal_is_deleted_after_ClearPool()
    {
        var (connectionString, rented) = OpenPoolWithRows(checkpointOnClose: false);

        Replace(Folder);
        ConnectionTests.Exec(rented, "INSERT INTO t VALUES (3)").ShouldBe(1);
        SaverDbConnection.ClearPool(rented);
        rented.Dispose();

        // SQLite leaves the -wal of a moved database as it is; as the README says, delete it before opening the replacement.
        File.Exists(Folder.File() + "-wal").ShouldBeTrue();
        File.Delete(Folder.File() + "-wal");
        File.Delete(Folder.File() + "-shm");

        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("100");
        PoolTests.Scalar(connectionString, "PRAGMA integrity_check").ShouldBe("ok");
    }

    /// <summary>
    /// A restored backup, moved over the file after ClearPool while a connection rented before is still out, and a
    /// call of the data source's that reads the WAL status or checkpoints (a health check's, say) before that
    /// connection returns. Before, the call opened the checkpoint connection on the replacement with the old -wal
    /// file, which it then kept open (a connection was still out), and the final TRUNCATE checkpoint ran on it,
    /// copying the old database's pages into the replacement: the backup's row was gone (a review of the pool). Now
    /// the status comes from the -wal file's size, or the call refuses, and the checkpoint refuses.
    /// </summary>
    [Test]
    public void A_status_or_checkpoint_call_before_the_rented_connections_return_leaves_a_replacement_as_it_is([Values] bool statusReadBefore)
    {
        var (connectionString, rented) = OpenPoolWithRows(checkpointOnClose: true);
        var dataSource = SaverDataSource.GetShared(connectionString);
        if (statusReadBefore)
        {
            dataSource.GetWalStatus().WalFrames.ShouldBeGreaterThan(0);
        }

        SaverDbConnection.ClearPool(rented);
        Replace(Folder);

        if (statusReadBefore)
        {
            var status = dataSource.GetWalStatus(); // the old -wal file at the path, by its size
            $"{status.JournalMode} {status.WalFrames > 0}".ShouldBe("wal True");
        }
        else
        {
            Should.Throw<InvalidOperationException>(() => dataSource.GetWalStatus()).Message.ShouldContain("was cleared (Clear or ClearPool) while connections opened before were still in use");
        }

        Should.Throw<InvalidOperationException>(() => dataSource.Checkpoint()).Message.ShouldContain("a checkpoint would open a new connection to whatever file is at the path now");
        rented.Dispose();

        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("100");
        PoolTests.Scalar(connectionString, "PRAGMA integrity_check").ShouldBe("ok");
        dataSource.GetWalStatus().JournalMode.ShouldBe("wal"); // the connections are back: it opens again
    }

    /// <summary>A pool with one idle and one rented connection, and two rows still in the -wal file.</summary>
    private (string ConnectionString, SaverDbConnection Rented) OpenPoolWithRows(bool checkpointOnClose)
    {
        var connectionString = Folder.ConnectionString($"Max Pool Size=2;Wal Autocheckpoint=0;Checkpoint On Close={checkpointOnClose}");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)");
        var rented = new SaverDbConnection(connectionString);
        rented.Open();
        using (var idle = new SaverDbConnection(connectionString))
        {
            idle.Open();
        }

        SaverDataSource.GetShared(connectionString).Statistics.Total.ShouldBe(2);
        return (connectionString, rented);
    }

    /// <summary>Moves another database, holding one table t with the row 100, over the folder's test.db, as restoring a backup would.</summary>
    internal static void Replace(TempFolder folder)
    {
        var other = folder.File("other.db");
        using (var connection = new SqliteConnection($"Data Source={other};Pooling=False"))
        {
            connection.Open();
            using var create = connection.CreateCommand();
            create.CommandText = "CREATE TABLE t (x); INSERT INTO t VALUES (100)";
            create.ExecuteNonQuery();
        }

        File.Move(other, folder.File(), overwrite: true);
    }
}
