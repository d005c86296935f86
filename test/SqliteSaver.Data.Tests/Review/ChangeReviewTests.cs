using Dapper;
using Microsoft.Data.Sqlite;
using Shouldly;
using SQLitePCL;

namespace SqliteSaver.Data.Tests.Review;

public class ChangeReviewTests : DatabaseTest
{
    /// <summary>
    /// A connection initializer may install a commit hook of its own on the physical connection (SQLite keeps one per
    /// connection, and the initializer runs after PhysicalConnection installed its own). It replaces the hook that
    /// counts commits, so a unit of work whose batch committed part of its work ("COMMIT; BEGIN") is run again after
    /// a busy error and that part is applied twice.
    /// </summary>
    [Test]
    public void A_commit_hook_set_by_the_connection_initializer_does_not_hide_a_COMMIT_sent_as_SQL()
    {
        var hookCalls = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString())
            .UseConnectionInitializer(sqlite => raw.sqlite3_commit_hook(sqlite.Handle, _ => { hookCalls++; return 0; }, null))
            .Build();
        using var connection = dataSource.OpenConnection();
        connection.Execute("CREATE TABLE t (x)");
        var attempts = 0;

        void Work(SaverDbTransaction transaction)
        {
            attempts++;
            connection.Execute("INSERT INTO t VALUES (1)", transaction: transaction);
            connection.Execute("COMMIT; BEGIN", transaction: transaction); // commits the insert above
            connection.ExecuteScalar<long>("SELECT count(*) FROM t", transaction: transaction); // the snapshot starts
            if (attempts == 1)
            {
                using var other = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
                other.Open();
                other.Execute("INSERT INTO t VALUES (100)"); // makes that snapshot stale
            }

            connection.Execute("INSERT INTO t VALUES (2)", transaction: transaction); // SQLITE_BUSY_SNAPSHOT
        }

        var error = Catch(() => connection.RunInTransaction(Work, deferred: true));

        hookCalls.ShouldBeGreaterThan(0); // the initializer's hook runs
        connection.ExecuteScalar<long>("SELECT count(*) FROM t WHERE x = 1").ShouldBe(1L); // applied once, not twice
        attempts.ShouldBe(1);
        error.ShouldBeOfType<InvalidOperationException>();
    }

    /// <summary>
    /// The pool key decodes a file: URI's path with Uri.UnescapeDataString, which leaves an escape that is no UTF-8
    /// ("%FF") as it is, while SQLite decodes it to the byte 0xFF. So "file:/dir/%FF.db" (the file named by byte 0xFF)
    /// and "file:/dir/%25FF.db" (the file named "%FF.db") get one pool key, and the first one's pool serves the other
    /// its file. Here "%FF.db" exists and the byte-0xFF file does not: opening that one with mode=rw must fail.
    /// </summary>
    [Test]
    public void File_URIs_naming_different_files_through_an_undecodable_escape_do_not_share_a_pool()
    {
        using (var create = new SqliteConnection($"Data Source={Folder.File("%FF.db")};Pooling=False"))
        {
            create.Open();
            create.Execute("CREATE TABLE t (x)");
        }

        using var literal = new SaverDbConnection($"Data Source=file:{Folder.Path}/%25FF.db?mode=rw");
        literal.Open();
        literal.ExecuteScalar<long>("SELECT count(*) FROM t").ShouldBe(0L);

        using var byteFF = new SaverDbConnection($"Data Source=file:{Folder.Path}/%FF.db?mode=rw");
        Should.Throw<SqliteException>(() => byteFF.Open()).SqliteErrorCode.ShouldBe(14); // SQLITE_CANTOPEN: no such file
    }

    /// <summary>
    /// The pool key takes the path of a file: URI as Path.GetFullPath spells it, removing "dir/.." lexically, while
    /// SQLite follows a symbolic link before it applies "..". So "file:/f/link/../a.db", which SQLite opens as
    /// /f/sub/a.db (link points to /f/sub/inner), shares a pool with "file:/f/a.db", a different file, and is served it.
    /// </summary>
    [Test]
    public void A_file_URI_whose_dot_dot_follows_a_symbolic_link_does_not_share_a_pool_with_another_file()
    {
        var inner = Directory.CreateDirectory(Path.Combine(Folder.Path, "sub", "inner")).FullName;
        Directory.CreateSymbolicLink(Path.Combine(Folder.Path, "link"), inner);
        using (var direct = new SaverDbConnection($"Data Source=file:{Folder.File("a.db")}"))
        {
            direct.Open();
            direct.Execute("CREATE TABLE t (x)");
        }

        using var viaLink = new SaverDbConnection($"Data Source=file:{Folder.Path}/link/../a.db");
        viaLink.Open();

        // Microsoft.Data.Sqlite (and SQLite) open the file under sub, a new and empty database.
        viaLink.ExecuteScalar<long>("SELECT count(*) FROM sqlite_master").ShouldBe(0L);
        File.Exists(Path.Combine(Folder.Path, "sub", "a.db")).ShouldBeTrue();
    }

    /// <summary>
    /// SQLite refuses a file: URI whose authority is neither empty nor localhost, and takes "FILE:" (upper case) for no
    /// URI, so Microsoft.Data.Sqlite cannot open either spelling. The pool key drops the authority and the scheme's
    /// case, so such a string shares a pool with the plain "file:" URI of the same path, and whichever comes first
    /// decides for both: opened first, it makes the correct URI fail; opened second, it is served the file.
    /// </summary>
    [TestCase("file://otherhost")]
    [TestCase("FILE:")]
    public void A_file_URI_SQLite_refuses_does_not_share_a_pool_with_the_one_it_opens(string prefix)
    {
        var refused = $"Data Source={prefix}{Folder.File()}";
        using (var first = new SaverDbConnection(refused))
        {
            Should.Throw<SqliteException>(() => first.Open()); // as Microsoft.Data.Sqlite refuses it
        }

        using var correct = new SaverDbConnection($"Data Source=file:{Folder.File()}");
        Should.NotThrow(() => correct.Open());
        correct.Execute("CREATE TABLE t (x)");
        SaverDbConnection.ClearAllPools();

        using var again = new SaverDbConnection(refused);
        Should.Throw<SqliteException>(() => again.Open());
    }

    /// <summary>
    /// The docs of RunInTransaction (and the README) say a unit of work that rolls its transaction back itself, by the
    /// transaction's methods or by SQL, and then meets SQLITE_BUSY is not run again (InvalidOperationException). A
    /// "ROLLBACK; BEGIN" batch is neither seen (the commit hook only counts commits) nor refused: the unit of work is
    /// run again and RunInTransaction returns as if nothing happened.
    /// </summary>
    [Test]
    public void A_unit_of_work_that_rolls_back_by_SQL_and_begins_again_is_not_run_again_after_a_busy_error()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        connection.Execute("CREATE TABLE t (x)");
        var attempts = 0;

        void Work(SaverDbTransaction transaction)
        {
            attempts++;
            connection.Execute("INSERT INTO t VALUES (1)", transaction: transaction);
            connection.Execute("ROLLBACK; BEGIN", transaction: transaction); // rolls the insert above back
            connection.ExecuteScalar<long>("SELECT count(*) FROM t", transaction: transaction); // the snapshot starts
            if (attempts == 1)
            {
                using var other = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
                other.Open();
                other.Execute("INSERT INTO t VALUES (100)"); // makes that snapshot stale
            }

            connection.Execute("INSERT INTO t VALUES (2)", transaction: transaction); // SQLITE_BUSY_SNAPSHOT
        }

        var error = Catch(() => connection.RunInTransaction(Work, deferred: true));

        attempts.ShouldBe(1);
        error.ShouldBeOfType<InvalidOperationException>();
    }

    private static Exception? Catch(Action action)
    {
        try
        {
            action();
            return null;
        }
        catch (Exception error)
        {
            return error;
        }
    }
}
