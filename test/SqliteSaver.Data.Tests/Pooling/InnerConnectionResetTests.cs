using System.Runtime.CompilerServices;
using Shouldly;
using SqliteSaver.Data.Tests.Faults;

namespace SqliteSaver.Data.Tests.Pooling;

/// <summary>
/// What a renter changes on <see cref="SaverDbConnection.InnerConnection"/> that would harm the next renter is set back
/// on return, or the connection is closed; and a text that merely names locking_mode keeps the connection (a bug hunt's
/// and a review's findings).
/// </summary>
public class InnerConnectionResetTests : DatabaseTest
{
    /// <summary>
    /// locking_mode = EXCLUSIVE set through InnerConnection: the pool kept the connection as its own setting, and its
    /// exclusive lock on the file with it, so other connections (the pool's, and other processes') could not write.
    /// </summary>
    [Test]
    public void Exclusive_locking_mode_set_through_InnerConnection_does_not_stay_with_the_file_locked()
    {
        var connectionString = Folder.ConnectionString("Journal Mode=Delete;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using (var renter = new SaverDbConnection(connectionString))
        {
            renter.Open();
            using var command = renter.InnerConnection.CreateCommand();
            command.CommandText = "PRAGMA locking_mode = EXCLUSIVE";
            command.ExecuteNonQuery();
            ConnectionTests.Exec(renter, "INSERT INTO t VALUES (1)");
        }

        using var other = WorkerProcess.Sql(Folder.File());
        other.Run("INSERT INTO t VALUES (2)").ShouldBe("ok 1");
        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "PRAGMA locking_mode").ShouldBe("normal");
    }

    /// <summary>
    /// Extension loading enabled on InnerConnection stayed for every later renter, whose SQL (injected text too)
    /// could then load any shared library with load_extension(). It is switched off again on return.
    /// </summary>
    [Test]
    public void Extension_loading_enabled_on_InnerConnection_does_not_reach_the_next_renter()
    {
        using var next = NextRenterAfterOneEnabledExtensions();
        Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => ConnectionTests.Scalar(next, $"SELECT load_extension('{Folder.File("none.so")}')"))
            .Message.ShouldContain("not authorized");
    }

    /// <summary>
    /// Switched off through Microsoft.Data.Sqlite, which keeps a flag of its own: a later renter's LoadExtension still
    /// works (a review found it refused "not authorized" when only SQLite's flag was switched off).
    /// </summary>
    [Test]
    public void A_later_renters_LoadExtension_is_not_refused_after_extension_loading_was_switched_off()
    {
        using var next = NextRenterAfterOneEnabledExtensions();
        Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => next.InnerConnection.LoadExtension(Folder.File("none.so"))).Message.ShouldNotContain("not authorized");
    }

    /// <summary>
    /// An initializer that loads an extension (Microsoft.Data.Sqlite then leaves the C API's loading on, SQL's off):
    /// a renter's InnerConnection use does not switch SQL's load_extension() on for later renters (a review found the
    /// reset did, setting back what it could read of the flag through EnableExtensions, which sets both), nor switch
    /// the C API's part off (a hunt's mutation that switched extension loading off after every such use).
    /// </summary>
    [Test]
    public void An_initializer_that_loaded_an_extension_does_not_get_SQL_load_extension_switched_on()
    {
        const int EnableLoadExtension = 1005; // the C API's part only, as LoadExtension leaves it
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1"))
            .UseConnectionInitializer(connection => SQLitePCL.raw.sqlite3_db_config(connection.Handle, EnableLoadExtension, 1, out _))
            .Build();
        using (var renter = dataSource.OpenConnection())
        {
            _ = renter.InnerConnection.DefaultTimeout;
        }

        using var next = dataSource.OpenConnection();
        Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => ConnectionTests.Scalar(next, $"SELECT load_extension('{Folder.File("none.so")}')"))
            .Message.ShouldContain("not authorized");
        SQLitePCL.raw.sqlite3_db_config(next.InnerConnection.Handle, EnableLoadExtension, -1, out int loadable);
        loadable.ShouldBe(1, "the C API's part the initializer switched on stays on (nor is it switched off)");
    }

    /// <summary>A progress handler that counts its calls in <paramref name="calls"/> and stops nothing.</summary>
    private static int CountCall(object calls)
    {
        Interlocked.Increment(ref ((StrongBox<int>)calls).Value);
        return 0;
    }

    /// <summary>The next renter of a pool's only connection, on which the renter before enabled extension loading through InnerConnection.</summary>
    private SaverDbConnection NextRenterAfterOneEnabledExtensions()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        using (var renter = new SaverDbConnection(connectionString))
        {
            renter.Open();
            renter.InnerConnection.EnableExtensions(true);
        }

        var next = new SaverDbConnection(connectionString);
        next.Open();
        return next;
    }

    /// <summary>
    /// A BEGIN sent as SQL on InnerConnection (no SqliteTransaction, nothing read yet: SQLite holds no lock, but the
    /// connection is out of autocommit) is rolled back on return, and the connection kept, not replaced: the next
    /// renter's write commits. Without the reset's rollback no test failed: the connection was closed instead (the
    /// return's own probe for a SqliteTransaction read inside the open BEGIN, and the check for a kept read snapshot
    /// then refused it), a reopen (and an initializer run) on every such return (a hunt's mutation).
    /// </summary>
    [Test]
    public void A_BEGIN_sent_as_SQL_on_InnerConnection_is_rolled_back_on_return_and_the_next_renters_write_commits()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        Microsoft.Data.Sqlite.SqliteConnection inner;
        using (var renter = new SaverDbConnection(connectionString))
        {
            renter.Open();
            inner = renter.InnerConnection;
            using var begin = inner.CreateCommand();
            begin.CommandText = "BEGIN";
            begin.ExecuteNonQuery();
            SQLitePCL.raw.sqlite3_get_autocommit(inner.Handle!).ShouldBe(0); // in a transaction SQLite has not begun on the file
        }

        using (var next = new SaverDbConnection(connectionString))
        {
            next.Open();
            next.InnerConnection.ShouldBeSameAs(inner); // rolled back, not replaced
            SQLitePCL.raw.sqlite3_get_autocommit(next.InnerConnection.Handle!).ShouldBe(1);
            ConnectionTests.Exec(next, "INSERT INTO t VALUES (1)").ShouldBe(1);
        }

        using var plain = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        plain.Open();
        using var count = plain.CreateCommand();
        count.CommandText = "SELECT count(*) FROM t";
        count.ExecuteScalar().ShouldBe(1L);
    }

    /// <summary>
    /// A database attached, or a TEMP table made, through InnerConnection, where no command's text shows it, does not
    /// reach the next renter: the connection is closed rather than handed on (the same physical connection is not).
    /// </summary>
    [TestCase("ATTACH")]
    [TestCase("CREATE TEMP TABLE")]
    public void What_a_renter_attached_or_made_TEMP_through_InnerConnection_does_not_reach_the_next_renter(string sql)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        Microsoft.Data.Sqlite.SqliteConnection inner;
        using (var renter = new SaverDbConnection(connectionString))
        {
            renter.Open();
            ConnectionTests.Exec(renter, "SELECT 1"); // a read only: nothing of the library's own may attach or make TEMP objects
            inner = renter.InnerConnection;
            using var command = inner.CreateCommand();
            command.CommandText = sql == "ATTACH" ? $"ATTACH '{Folder.File("aux.db")}' AS aux" : "CREATE TEMP TABLE scratch (x)";
            command.ExecuteNonQuery();
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "SELECT count(*) FROM pragma_database_list").ShouldBe(2L); // main and temp
        ConnectionTests.Scalar(next, "SELECT count(*) FROM temp.sqlite_master").ShouldBe(0L);
        next.InnerConnection.ShouldNotBeSameAs(inner);
    }

    /// <summary>
    /// A SqliteTransaction begun on InnerConnection that a COMMIT sent as SQL ended, never disposed: the connection is
    /// closed on return, its file too, though Microsoft.Data.Sqlite's first Close throws as it fails to roll back the
    /// transaction SQLite has ended (it forgets the transaction, and is closed again).
    /// </summary>
    [Test]
    public void A_connection_whose_SqliteTransaction_a_COMMIT_sent_as_SQL_ended_is_closed_with_its_file()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0");
        using (var renter = new SaverDbConnection(connectionString))
        {
            renter.Open();
            _ = renter.InnerConnection.BeginTransaction();
            using var commit = renter.InnerConnection.CreateCommand(); // in that transaction
            commit.CommandText = "COMMIT";
            commit.ExecuteNonQuery();
        }

        OpenFiles.Count(Folder.File()).ShouldBe(0);
    }

    /// <summary>Microsoft.Data.Sqlite's DefaultTimeout set on InnerConnection is set back to the connection string's.</summary>
    [Test]
    public void DefaultTimeout_set_on_InnerConnection_is_set_back_for_the_next_renter()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Default Timeout=7");
        using (var renter = new SaverDbConnection(connectionString))
        {
            renter.Open();
            renter.InnerConnection.DefaultTimeout = 1;
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.DefaultTimeout.ShouldBe(7);
    }

    /// <summary>
    /// A progress handler a renter set through InnerConnection (here one that counts its calls) is taken out on return,
    /// whether the library's own was in place (a call with a token put it there) or not: it is not called for the next
    /// renter's statements, on InnerConnection or through the library, on the same connection.
    /// </summary>
    [Test]
    public void A_progress_handler_set_on_InnerConnection_does_not_reach_the_next_renter([Values] bool libraryHandlerInPlace)
    {
        const string Counting = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) SELECT count(*) FROM n";
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        var calls = new StrongBox<int>();
        Microsoft.Data.Sqlite.SqliteConnection inner;
        using (var renter = new SaverDbConnection(connectionString))
        {
            renter.Open();
            if (libraryHandlerInPlace)
            {
                using var cancellation = new CancellationTokenSource();
                using var command = renter.CreateCommand();
                command.CommandText = Counting;
                command.ExecuteScalarAsync(cancellation.Token).GetAwaiter().GetResult().ShouldBe(1000L);
            }

            inner = renter.InnerConnection;
            SQLitePCL.raw.sqlite3_progress_handler(inner.Handle, 1, CountCall, calls);
        }

        var callsBefore = calls.Value;
        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.ShouldBeSameAs(inner);
        using (var command = next.InnerConnection.CreateCommand())
        {
            command.CommandText = Counting;
            command.ExecuteScalar().ShouldBe(1000L);
        }

        ConnectionTests.Scalar(next, Counting).ShouldBe(1000L);
        calls.Value.ShouldBe(callsBefore);
    }

    /// <summary>
    /// A text that names locking_mode without setting it keeps the connection pooled (before, it was replaced); one that
    /// holds what reads as such a PRAGMA, in a string too, still counts.
    /// </summary>
    [TestCase("INSERT INTO notes VALUES ('locking_mode = exclusive, read about it')")]
    [TestCase("SELECT * FROM pragma_locking_mode()")]
    [TestCase("PRAGMA locking_mode; SELECT 1 = 1")]
    public void A_text_that_names_locking_mode_without_setting_it_keeps_the_connection(string sql)
    {
        var opened = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1"))
            .UseConnectionInitializer(_ => Interlocked.Increment(ref opened))
            .Build();
        for (var i = 0; i < 3; i++)
        {
            using var connection = dataSource.OpenConnection();
            ConnectionTests.Exec(connection, "CREATE TABLE IF NOT EXISTS notes (x)");
            ConnectionTests.Scalar(connection, sql);
        }

        opened.ShouldBe(1);
    }
}
