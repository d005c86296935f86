using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using SqliteSaver.Data.Tests.Faults;
using SqliteSaver.Data.Wal;

namespace SqliteSaver.Data.Tests.Wal;

/// <summary>
/// A database file replaced or deleted under an open pool, not cleared: the pool's connections go on with the file
/// they opened, and the data source's checkpoint connection, which opens at its first tick, catch-up or status read,
/// must not open what is at the path by then with the -wal file they keep. Before, it did: a backup moved over the
/// file had the old database's pages copied into it (the pool's connections then found no table), and a deleted
/// database was created again (a bug hunt's findings).
/// </summary>
public class ReplacedDatabaseTests : DatabaseTest
{
    private const string Refusal = "was replaced or deleted while the pool's connections had it open";
    private const string Refused = "led to another database file as some of the data source's connections opened than as others did";

    [Test]
    public void A_tick_after_a_backup_is_moved_over_the_file_under_an_open_pool_leaves_the_backup_as_it_is()
    {
        var time = new FakeTimeProvider();
        var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=1")).UseTimeProvider(time).Build();
        var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        MovedFileTests.Replace(Folder);

        time.Advance(TimeSpan.FromSeconds(1));

        ConnectionTests.Scalar(rented, "SELECT group_concat(x) FROM t").ShouldBe("1,2");
        ClearAndFindTheBackupWhole(dataSource, rented);
    }

    [Test]
    public void A_catch_up_after_a_backup_is_moved_over_the_file_under_an_open_pool_leaves_the_backup_as_it_is()
    {
        var dataSource = SaverDataSource.Create(Folder.ConnectionString());
        var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        MovedFileTests.Replace(Folder);

        // The application goes on writing through the connection it holds, enough for a catch-up checkpoint.
        ConnectionTests.Exec(rented, "CREATE TABLE big (b); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 300) INSERT INTO big SELECT randomblob(4000) FROM c");
        Wait.Until(() => dataSource.Checkpointer.CatchUps >= 1 && !dataSource.Checkpointer.CatchUpPending);

        ClearAndFindTheBackupWhole(dataSource, rented);
    }

    [Test]
    public void A_tick_or_a_status_read_after_the_file_is_deleted_under_an_open_pool_does_not_create_it_again()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=1")).UseTimeProvider(time).Build();
        using var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        foreach (var file in Directory.GetFiles(Folder.Path))
        {
            File.Delete(file);
        }

        time.Advance(TimeSpan.FromSeconds(1));
        var statusRead = Record(() => dataSource.GetWalStatus());
        var checkpoint = Record(() => dataSource.Checkpoint());

        ConnectionTests.Exec(rented, "INSERT INTO t VALUES (2)").ShouldBe(1);
        Directory.GetFiles(Folder.Path).ShouldBeEmpty();
        statusRead.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(Refusal);
        checkpoint.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(Refusal);
    }

    /// <summary>
    /// The checkpoint connection opened (a status read, say) before the file was deleted or replaced: it has the old
    /// file, as the pool's connections do, and the data source still says the file is gone rather than report and
    /// checkpoint the old one. Before, only an opening asked, so a health check run once before stayed Healthy after
    /// `rm app.db*` (a bug hunt's finding).
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void Checkpoints_and_status_reads_refuse_after_the_file_is_replaced_even_when_the_checkpoint_connection_opened_before(bool deleted)
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=1")).UseTimeProvider(time).Build();
        using var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        dataSource.GetWalStatus().WalFileBytes.ShouldBeGreaterThan(0); // opens the checkpoint connection
        if (deleted)
        {
            foreach (var file in Directory.GetFiles(Folder.Path))
            {
                File.Delete(file);
            }
        }
        else
        {
            MovedFileTests.Replace(Folder);
        }

        time.Advance(TimeSpan.FromSeconds(1));
        var statusRead = Record(() => dataSource.GetWalStatus());
        var checkpoint = Record(() => dataSource.Checkpoint());

        statusRead.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(Refusal);
        checkpoint.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(Refusal);
        dataSource.LastCheckpointError.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(Refusal);
        ConnectionTests.Scalar(rented, "SELECT group_concat(x) FROM t").ShouldBe("1,2"); // the old file, as before
        dataSource.Clear();
        rented.Dispose();
        using var fresh = dataSource.OpenConnection();
        Record(() => dataSource.GetWalStatus()).ShouldBeNull();
    }

    [Test]
    public void Checkpoints_resume_on_the_replacement_once_the_pool_was_cleared_and_its_connections_are_back()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=1")).UseTimeProvider(time).Build();
        using (var rented = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
            MovedFileTests.Replace(Folder);
            time.Advance(TimeSpan.FromSeconds(1));
            dataSource.LastCheckpointError.ShouldNotBeNull();
            dataSource.Clear();
        }

        using var fresh = dataSource.OpenConnection();
        ConnectionTests.Exec(fresh, "INSERT INTO t VALUES (101)");
        time.Advance(TimeSpan.FromSeconds(1));

        dataSource.LastCheckpointError.ShouldBeNull();
        dataSource.LastCheckpointResult.ShouldNotBeNull().Busy.ShouldBeFalse();
        ConnectionTests.Scalar(fresh, "SELECT group_concat(x) FROM t").ShouldBe("100,101");
    }

    /// <summary>
    /// The Data Source goes through a symbolic link, repointed (to a new release's folder, say) while the pool's
    /// connections have the old target's file open, not cleared: the checkpoint connection, opening after that, would
    /// have the new target's file, so it checkpoints nothing of theirs and says so, and closes it again. Before, a
    /// TRUNCATE checkpoint answered "done" from the new file while the pool's -wal file kept every frame; and one left
    /// open there passed every test (a hunt).
    /// </summary>
    [Test]
    public void A_checkpoint_after_a_link_on_the_path_is_repointed_under_an_open_pool_refuses()
    {
        using var dataSource = OnALinkToV1();
        using var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        RepointTheLinkToV2();

        var checkpoint = Record(() => dataSource.Checkpoint(CheckpointMode.Truncate));
        var statusRead = Record(() => dataSource.GetWalStatus());

        checkpoint.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(Refused);
        statusRead.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(Refused);
        OpenFiles.Count(Path.Combine(Folder.Path, "v2", "app.db")).ShouldBe(0); // each checkpoint connection that opened there closed again
        new FileInfo(Path.Combine(Folder.Path, "v1", "app.db-wal")).Length.ShouldBeGreaterThan(0);
        ConnectionTests.Scalar(rented, "SELECT group_concat(x) FROM t").ShouldBe("1,2");

        dataSource.Clear();
        rented.Dispose();
        using var fresh = dataSource.OpenConnection();
        ConnectionTests.Exec(fresh, "CREATE TABLE v2 (x); INSERT INTO v2 VALUES (3)");
        dataSource.Checkpoint(CheckpointMode.Truncate).Busy.ShouldBeFalse(); // on the new target, once cleared
        new FileInfo(Path.Combine(Folder.Path, "v2", "app.db-wal")).Length.ShouldBe(0);
    }

    /// <summary>
    /// A link on the path is repointed and the pool cleared while a connection is still rented on the old target: only
    /// connections opened since the Clear are compared with the checkpoint connection's file, so the checkpoints resume on
    /// the new target at once.
    /// </summary>
    [Test]
    public void After_a_Clear_a_connection_rented_before_on_the_old_target_of_a_repointed_link_does_not_refuse_checkpoints()
    {
        using var dataSource = OnALinkToV1();
        using var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        RepointTheLinkToV2();
        dataSource.Clear();
        using var fresh = dataSource.OpenConnection();
        ConnectionTests.Exec(fresh, "CREATE TABLE v2 (x); INSERT INTO v2 VALUES (3)");

        dataSource.Checkpoint(CheckpointMode.Truncate).Busy.ShouldBeFalse();
        new FileInfo(Path.Combine(Folder.Path, "v2", "app.db-wal")).Length.ShouldBe(0);
        ConnectionTests.Scalar(rented, "SELECT group_concat(x) FROM t").ShouldBe("1,2"); // the old target, as before
    }

    /// <summary>
    /// The checkpoint connection is open (a status read, or any background tick) when a link on the path is repointed,
    /// and the pool then opens a connection on the new target: the checkpoints would be of the old file only, so they
    /// refuse. Before, a TRUNCATE checkpoint answered "done" while the new connection's -wal file kept its frames (a
    /// review's finding).
    /// </summary>
    [Test]
    public void A_checkpoint_after_the_pool_opened_a_connection_through_a_repointed_link_refuses()
    {
        using var dataSource = OnALinkToV1();
        using var first = dataSource.OpenConnection();
        ConnectionTests.Exec(first, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        dataSource.GetWalStatus(); // opens the checkpoint connection, on v1
        RepointTheLinkToV2();
        using var second = dataSource.OpenConnection(); // a new physical connection, on v2
        ConnectionTests.Exec(second, "CREATE TABLE u (x); INSERT INTO u VALUES (3)");

        Record(() => dataSource.Checkpoint(CheckpointMode.Truncate)).ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(Refused);
        Record(() => dataSource.GetWalStatus()).ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(Refused);
    }

    /// <summary>
    /// The database's folder is renamed and linked back from its old name: a checkpoint connection opened now has the
    /// same file as the pool's connections under another path SQLite gives, and checkpoints it. Before, the paths were
    /// compared as text, and checkpoints refused until the pool was cleared (a review's finding).
    /// </summary>
    [Test]
    public void A_folder_renamed_and_linked_back_from_its_old_name_is_the_same_file()
    {
        var data = Path.Combine(Folder.Path, "data");
        Directory.CreateDirectory(data);
        using var dataSource = SaverDataSource.Create($"Data Source={Path.Combine(data, "app.db")};Wal Autocheckpoint=0;Checkpoint Interval=0");
        using var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        Directory.Move(data, Path.Combine(Folder.Path, "data2"));
        Directory.CreateSymbolicLink(data, Path.Combine(Folder.Path, "data2"));

        dataSource.Checkpoint(CheckpointMode.Truncate).Busy.ShouldBeFalse();

        new FileInfo(Path.Combine(Folder.Path, "data2", "app.db-wal")).Length.ShouldBe(0);
    }

    /// <summary>A data source on {folder}/current/app.db, where current is a symbolic link to the folder v1 (v2 beside it).</summary>
    private SaverDataSource OnALinkToV1()
    {
        Directory.CreateDirectory(Path.Combine(Folder.Path, "v1"));
        Directory.CreateDirectory(Path.Combine(Folder.Path, "v2"));
        File.CreateSymbolicLink(Path.Combine(Folder.Path, "current"), Path.Combine(Folder.Path, "v1"));
        return SaverDataSource.Create($"Data Source={Path.Combine(Folder.Path, "current", "app.db")};Wal Autocheckpoint=0;Checkpoint Interval=0");
    }

    /// <summary>Points {folder}/current at v2 (see <see cref="OnALinkToV1"/>).</summary>
    private void RepointTheLinkToV2()
    {
        var current = Path.Combine(Folder.Path, "current");
        File.Delete(current);
        File.CreateSymbolicLink(current, Path.Combine(Folder.Path, "v2"));
    }

    private static Exception? Record(Func<object> call)
    {
        try
        {
            call();
            return null;
        }
        catch (Exception exception)
        {
            return exception;
        }
    }

    /// <summary>
    /// The pool's only connection is inside SQLite on another thread (an application function holds it there) when a
    /// checkpoint would open the checkpoint connection after a backup was moved over the file: no connection can say
    /// whether the file moved, so it opens nothing and says so. Before, "none could answer" counted as "not moved",
    /// and the backup got the old database's pages (a review's finding).
    /// </summary>
    [Test]
    public void A_checkpoint_while_every_pool_connection_is_inside_SQLite_opens_nothing()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=0"));
        var (rented, held, holding) = HeldInsideSqliteAsTheBackupIsMoved(dataSource);
        using var release = held;

        var checkpoint = Record(() => dataSource.Checkpoint());

        held.Release();
        holding.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        dataSource.Clear();
        rented.Dispose();
        dataSource.Dispose();
        Plain("SELECT group_concat(x) FROM t").ShouldBe("100");
        checkpoint.ShouldBeOfType<ConnectionsBusyException>().Message.ShouldContain("could not tell whether the database file at the path is still the one it has open");
    }

    /// <summary>
    /// CheckpointAsync's token also ends the 250 ms the checkpoint asks again whether the file moved while every pool
    /// connection is inside SQLite: it ends with OperationCanceledException carrying that token, not with
    /// ConnectionsBusyException once the 250 ms have passed. Before, a wait that looked at the token only to stop
    /// sleeping passed every test (a hunt).
    /// </summary>
    [Test]
    public async Task A_CheckpointAsync_asking_again_whether_the_file_moved_ends_with_its_token()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=0"));
        var (rented, held, holding) = HeldInsideSqliteAsTheBackupIsMoved(dataSource);
        using var release = held;
        using var cancellation = new CancellationTokenSource();

        var checkpoint = Task.Run(() => dataSource.CheckpointAsync(cancellation.Token));
        Wait.Until(() => WaitHandleMade(cancellation) || checkpoint.IsCompleted); // it waits on the token between its asks
        cancellation.Cancel();
        var exception = await Should.ThrowAsync<OperationCanceledException>(checkpoint);

        held.Release();
        holding.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        dataSource.Clear();
        rented.Dispose();
        exception.CancellationToken.ShouldBe(cancellation.Token);
    }

    /// <summary>
    /// A connection the pool opens after the move (all of its connections in use) has the new file, and cannot see the
    /// move; the one that can is inside SQLite on another thread: the checkpoint connection opens nothing. Before, the
    /// first connection that could answer decided, and the new one said "not moved" (a review's finding).
    /// </summary>
    [Test]
    public void A_connection_opened_after_the_move_does_not_answer_for_one_that_cannot_answer_now()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=0"));
        var (rented, held, holding) = HeldInsideSqliteAsTheBackupIsMoved(dataSource);
        using var release = held;
        var opened = dataSource.OpenConnection(); // on the replacement, with the old -wal file (README: the safe order)

        var checkpoint = Record(() => dataSource.Checkpoint());

        held.Release();
        holding.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        opened.Dispose();
        rented.Dispose();
        checkpoint.ShouldBeOfType<ConnectionsBusyException>();

        // The connection opened after the move is the pool's own hazard (README): closing, SQLite checkpoints its
        // file, the replacement, with the old -wal file. Nothing here can keep the backup whole.
    }

    /// <summary>
    /// A Clear, then the move, with a connection rented before the Clear still out (its -wal file emptied first, as
    /// the safe order needs no old frames read into the replacement), then a connection opened since: only that one is
    /// asked whether the file moved, so the checkpoint connection opens, as the refusal's message promises once the
    /// pool is cleared. Before, the connection rented before the Clear was asked too, and the refusal went on (a
    /// review's finding).
    /// </summary>
    [Test]
    public void After_a_Clear_only_connections_opened_since_are_asked_whether_the_file_moved()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=0"));
        using var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        dataSource.Checkpoint(CheckpointMode.Truncate).Busy.ShouldBeFalse();
        dataSource.Clear();
        MovedFileTests.Replace(Folder);
        using var fresh = dataSource.OpenConnection();
        ConnectionTests.Scalar(fresh, "SELECT group_concat(x) FROM t").ShouldBe("100");

        Record(() => dataSource.GetWalStatus()).ShouldBeNull();
        ConnectionTests.Scalar(rented, "SELECT group_concat(x) FROM t").ShouldBe("1,2"); // the old file, as before
    }

    /// <summary>
    /// Rents the pool's connection, writes rows 1 and 2, keeps it inside SQLite on another thread (in <c>hold()</c>),
    /// then moves the backup over the file.
    /// </summary>
    private (SaverDbConnection Rented, HeldFunction Held, Task<object?> Holding) HeldInsideSqliteAsTheBackupIsMoved(SaverDataSource dataSource)
    {
        var rented = dataSource.OpenConnection();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        var held = new HeldFunction(rented);
        var holding = Task.Factory.StartNew(() => ConnectionTests.Scalar(rented, "SELECT hold()"), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        held.Holding.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        MovedFileTests.Replace(Folder);
        return (rented, held, holding);
    }

    /// <summary>
    /// Clears the pool, then closes the rented connection and the data source: the backup moved over the file must be
    /// whole, and the background checkpoints must have recorded the refusal.
    /// </summary>
    private void ClearAndFindTheBackupWhole(SaverDataSource dataSource, SaverDbConnection rented)
    {
        var error = dataSource.LastCheckpointError;
        dataSource.Clear();
        rented.Dispose();
        dataSource.Dispose();
        Plain("PRAGMA integrity_check").ShouldBe("ok");
        Plain("SELECT group_concat(x) FROM t").ShouldBe("100");
        error.ShouldBeOfType<InvalidOperationException>().Message.ShouldContain(Refusal);
    }

    private object? Plain(string sql)
    {
        using var connection = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    /// <summary>
    /// Whether the WaitHandle of <paramref name="source"/>'s token has been made: the checkpoint's wait between its asks
    /// makes it. Read from the source's private field, as asking through the public member would make it.
    /// </summary>
    private static bool WaitHandleMade(CancellationTokenSource source)
        => typeof(CancellationTokenSource).GetField("_kernelEvent", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!
            .GetValue(source) is not null;
}
