using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Shouldly;

namespace SqliteSaver.Data.Tests.Wal;

/// <summary>
/// A database file replaced or deleted under an open pool: the pool's connections go on with the file they opened,
/// and the data source's own checkpoints must too, never opening what is at the path by then with the old -wal file.
/// The checkpointer used to open its connection at its first tick or catch-up after the pool's first open.
/// </summary>
public class ReplacedDatabaseTests : DatabaseTest
{
    [Test]
    public void A_tick_after_a_backup_is_moved_over_the_file_under_an_open_pool_leaves_the_backup_as_it_is()
    {
        var time = new FakeTimeProvider();
        var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=1")).UseTimeProvider(time).Build();
        var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        CheckpointerOpened(dataSource);
        MoveBackupOverTheFile();

        time.Advance(TimeSpan.FromSeconds(1));

        // Before: the tick's connection read the backup with the old -wal file and copied its pages into the backup,
        // and the rented connection found no table t.
        ConnectionTests.Scalar(rented, "SELECT group_concat(x) FROM t").ShouldBe("1,2");
        dataSource.Clear();
        rented.Dispose();
        dataSource.Dispose();
        Plain("PRAGMA integrity_check").ShouldBe("ok");
        Plain("SELECT group_concat(x) FROM t").ShouldBe("100");
    }

    [Test]
    public void A_catch_up_after_a_backup_is_moved_over_the_file_under_an_open_pool_leaves_the_backup_as_it_is()
    {
        var dataSource = SaverDataSource.Create(Folder.ConnectionString());
        var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        CheckpointerOpened(dataSource);
        MoveBackupOverTheFile();

        // The application goes on writing through the connection it holds, enough for a catch-up checkpoint.
        ConnectionTests.Exec(rented, "CREATE TABLE big (b); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300) INSERT INTO big SELECT randomblob(4000) FROM c");
        Wait.Until(() => dataSource.Checkpointer.CatchUps >= 1 && !dataSource.Checkpointer.CatchUpPending);

        dataSource.Clear();
        rented.Dispose();
        dataSource.Dispose();
        Plain("PRAGMA integrity_check").ShouldBe("ok");
        Plain("SELECT group_concat(x) FROM t").ShouldBe("100");
    }

    [Test]
    public void A_tick_after_the_file_is_deleted_under_an_open_pool_does_not_create_it_again()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=1")).UseTimeProvider(time).Build();
        using var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        CheckpointerOpened(dataSource);
        foreach (var file in Directory.GetFiles(Folder.Path))
        {
            File.Delete(file);
        }

        time.Advance(TimeSpan.FromSeconds(1));

        ConnectionTests.Exec(rented, "INSERT INTO t VALUES (2)").ShouldBe(1);
        Directory.GetFiles(Folder.Path).ShouldBeEmpty();
    }

    /// <summary>
    /// Waits, up to a generous bound, for the checkpointer to open its connection on a pool thread as the pool opened
    /// one; goes on without it after that, so that a checkpointer that would open it later shows what that does.
    /// </summary>
    private static void CheckpointerOpened(SaverDataSource dataSource)
        => SpinWait.SpinUntil(() => dataSource.Checkpointer.ConnectionOpen, TimeSpan.FromSeconds(10));

    /// <summary>Moves a database holding one table t with the row 100 over the test's database file.</summary>
    private void MoveBackupOverTheFile()
    {
        var backup = Folder.File("backup.db");
        using (var connection = new SqliteConnection($"Data Source={backup};Pooling=False"))
        {
            connection.Open();
            using var create = connection.CreateCommand();
            create.CommandText = "CREATE TABLE t (x); INSERT INTO t VALUES (100)";
            create.ExecuteNonQuery();
        }

        File.Move(backup, Folder.File(), overwrite: true);
    }

    private object? Plain(string sql)
    {
        using var connection = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }
}
