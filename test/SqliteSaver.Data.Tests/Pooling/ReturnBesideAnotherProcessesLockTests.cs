using Shouldly;
using SqliteSaver.Data.Tests.Faults;

namespace SqliteSaver.Data.Tests.Pooling;

/// <summary>
/// Returning a connection whose renter may have set a PRAGMA, in a rollback-journal mode, while another process holds
/// the database locked (its commit, or here BEGIN EXCLUSIVE): setting <c>max_page_count</c> back needs a read of the
/// file, so Close waited the whole Busy Timeout for that lock, then closed the connection as one SQLite failed to
/// reset, where nothing about it was wrong (twice the Busy Timeout after InnerConnection was used, whose PRAGMAs are
/// read again; a bug hunt's finding). Now max_page_count is set back only after a command that names it.
/// </summary>
public class ReturnBesideAnotherProcessesLockTests : DatabaseTest
{
    [Test]
    public void A_connection_whose_renter_may_have_set_a_pragma_goes_back_to_the_pool_without_waiting_for_the_lock(
        [Values("Delete", "Truncate")] string mode,
        [Values("PRAGMA foreign_keys = OFF", "SELECT count(*) FROM pragma_table_info('t')", "InnerConnection")] string use)
    {
        var connectionString = Folder.ConnectionString($"Journal Mode={mode};Max Pool Size=1;Checkpoint Interval=0;Busy Timeout=30000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var dataSource = SaverDataSource.GetShared(connectionString);
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        if (use == "InnerConnection")
        {
            using var inner = connection.InnerConnection.CreateCommand();
            inner.CommandText = "SELECT count(*) FROM t";
            inner.ExecuteScalar();
        }
        else
        {
            ConnectionTests.Scalar(connection, use);
        }

        using var other = WorkerProcess.Sql(Folder.File());
        other.Run("BEGIN EXCLUSIVE").ShouldStartWith("ok");

        var closing = Task.Run(connection.Close);

        closing.Wait(TimeSpan.FromSeconds(20)).ShouldBeTrue("Close waited for the other process's lock (Busy Timeout 30 s)");
        dataSource.Statistics.Total.ShouldBe(1); // kept, not closed as one SQLite failed to reset
    }

    /// <summary>
    /// A renter that set max_page_count still has it set back: by a command, and through InnerConnection when a
    /// command set another PRAGMA (the review of the change above found that one kept).
    /// </summary>
    [Test]
    public void A_max_page_count_a_renter_set_is_set_back([Values] bool throughInnerConnection)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        object? initial;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            initial = ConnectionTests.Scalar(connection, "PRAGMA max_page_count");
            if (throughInnerConnection)
            {
                using var inner = connection.InnerConnection.CreateCommand();
                inner.CommandText = "PRAGMA max_page_count = 1000";
                inner.ExecuteNonQuery();
                ConnectionTests.Scalar(connection, "PRAGMA foreign_keys = OFF");
            }
            else
            {
                ConnectionTests.Scalar(connection, "PRAGMA max_page_count = 1000");
            }
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "PRAGMA max_page_count").ShouldBe(initial);
    }

    /// <summary>
    /// A max_page_count set through InnerConnection alone stays, as what a renter sets there does, and is what a later
    /// renter's is set back to: it is read again, without waiting for a lock, as such a connection goes back (a hunt's
    /// mutation that read it only when waiting set the later renter's back to the one before).
    /// </summary>
    [Test]
    public void A_max_page_count_set_through_InnerConnection_alone_is_what_a_later_renters_is_set_back_to()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            using var inner = connection.InnerConnection.CreateCommand();
            inner.CommandText = "PRAGMA max_page_count = 1000";
            inner.ExecuteNonQuery();
        }

        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            ConnectionTests.Scalar(connection, "PRAGMA max_page_count = 2000").ShouldBe(2000L);
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "PRAGMA max_page_count").ShouldBe(1000L);
    }

    /// <summary>
    /// A renter switched the rollback-journal mode: setting it back from PERSIST or TRUNCATE deletes the journal file,
    /// which needs a lock another process holds. Close waited the whole Busy Timeout for it (a bug hunt's finding); now
    /// it does not wait, and the connection is closed when the lock is held, so the next renter has the pool's mode.
    /// </summary>
    [Test]
    public void A_connection_whose_renter_switched_the_journal_mode_goes_back_without_waiting_for_the_lock(
        [Values("Delete", "Memory")] string poolMode, [Values("PERSIST", "TRUNCATE")] string renterMode)
    {
        var connectionString = Folder.ConnectionString($"Journal Mode={poolMode};Max Pool Size=1;Checkpoint Interval=0;Busy Timeout=30000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        ConnectionTests.Exec(connection, $"PRAGMA journal_mode = {renterMode}");
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)"); // leaves a journal file
        using var other = WorkerProcess.Sql(Folder.File());
        other.Run("BEGIN EXCLUSIVE").ShouldStartWith("ok");

        var closing = Task.Run(connection.Close);

        var closed = closing.Wait(TimeSpan.FromSeconds(20));
        other.Run("ROLLBACK");
        closing.Wait(TimeSpan.FromSeconds(60));
        closed.ShouldBeTrue("Close waited for the other process's lock (Busy Timeout 30 s)");
        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "PRAGMA journal_mode").ShouldBe(poolMode.ToLowerInvariant());
    }

    /// <summary>
    /// A renter set locking_mode = EXCLUSIVE and wrote: set back to NORMAL, the idle connection still held the file
    /// locked, until it next read it, so other connections, in other processes too, could neither read nor write (a
    /// bug hunt's finding). The connection is now closed rather than handed on.
    /// </summary>
    [TestCase("Delete", "PRAGMA locking_mode = EXCLUSIVE")]
    [TestCase("Truncate", "PRAGMA locking_mode = EXCLUSIVE")]
    [TestCase("Wal", "PRAGMA locking_mode = EXCLUSIVE")]
    [TestCase("Delete", "SELECT '--'; PRAGMA/**/locking_mode = EXCLUSIVE")] // a review: the comment marker in the string hid it
    [TestCase("Delete", "PRAGMA \"main\" . locking_mode -- c\n = EXCLUSIVE")]
    public void A_connection_whose_renter_set_exclusive_locking_mode_does_not_keep_the_file_locked(string mode, string exclusive)
    {
        var connectionString = Folder.ConnectionString($"Journal Mode={mode};Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using (var renter = new SaverDbConnection(connectionString))
        {
            renter.Open();
            ConnectionTests.Exec(renter, exclusive);
            ConnectionTests.Exec(renter, "INSERT INTO t VALUES (1)");
        }

        using var other = WorkerProcess.Sql(Folder.File());
        other.Run("SELECT count(*) FROM t").ShouldBe("ok 1");
        other.Run("INSERT INTO t VALUES (2)").ShouldBe("ok 1");
        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "PRAGMA locking_mode").ShouldBe("normal");
    }
}
