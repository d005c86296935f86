using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Runtime.CompilerServices;
using Dapper;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests;

public class ConnectionTests : DatabaseTest
{
    [Test]
    public void Pragmas_from_the_connection_string_are_set_on_a_rented_connection()
    {
        var connectionString = Folder.ConnectionString(
            "Busy Timeout=1234;Synchronous=Full;Cache Size=-4096;Mmap Size=1048576;Temp Store=Memory;"
            + "Journal Size Limit=2097152;Wal Autocheckpoint=500;Foreign Keys=true;Recursive Triggers=true");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();

        Pragma(connection, "journal_mode").ShouldBe("wal");
        Pragma(connection, "busy_timeout").ShouldBe(1234L);
        Pragma(connection, "synchronous").ShouldBe(2L);
        Pragma(connection, "cache_size").ShouldBe(-4096L);
        Pragma(connection, "mmap_size").ShouldBe(1048576L);
        Pragma(connection, "temp_store").ShouldBe(2L);
        Pragma(connection, "journal_size_limit").ShouldBe(2097152L);
        Pragma(connection, "wal_autocheckpoint").ShouldBe(500L);
        Pragma(connection, "foreign_keys").ShouldBe(1L);
        Pragma(connection, "recursive_triggers").ShouldBe(1L);
    }

    /// <summary>
    /// Foreign Keys=False turns off what the bundled SQLite turns on by default, and Default Timeout reaches the
    /// Microsoft.Data.Sqlite connection underneath, whose own commands take it as theirs.
    /// </summary>
    [Test]
    public void Foreign_Keys_false_and_Default_Timeout_reach_the_inner_connection()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString("Foreign Keys=False;Default Timeout=7"));
        connection.Open();

        Pragma(connection, "foreign_keys").ShouldBe(0L);
        connection.InnerConnection.DefaultTimeout.ShouldBe(7);
    }

    [Test]
    public void Default_pragmas_are_WAL_normal_sync_and_a_five_second_busy_timeout()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();

        Pragma(connection, "journal_mode").ShouldBe("wal");
        Pragma(connection, "busy_timeout").ShouldBe(5000L);
        Pragma(connection, "synchronous").ShouldBe(1L);
        Pragma(connection, "journal_size_limit").ShouldBe(64L * 1024 * 1024);
        Pragma(connection, "wal_autocheckpoint").ShouldBe(1000L);
    }

    [Test]
    public void Pragmas_are_applied_once_per_physical_connection_not_on_every_open()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=1234");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        SQLitePCL.raw.sqlite3_busy_timeout(connection.InnerConnection.Handle, 77);
        Pragma(connection, "busy_timeout").ShouldBe(77L); // reading a PRAGMA sets nothing
        connection.Close();

        connection.Open();

        Pragma(connection, "busy_timeout").ShouldBe(77L);
    }

    [Test]
    public void Pragmas_of_the_connection_string_that_a_renter_changed_are_set_again_before_the_next_renter()
    {
        var connectionString = Folder.ConnectionString(
            "Max Pool Size=1;Busy Timeout=1234;Synchronous=Full;Foreign Keys=true;Recursive Triggers=true;Cache Size=-4096;"
            + "Mmap Size=1048576;Temp Store=Memory;Journal Size Limit=2097152;Wal Autocheckpoint=500");
        SqliteConnection inner;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            inner = connection.InnerConnection;
            Exec(connection, "PRAGMA foreign_keys = OFF; PRAGMA synchronous = OFF; PRAGMA busy_timeout = 1; PRAGMA recursive_triggers(0)");
            Exec(connection, "PRAGMA cache_size = 10; PRAGMA mmap_size = 0; PRAGMA temp_store = FILE; PRAGMA journal_size_limit = -1; PRAGMA wal_autocheckpoint = 0");
            Pragma(connection, "foreign_keys").ShouldBe(0L);
            Pragma(connection, "wal_autocheckpoint").ShouldBe(0L);
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();

        next.InnerConnection.ShouldBeSameAs(inner); // set again, not replaced
        Pragma(next, "foreign_keys").ShouldBe(1L);
        Pragma(next, "synchronous").ShouldBe(2L);
        Pragma(next, "busy_timeout").ShouldBe(1234L);
        Pragma(next, "recursive_triggers").ShouldBe(1L);

        // Every other PRAGMA of the connection string too (a hunt found these five untested: a renter's
        // wal_autocheckpoint = 0 kept, say, switched SQLite's automatic checkpoints off for every later renter).
        Pragma(next, "cache_size").ShouldBe(-4096L);
        Pragma(next, "mmap_size").ShouldBe(1048576L);
        Pragma(next, "temp_store").ShouldBe(2L);
        Pragma(next, "journal_size_limit").ShouldBe(2097152L);
        Pragma(next, "wal_autocheckpoint").ShouldBe(500L);
    }

    [Test]
    public void Pragmas_that_change_results_a_renter_set_are_set_back_before_the_next_renter()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT)");
        SqliteConnection inner;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            inner = connection.InnerConnection;
            var pages = (long)Pragma(connection, "page_count")!;
            Exec(connection, $"PRAGMA short_column_names = 0; PRAGMA full_column_names = 1; PRAGMA count_changes = 1; PRAGMA max_page_count = {pages}; PRAGMA legacy_alter_table = 1");
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();

        next.InnerConnection.ShouldBeSameAs(inner);
        Exec(next, "INSERT INTO person (name) VALUES ('Ada')").ShouldBe(1); // room again, and a plain count of changes
        using var command = next.CreateCommand();
        command.CommandText = "SELECT id, name FROM person";
        using var reader = command.ExecuteReader();
        reader.GetName(1).ShouldBe("name"); // not person.name
        Pragma(next, "legacy_alter_table").ShouldBe(0L);
    }

    /// <summary>
    /// PRAGMAs that loosen what SQLite checks, set by a renter (a data fix, a migration), are set back before the next
    /// renter: ignore_check_constraints left on let every later renter write rows its CHECK constraints refuse, and no
    /// test would have caught a set-back list without it (a hunt's mutation); writable_schema and trusted_schema likewise.
    /// </summary>
    [Test]
    public void Pragmas_that_loosen_checks_a_renter_set_are_set_back_before_the_next_renter()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE priced (price INTEGER CHECK (price >= 0))");
        SqliteConnection inner;
        long trustedSchema;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            inner = connection.InnerConnection;
            trustedSchema = (long)Pragma(connection, "trusted_schema")!;
            Exec(connection, $"PRAGMA ignore_check_constraints = 1; PRAGMA writable_schema = 1; PRAGMA trusted_schema = {1 - trustedSchema}");
            Exec(connection, "INSERT INTO priced VALUES (-1)").ShouldBe(1); // allowed for this renter, as it asked
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();

        next.InnerConnection.ShouldBeSameAs(inner); // set back, not replaced
        Should.Throw<SqliteException>(() => Exec(next, "INSERT INTO priced VALUES (-2)")).SqliteErrorCode.ShouldBe(19); // SQLITE_CONSTRAINT
        Pragma(next, "ignore_check_constraints").ShouldBe(0L);
        Pragma(next, "writable_schema").ShouldBe(0L);
        Pragma(next, "trusted_schema").ShouldBe(trustedSchema);
    }

    /// <summary>
    /// Each connection setting a renter changed (here from its value to 0 or 1) has its value again for the next renter,
    /// on the same connection: the settings of the list the pool sets back that no other test changes (a hunt found
    /// any one of them could be dropped from that list with every test passing).
    /// </summary>
    [TestCase("fullfsync")]
    [TestCase("checkpoint_fullfsync")]
    [TestCase("cache_spill")]
    [TestCase("automatic_index")]
    [TestCase("reverse_unordered_selects")]
    [TestCase("cell_size_check")]
    [TestCase("analysis_limit")]
    [TestCase("threads")]
    [TestCase("read_uncommitted")]
    [TestCase("short_column_names")]
    [TestCase("full_column_names")]
    [TestCase("count_changes")]
    [TestCase("empty_result_callbacks")]
    public void A_connection_setting_a_renter_changed_is_set_back_before_the_next(string pragma)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        SqliteConnection inner;
        long original;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            inner = connection.InnerConnection;
            original = (long)Pragma(connection, pragma)!;
            var changed = original == 0 ? 1 : 0;
            Exec(connection, $"PRAGMA {pragma} = {changed}");
            Pragma(connection, pragma).ShouldBe((long)changed);
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.ShouldBeSameAs(inner);
        Pragma(next, pragma).ShouldBe(original);
    }

    [TestCase("PRAGMA auto_vacuum = FULL", "auto_vacuum", 0L)]
    [TestCase("PRAGMA page_size = 8192", "page_size", 4096L)]
    public void A_file_setting_a_renter_left_for_the_next_VACUUM_does_not_reach_the_next_renters_VACUUM(string set, string pragma, long kept)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Journal Mode=Delete");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            Exec(connection, "CREATE TABLE t (x)");
            Exec(connection, set); // on a database with tables SQLite only notes it for the connection's next VACUUM
            Pragma(connection, pragma).ShouldBe(kept);
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        Exec(next, "VACUUM");
        Pragma(next, pragma).ShouldBe(kept);
    }

    [Test]
    public void The_next_renter_starts_with_last_insert_rowid_0_as_on_a_new_connection()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            Exec(connection, "CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (4242)");
            Scalar(connection, "SELECT last_insert_rowid()").ShouldBe(4242L);
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        Exec(next, "INSERT OR IGNORE INTO t VALUES (4242)").ShouldBe(0);
        Scalar(next, "SELECT last_insert_rowid()").ShouldBe(0L); // not the previous renter's row
    }

    [Test]
    public void A_connection_that_may_have_had_case_sensitive_like_set_is_not_handed_on([Values] bool prepareOnly)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        SqliteConnection inner;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            inner = connection.InnerConnection;
            using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA case_sensitive_like = 1"; // SQLite cannot report it, so it cannot be set back
            if (prepareOnly)
            {
                command.Prepare(); // SQLite sets it as it prepares it
            }
            else
            {
                command.ExecuteNonQuery();
            }

            Scalar(connection, "SELECT 'a' LIKE 'A'").ShouldBe(0L);
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();

        next.InnerConnection.ShouldNotBeSameAs(inner);
        Scalar(next, "SELECT 'a' LIKE 'A'").ShouldBe(1L);
    }

    private string Wal => Folder.File() + "-wal";

    [Test]
    public void A_temp_schema_PRAGMA_a_renter_set_does_not_reach_the_next_renter()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1"));
        object? journalMode, cacheSize;
        using (var connection = dataSource.OpenConnection())
        {
            journalMode = Pragma(connection, "temp.journal_mode");
            cacheSize = Pragma(connection, "temp.cache_size");
            // PRAGMAs a renter sets, as the README's migration example does with foreign_keys, on the temp schema.
            Exec(connection, "PRAGMA temp.max_page_count = 2");
            Exec(connection, "PRAGMA temp.journal_mode = OFF");
            Exec(connection, "PRAGMA temp.cache_size = 1");
        }

        using (var connection = dataSource.OpenConnection())
        {
            // The next renter's temporary table may hold no more than the earlier renter's two pages: SQLITE_FULL.
            Should.NotThrow(() => Exec(
                connection,
                "CREATE TEMP TABLE ids AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT i, randomblob(100) AS b FROM n"));
            Pragma(connection, "temp.journal_mode").ShouldBe(journalMode);
            Pragma(connection, "temp.cache_size").ShouldBe(cacheSize);
        }
    }

    /// <summary>
    /// A renter's unqualified <c>PRAGMA journal_mode = OFF</c> (a bulk load's) switches the temp schema too: the next
    /// renter's ROLLBACK left its temporary table's rows in place (a review of the pool: 3 rows remained). Temp's
    /// journal mode is set back with main's.
    /// </summary>
    [Test]
    public void An_unqualified_journal_mode_a_renter_set_does_not_reach_the_next_renters_temp_schema()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1"));
        object? journalMode;
        using (var connection = dataSource.OpenConnection())
        {
            journalMode = Pragma(connection, "temp.journal_mode");
            Exec(connection, "PRAGMA journal_mode = OFF");
            Pragma(connection, "temp.journal_mode").ShouldBe("off");
        }

        using (var connection = dataSource.OpenConnection())
        {
            Pragma(connection, "temp.journal_mode").ShouldBe(journalMode);
            Exec(connection, "CREATE TEMP TABLE staged (x); BEGIN; INSERT INTO staged VALUES (1), (2), (3); ROLLBACK");
            Scalar(connection, "SELECT count(*) FROM staged").ShouldBe(0L);
        }
    }

    /// <summary>
    /// A connection on which a renter set a PRAGMA of the temp schema is closed on return, however the statement is
    /// written: SQLite also takes the schema name as a string ('temp') and allows a comment between PRAGMA and the name.
    /// </summary>
    [Test]
    public void A_temp_schema_PRAGMA_written_another_way_does_not_reach_the_next_renter(
        [Values("PRAGMA 'temp'.max_page_count = 2", "PRAGMA /* temp */ temp.max_page_count = 2")] string pragma)
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1"));
        using (var connection = dataSource.OpenConnection())
        {
            Exec(connection, pragma);
            Pragma(connection, "temp.max_page_count").ShouldBe(2L); // SQLite took it
        }

        using (var connection = dataSource.OpenConnection())
        {
            Should.NotThrow(() => Exec(
                connection,
                "CREATE TEMP TABLE ids AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT i, randomblob(100) AS b FROM n"));
        }
    }

    [Test]
    public void A_read_only_temp_schema_PRAGMA_query_does_not_make_the_pool_discard_the_connection([Values(
        "PRAGMA temp.table_info(t)",
        "PRAGMA temp.table_info('t')",
        "PRAGMA temp.index_list(t)",
        "PRAGMA temp.foreign_key_list(t)")] string sql)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        SqliteConnection inner;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            inner = connection.InnerConnection;
            Scalar(connection, sql);
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.ShouldBeSameAs(inner); // how apps look at a temporary table: no reopen for it
    }

    [Test]
    public void A_PRAGMA_set_by_preparing_a_command_is_set_back_before_the_next_renter()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Foreign Keys=true");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA foreign_keys = OFF";
            command.Prepare();
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        Pragma(next, "foreign_keys").ShouldBe(1L);
    }

    [Test]
    public void What_a_renter_left_open_does_not_hold_the_next_renter_on_an_old_snapshot([Values] bool innerReader)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (data BLOB); INSERT INTO t VALUES (x'0102')");
        SqliteConnection inner;
        IDisposable leftOpen;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            inner = connection.InnerConnection;
            if (innerReader)
            {
                var command = inner.CreateCommand();
                command.CommandText = "SELECT data FROM t";
                var reader = command.ExecuteReader(); // not disposed: it keeps SQLite's read transaction
                reader.Read().ShouldBeTrue();
                leftOpen = reader;
            }
            else
            {
                using var command = connection.CreateCommand();
                command.CommandText = "SELECT rowid, data FROM t";
                using var reader = command.ExecuteReader();
                reader.Read().ShouldBeTrue();
                leftOpen = reader.GetStream(1); // not disposed: it keeps SQLite's read transaction
            }
        }

        using (var writer = new SqliteConnection($"Data Source={Folder.File()}"))
        {
            writer.Open();
            using var insert = writer.CreateCommand();
            insert.CommandText = "INSERT INTO t VALUES (x'03')";
            insert.ExecuteNonQuery();
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        Scalar(next, "SELECT count(*) FROM t").ShouldBe(2L); // not 1, from the snapshot the stream holds
        next.InnerConnection.ShouldNotBeSameAs(inner);
        leftOpen.Dispose();
    }

    [Test]
    public void Pragmas_a_renter_changed_are_set_back_to_what_the_connection_initializer_left_not_only_the_connection_strings()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1"))
            .UseConnectionInitializer(connection =>
            {
                using var command = connection.CreateCommand();
                command.CommandText = "PRAGMA synchronous = FULL; PRAGMA busy_timeout = 100";
                command.ExecuteNonQuery();
            })
            .Build();
        using (var connection = dataSource.OpenConnection())
        {
            Exec(connection, "CREATE TABLE t (x)");
            Scalar(connection, "SELECT count(*) FROM pragma_table_info('t')").ShouldBe(1L); // a read that mentions a pragma
        }

        using (var connection = dataSource.OpenConnection())
        {
            Pragma(connection, "synchronous").ShouldBe(2L);
            Pragma(connection, "busy_timeout").ShouldBe(100L);
            Exec(connection, "PRAGMA query_only = 1; PRAGMA synchronous = OFF"); // query_only is no keyword
        }

        using var next = dataSource.OpenConnection();
        Pragma(next, "query_only").ShouldBe(0L);
        Pragma(next, "synchronous").ShouldBe(2L);
        Exec(next, "INSERT INTO t VALUES (1)").ShouldBe(1);
    }

    /// <summary>A data source of at most one connection, whose initializer makes the temporary view answer (value 42).</summary>
    private SaverDataSource OneConnectionWithTheInitializersView()
        => new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1"))
            .UseConnectionInitializer(connection =>
            {
                using var command = connection.CreateCommand();
                command.CommandText = "CREATE TEMP VIEW answer AS SELECT 42 AS value";
                command.ExecuteNonQuery();
            })
            .Build();

    [Test]
    public void Temporary_objects_the_connection_initializer_made_do_not_close_the_connection_on_each_return_but_a_renters_do()
    {
        using var dataSource = OneConnectionWithTheInitializersView();
        SqliteConnection inner;
        using (var connection = dataSource.OpenConnection())
        {
            inner = connection.InnerConnection;
            Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)"); // writes, which may create temporary objects
        }

        using (var connection = dataSource.OpenConnection())
        {
            connection.InnerConnection.ShouldBeSameAs(inner); // kept: only the initializer's view is there
            Scalar(connection, "SELECT value FROM answer").ShouldBe(42L);
            Exec(connection, "CREATE TEMP TABLE mine (x)");
        }

        using var next = dataSource.OpenConnection();
        next.InnerConnection.ShouldNotBeSameAs(inner); // a renter's own temporary table is never handed on
        Scalar(next, "SELECT count(*) FROM temp.sqlite_master WHERE name = 'mine'").ShouldBe(0L);
        Scalar(next, "SELECT value FROM answer").ShouldBe(42L);
    }

    /// <summary>
    /// A renter that makes a temporary table of its own and drops it again leaves the connection as the initializer
    /// left it (its temporary view untouched): the connection is kept, not replaced (a review's finding: any change
    /// of the temporary schema replaced it, and the initializer ran again on every such rental).
    /// </summary>
    [Test]
    public void A_renter_that_drops_its_own_temporary_table_keeps_a_connection_with_the_initializers_temporary_view()
    {
        using var dataSource = OneConnectionWithTheInitializersView();
        SqliteConnection inner;
        using (var connection = dataSource.OpenConnection())
        {
            inner = connection.InnerConnection;
            Exec(connection, "CREATE TEMP TABLE scratch (x)");
            Exec(connection, "INSERT INTO scratch VALUES (1)");
            Exec(connection, "DROP TABLE scratch");
        }

        using var next = dataSource.OpenConnection();
        next.InnerConnection.ShouldBeSameAs(inner);
        Scalar(next, "SELECT value FROM answer").ShouldBe(42L);
    }

    /// <summary>
    /// Without a connection initializer too: a renter that makes a temporary table and drops it again leaves no
    /// temporary object, and the connection is kept (a hunt's mutation that took the moved temp schema version, with
    /// nothing of the initializer's to miss, for a removal of its objects replaced it).
    /// </summary>
    [Test]
    public void A_renter_that_drops_its_own_temporary_table_keeps_a_connection_without_an_initializer()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        SqliteConnection inner;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            inner = connection.InnerConnection;
            Exec(connection, "CREATE TEMP TABLE scratch (x)");
            Exec(connection, "DROP TABLE scratch");
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.ShouldBeSameAs(inner);
    }

    /// <summary>
    /// A renter that removes the temporary view and trigger the connection initializer made (by dropping them, or by
    /// setting temp_store, which makes SQLite drop every temporary object) does not hand the connection on without
    /// them: it is replaced, and the initializer makes them again. Before, with no temporary object left, the
    /// connection counted as clean, and later renters silently worked without them (an unaudited insert, say; a
    /// review's finding). The same when the renter removes them through <see cref="SaverDbConnection.InnerConnection"/>.
    /// </summary>
    [Test]
    public void A_renter_that_removes_the_temporary_objects_of_the_connection_initializer_does_not_take_them_from_the_next_renter(
        [Values("DROP VIEW temp.answer; DROP TRIGGER temp.audit_t", "PRAGMA temp_store = MEMORY")] string removal,
        [Values] bool throughInnerConnection)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); CREATE TABLE audit (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString)
            .UseConnectionInitializer(connection =>
            {
                using var command = connection.CreateCommand();
                command.CommandText = "CREATE TEMP VIEW answer AS SELECT 42 AS value; CREATE TEMP TRIGGER audit_t AFTER INSERT ON main.t BEGIN INSERT INTO audit VALUES (new.x); END";
                command.ExecuteNonQuery();
            })
            .Build();
        SqliteConnection inner;
        using (var connection = dataSource.OpenConnection())
        {
            inner = connection.InnerConnection;
            Exec(connection, "INSERT INTO t VALUES (1)");
            if (throughInnerConnection)
            {
                using var command = inner.CreateCommand();
                command.CommandText = removal;
                command.ExecuteNonQuery();
            }
            else
            {
                Exec(connection, removal);
            }
        }

        using var next = dataSource.OpenConnection();
        next.InnerConnection.ShouldNotBeSameAs(inner);
        Scalar(next, "SELECT value FROM answer").ShouldBe(42L);
        Exec(next, "INSERT INTO t VALUES (2)");
        Scalar(next, "SELECT group_concat(x) FROM audit").ShouldBe("1,2");
    }

    [Test]
    public void Rows_a_renter_left_in_a_temporary_table_of_the_connection_initializer_do_not_reach_the_next_renter()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1"))
            .UseConnectionInitializer(connection =>
            {
                using var command = connection.CreateCommand();
                command.CommandText = "CREATE TEMP TABLE scratch (x)";
                command.ExecuteNonQuery();
            })
            .Build();
        using (var connection = dataSource.OpenConnection())
        {
            Exec(connection, "INSERT INTO scratch VALUES ('secret')");
        }

        using var next = dataSource.OpenConnection();
        Scalar(next, "SELECT count(*) FROM scratch").ShouldBe(0L);
    }

    [Test]
    public void Reading_the_database_size_through_pragma_functions_does_not_close_the_pooled_connection()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        SqliteConnection inner;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            inner = connection.InnerConnection;
            Scalar(connection, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()").ShouldBeOfType<long>();
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.ShouldBeSameAs(inner);
    }

    [Test]
    public void The_journal_mode_FAST_secure_delete_and_PRAGMAs_set_through_the_inner_connection_survive_other_renters()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1;Journal Mode=Truncate"))
            .UseConnectionInitializer(connection =>
            {
                using var command = connection.CreateCommand();
                command.CommandText = "PRAGMA secure_delete = FAST";
                command.ExecuteNonQuery();
            })
            .Build();
        using (var connection = dataSource.OpenConnection())
        {
            Exec(connection, "CREATE TABLE t (x); PRAGMA journal_mode = OFF; PRAGMA locking_mode = EXCLUSIVE");
        }

        using (var connection = dataSource.OpenConnection())
        {
            Pragma(connection, "journal_mode").ShouldBe("truncate");
            Pragma(connection, "locking_mode").ShouldBe("normal");
            Pragma(connection, "secure_delete").ShouldBe(2L);
            using var inner = connection.InnerConnection.CreateCommand();
            inner.CommandText = "PRAGMA cache_size = -12345";
            inner.ExecuteNonQuery();
        }

        using (var connection = dataSource.OpenConnection())
        {
            Scalar(connection, "SELECT count(*) FROM pragma_table_info('t')").ShouldBe(1L); // may set a PRAGMA, as far as the pool can tell
        }

        using var next = dataSource.OpenConnection();
        Pragma(next, "cache_size").ShouldBe(-12345L); // what a renter set through the inner connection stays
        Pragma(next, "secure_delete").ShouldBe(2L);
    }

    [Test]
    public void Setting_the_pragmas_back_leaves_an_attached_databases_journal_mode_alone()
    {
        var other = Folder.File("other.db");
        using (var plain = new SqliteConnection($"Data Source={other};Pooling=False"))
        {
            plain.Open();
            using var create = plain.CreateCommand();
            create.CommandText = "PRAGMA journal_mode = DELETE; CREATE TABLE o (x)";
            create.ExecuteNonQuery();
        }

        using (var connection = new SaverDbConnection(Folder.ConnectionString("Max Pool Size=1")))
        {
            connection.Open();
            Exec(connection, $"ATTACH '{other}' AS other; PRAGMA foreign_keys = OFF"); // a migration's first steps
        }

        using var check = new SqliteConnection($"Data Source={other};Pooling=False");
        check.Open();
        using var mode = check.CreateCommand();
        mode.CommandText = "PRAGMA journal_mode";
        mode.ExecuteScalar().ShouldBe("delete");
    }

    /// <summary>
    /// A connection string asking for a rollback journal on a file another pool of the process keeps open in WAL mode:
    /// SQLite refuses the switch at once, whatever Busy Timeout. The error is still SQLITE_BUSY, and says why and what
    /// to do; before, it read as a lock held too long after Busy Timeout on each attempt (a user's trial of the README).
    /// A rollback-journal file whose lock another connection holds gets SQLite's error as before.
    /// </summary>
    [Test]
    public void Asking_for_a_rollback_journal_on_a_file_another_connection_keeps_in_WAL_says_why_it_failed()
    {
        using (var wal = new SaverDbConnection(Folder.ConnectionString()))
        {
            wal.Open();
            Exec(wal, "CREATE TABLE t (x)");
        } // its physical connection stays open in the default pool

        using var delete = new SaverDbConnection(Folder.ConnectionString("Journal Mode=Delete;Retry=0;Busy Timeout=10"));
        var error = Should.Throw<SqliteException>(delete.Open);

        error.SqliteErrorCode.ShouldBe(5);
        error.Message.ShouldContain("The database is in WAL mode, and SQLite switches it to Journal Mode=Delete only while no other connection has it open");
        error.Message.ShouldContain("Give every connection string for a file the same Journal Mode.");
        delete.State.ShouldBe(ConnectionState.Closed);

        SaverDbConnection.ClearAllPools();
        delete.Open(); // no other connection now: the file goes over to the rollback journal
        delete.Close();
        using var locker = new SqliteConnection(Folder.ConnectionString("Pooling=False"));
        locker.Open();
        using (var exclusive = locker.CreateCommand())
        {
            exclusive.CommandText = "BEGIN EXCLUSIVE";
            exclusive.ExecuteNonQuery();
        }

        using var truncate = new SaverDbConnection(Folder.ConnectionString("Journal Mode=Truncate;Retry=0;Busy Timeout=10"));
        var locked = Should.Throw<SqliteException>(truncate.Open);
        $"{locked.SqliteErrorCode} {locked.Message.Contains("WAL mode", StringComparison.Ordinal)}".ShouldBe("5 False");
    }

    [Test]
    public void A_read_only_connection_is_kept_when_another_connection_changed_the_files_journal_mode()
    {
        PoolTests.Execute(Folder.ConnectionString("Journal Mode=Delete"), "CREATE TABLE t (x)");
        SaverDbConnection.ClearAllPools();
        using var readOnly = SaverDataSource.Create(Folder.ConnectionString("Mode=ReadOnly;Max Pool Size=1"));
        SqliteConnection inner;
        using (var connection = readOnly.OpenConnection())
        {
            inner = connection.InnerConnection;
        }

        PoolTests.Execute(Folder.ConnectionString(), "INSERT INTO t VALUES (1)"); // the default pool switches the file to WAL
        using (var connection = readOnly.OpenConnection())
        {
            Scalar(connection, "SELECT count(*) FROM pragma_table_info('t')").ShouldBe(1L); // may set a PRAGMA
        }

        using var again = readOnly.OpenConnection();
        again.InnerConnection.ShouldBeSameAs(inner);
        Scalar(again, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    [Test]
    public void An_exception_inside_a_transaction_commits_nothing_and_the_next_renter_is_clean()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");

        Should.Throw<InvalidOperationException>(() =>
        {
            using var connection = new SaverDbConnection(connectionString);
            connection.Open();
            using var transaction = connection.BeginTransaction();
            Exec(connection, "INSERT INTO t VALUES (1)");
            throw new InvalidOperationException("boom");
        });

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.Handle.ShouldNotBeNull();
        SQLitePCL.raw.sqlite3_get_autocommit(next.InnerConnection.Handle).ShouldBe(1);
        Scalar(next, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public void Closing_without_commit_rolls_back_even_when_the_transaction_is_not_disposed()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        Exec(connection, "INSERT INTO t VALUES (1)");

        connection.Close();

        transaction.Connection.ShouldBeNull();
        Should.Throw<InvalidOperationException>(transaction.Commit);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
        connection.Open(); // the transaction ended with the Close: not the connection's any more
        connection.BeginTransaction().Dispose();
        connection.Close();
    }

    [Test]
    public void A_renter_never_sees_another_renters_temp_tables_or_open_readers()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        SqliteConnection first;
        DbDataReaderHolder holder = new();
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            first = connection.InnerConnection;
            Exec(connection, "CREATE TEMP TABLE scratch (x); INSERT INTO scratch VALUES (1), (2)");
            var command = connection.CreateCommand();
            command.CommandText = "SELECT x FROM scratch";
            holder.Reader = command.ExecuteReader();
            holder.Reader.Read().ShouldBeTrue();
        }

        holder.Reader!.IsClosed.ShouldBeTrue();
        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.ShouldNotBeSameAs(first);
        Scalar(next, "SELECT count(*) FROM temp.sqlite_master").ShouldBe(0L);
    }

    [Test]
    public void A_renter_never_sees_another_renters_attached_databases()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            Exec(connection, $"ATTACH DATABASE '{Folder.File("other.db")}' AS other");
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        Scalar(next, "SELECT count(*) FROM pragma_database_list WHERE name = 'other'").ShouldBe(0L);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void A_database_attached_by_a_batch_that_ends_the_transaction_is_not_handed_on(bool deferred)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            using var transaction = connection.BeginTransaction(deferred);
            Exec(connection, $"COMMIT; ATTACH DATABASE '{Folder.File("other.db")}' AS other");
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        Scalar(next, "SELECT count(*) FROM pragma_database_list WHERE name = 'other'").ShouldBe(0L);
    }

    [Test]
    public void Closing_a_connection_leaves_alone_a_reader_its_old_command_opened_on_another_connection()
    {
        var connectionString = Folder.ConnectionString();
        using var first = new SaverDbConnection(connectionString);
        using var second = new SaverDbConnection(connectionString);
        first.Open();
        second.Open();
        using var command = first.CreateCommand();
        command.CommandText = "SELECT 1 UNION ALL SELECT 2";
        command.ExecuteScalar();

        command.Connection = second;
        using var reader = command.ExecuteReader(CommandBehavior.CloseConnection);
        reader.Read().ShouldBeTrue();
        first.Close();

        reader.IsClosed.ShouldBeFalse();
        second.State.ShouldBe(ConnectionState.Open);
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(2L);
    }

    [Test]
    public void A_reader_reads_DateTimeOffset_and_TimeSpan_columns_through_GetFieldValue()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT '2026-12-01 10:30:00+02:00', '01:02:03'";
        using var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();

        reader.GetFieldValue<DateTimeOffset>(0).ShouldBe(new DateTimeOffset(2026, 12, 1, 10, 30, 0, TimeSpan.FromHours(2)));
        reader.GetFieldValue<TimeSpan>(1).ShouldBe(new TimeSpan(1, 2, 3));
    }

    /// <summary>
    /// HasRows and RecordsAffected as Microsoft.Data.Sqlite reports them: ADO.NET code checks HasRows before it reads
    /// (an empty result set, then one with rows), and reads RecordsAffected, after Close too, for the rows a batch's
    /// writes changed (-1 for a query that wrote nothing).
    /// </summary>
    [Test]
    public void A_readers_HasRows_and_RecordsAffected_are_as_with_MDS()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var command = connection.CreateCommand();

        command.CommandText = "INSERT INTO t VALUES (1), (2), (3); SELECT x FROM t WHERE x > 5; SELECT x FROM t";
        var reader = command.ExecuteReader();
        reader.HasRows.ShouldBeFalse();
        reader.NextResult().ShouldBeTrue();
        reader.HasRows.ShouldBeTrue();
        reader.Close();
        reader.RecordsAffected.ShouldBe(3);

        command.CommandText = "SELECT x FROM t";
        using (var query = command.ExecuteReader())
        {
            query.HasRows.ShouldBeTrue();
            query.RecordsAffected.ShouldBe(-1);
        }
    }

    /// <summary>
    /// A NextResult whose statement fails closes the reader, as Microsoft.Data.Sqlite closes its own then: IsClosed says
    /// so, and with CommandBehavior.CloseConnection the connection is closed with it, without a Dispose.
    /// </summary>
    [Test]
    public void A_reader_whose_NextResult_failed_is_closed_with_its_connection_for_CloseConnection()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1; SELECT abs(-9223372036854775808)";
        var reader = command.ExecuteReader(CommandBehavior.CloseConnection);
        reader.Read().ShouldBeTrue();

        Should.Throw<SqliteException>(() => reader.NextResult()).Message.ShouldContain("integer overflow");

        reader.IsClosed.ShouldBeTrue();
        connection.State.ShouldBe(ConnectionState.Closed);
        reader.Dispose();
    }

    /// <summary>
    /// A reader's enumerator (<c>foreach (IDataRecord record in reader)</c>, a data binding's) leaves the reader open at
    /// the end of its result set, as Microsoft.Data.Sqlite's does: the next result set is still there to read.
    /// </summary>
    [Test]
    public void Enumerating_a_reader_leaves_it_open_for_its_next_result_as_with_MDS()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1 UNION ALL SELECT 2; SELECT 3";
        using var reader = command.ExecuteReader();

        var values = new List<long>();
        foreach (IDataRecord record in reader)
        {
            values.Add(record.GetInt64(0));
        }

        values.ShouldBe([1L, 2L]);
        reader.IsClosed.ShouldBeFalse();
        reader.NextResult().ShouldBeTrue();
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(3L);
    }

    [Test]
    public void A_connection_that_only_read_is_reused_and_not_marked_for_a_check_of_temporary_objects_or_attachments()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        SqliteConnection first;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            first = connection.InnerConnection;
        }

        using (var reader = new SaverDbConnection(connectionString))
        {
            reader.Open();
            Scalar(reader, "SELECT 1").ShouldBe(1L);
            var physical = reader.GetOpenPhysical("test");
            physical.MayHoldTempObjects.ShouldBeFalse();
            physical.MayHoldAttachments.ShouldBeFalse();
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.ShouldBeSameAs(first);
    }

    [Test]
    public void A_returned_connection_without_temp_state_is_reused()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        SqliteConnection first;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            first = connection.InnerConnection;
            Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.ShouldBeSameAs(first);
    }

    [Test]
    public void Pool_keys_normalize_order_case_aliases_spacing_and_relative_paths()
    {
        var full = Folder.File("keys.db");
        var previous = Environment.CurrentDirectory;
        Environment.CurrentDirectory = Folder.Path;
        try
        {
            string[] spellings =
            [
                $"Data Source={full};Max Pool Size=4;Busy Timeout=100",
                $"busy timeout=100; MAXPOOLSIZE = 4 ;filename={full}",
                $"DataSource=keys.db;BusyTimeout=100;Max Pool Size=4;Journal Mode=wal",
                $"Max Pool Size=4;Data Source=./keys.db;Busy Timeout=100;Synchronous=Normal",
            ];

            var dataSources = spellings.Select(SaverDataSource.GetShared).Distinct().ToList();

            dataSources.Count.ShouldBe(1);
            using var a = new SaverDbConnection(spellings[0]);
            using var b = new SaverDbConnection(spellings[2]);
            a.Open();
            var physical = a.InnerConnection;
            a.Close();
            b.Open();
            b.InnerConnection.ShouldBeSameAs(physical);
            b.ConnectionString.ShouldBe(spellings[2]);
            b.DataSource.ShouldBe(full);
        }
        finally
        {
            Environment.CurrentDirectory = previous;
        }
    }

    [Test]
    public void Different_settings_get_different_pools()
    {
        var a = SaverDataSource.GetShared(Folder.ConnectionString("Busy Timeout=100"));
        var b = SaverDataSource.GetShared(Folder.ConnectionString("Busy Timeout=200"));

        a.ShouldNotBeSameAs(b);
    }

    /// <summary>Each keyword is part of the pool key: a string that differs from another in any one of them alone has a pool of its own.</summary>
    [Test]
    public void A_string_differing_in_any_one_keyword_gets_a_pool_of_its_own()
    {
        string[] settings =
        [
            "Mode=ReadWrite", "Cache=Shared", "Password=pw", "Foreign Keys=True", "Recursive Triggers=True", "Default Timeout=7", "Vfs=unix",
            "Pooling=False", "Max Pool Size=3", "Min Pool Size=1", "Pool Timeout=7", "Connection Idle Lifetime=7", "Statement Cache Size=7",
            "Busy Timeout=7", "Journal Mode=Delete", "Synchronous=Full", "Cache Size=7", "Mmap Size=7", "Temp Store=Memory", "Journal Size Limit=7",
            "Wal Autocheckpoint=7", "Retry=7", "Base Delay=0.5", "Max Delay=7", "Jitter=0.5", "Write Gate=False",
            "Checkpoint Interval=7", "Checkpoint Mode=Truncate", "Checkpoint On Close=False",
        ];
        var plain = SaverDataSource.GetShared(Folder.ConnectionString());

        var sharing = settings.Where(setting => ReferenceEquals(SaverDataSource.GetShared(Folder.ConnectionString(setting)), plain)).ToList();

        sharing.ShouldBeEmpty();
        settings.Length.ShouldBe(SqliteSaver.Data.Configuration.Keywords.All.Count - 1); // every keyword but Data Source
    }

    /// <summary>
    /// SQLite takes only <c>:memory:</c> in lower case for an in-memory database, and Microsoft.Data.Sqlite leaves
    /// <c>:memory:</c> in any case out of DataDirectory: <c>:MEMORY:</c> is a file of that name in the current directory.
    /// </summary>
    [Test]
    public void Memory_in_upper_case_is_a_file_in_the_current_directory_even_with_DataDirectory_set_as_in_Microsoft_Data_Sqlite()
    {
        var previousDirectory = Environment.CurrentDirectory;
        var previous = AppDomain.CurrentDomain.GetData("DataDirectory");
        var dataDirectory = Path.Combine(Folder.Path, "data");
        Directory.CreateDirectory(dataDirectory);
        Environment.CurrentDirectory = Folder.Path;
        AppDomain.CurrentDomain.SetData("DataDirectory", dataDirectory);
        try
        {
            string expected;
            using (var plain = new SqliteConnection("Data Source=:MEMORY:;Pooling=False"))
            {
                plain.Open();
                expected = plain.DataSource;
            }

            expected.ShouldBe(Folder.File(":MEMORY:"));
            using var connection = new SaverDbConnection("Data Source=:MEMORY:");
            connection.DataSource.ShouldBe(expected);
        }
        finally
        {
            AppDomain.CurrentDomain.SetData("DataDirectory", previous);
            Environment.CurrentDirectory = previousDirectory;
        }
    }

    /// <summary>A file: URI's vfs parameter replaces the Vfs keyword, as in SQLite: vfs=unix opens the file, whatever Vfs says.</summary>
    [Test]
    public void A_file_uris_vfs_replaces_the_Vfs_keyword_as_in_SQLite()
    {
        var path = Folder.File();
        var connectionString = $"Data Source=file:{path}?vfs=unix;Vfs=memdb";
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();

        Exec(connection, "CREATE TABLE t (x)");

        File.Exists(path).ShouldBeTrue();
        SaverDataSource.GetShared(connectionString).Options.IsMemory.ShouldBeFalse();
    }

    /// <summary>The Data Source of an in-memory database is as given: a name, not a path, nor the URI Mode=Memory opens.</summary>
    [TestCase("Data Source=:memory:", ":memory:")]
    [TestCase("Data Source=named;Mode=Memory", "named")]
    [TestCase("Data Source=file:named?mode=memory", "file:named?mode=memory")]
    [TestCase("Data Source=named;Mode=Memory;Cache=Shared", "named")]
    public void The_DataSource_of_an_in_memory_database_is_as_given(string connectionString, string dataSource)
    {
        using var connection = new SaverDbConnection(connectionString);

        connection.DataSource.ShouldBe(dataSource);
    }

    [Test]
    public void Read_only_mode_works_on_a_database_in_rollback_journal_mode()
    {
        var path = Folder.File("journal.db");
        using (var plain = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            plain.Open();
            using var command = plain.CreateCommand();
            command.CommandText = "PRAGMA journal_mode = DELETE; CREATE TABLE t (x); INSERT INTO t VALUES (42);";
            command.ExecuteNonQuery();
        }

        using var connection = new SaverDbConnection($"Data Source={path};Mode=ReadOnly");
        connection.Open();

        Scalar(connection, "SELECT x FROM t").ShouldBe(42L);
        Pragma(connection, "journal_mode").ShouldBe("delete");
        Should.Throw<SqliteException>(() => Exec(connection, "INSERT INTO t VALUES (1)")).SqliteErrorCode.ShouldBe(8); // SQLITE_READONLY
        File.Exists(path + "-wal").ShouldBeFalse();
    }

    [TestCase("file:{0}?mode=ro")]
    [TestCase("file:{0}?cache=private&mode=ro")]
    [TestCase("file:{0}?mode=%72o")]
    [TestCase("file:{0}?mode=rw&mode=ro")]
    [TestCase("file:{0}?mode=ro%00x")] // SQLite reads the value up to the NUL (a review)
    [TestCase("file:{0}?%6Dode=ro")] // and decodes a parameter's name as its value
    public void A_read_only_uri_opens_a_database_in_rollback_journal_mode_and_keeps_no_wal(string uri)
    {
        var path = Folder.File("journal.db");
        using (var plain = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            plain.Open();
            using var command = plain.CreateCommand();
            command.CommandText = "CREATE TABLE t (x); INSERT INTO t VALUES (42);";
            command.ExecuteNonQuery();
        }

        var connectionString = $"Data Source={string.Format(System.Globalization.CultureInfo.InvariantCulture, uri, path)}";
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();

        Scalar(connection, "SELECT x FROM t").ShouldBe(42L);
        Pragma(connection, "journal_mode").ShouldBe("delete");
        SaverDataSource.GetShared(connectionString).Options.MaintainsWal.ShouldBeFalse(); // no checkpoints on it
    }

    [TestCase("file:{0}?MODE=ro")]
    [TestCase("file:{0}?Mode=ro&CACHE=shared")]
    [TestCase("file:{0}?cache=private#&mode=ro")] // in the fragment, which SQLite drops
    [TestCase("file:{0}#?mode=ro")] // a fragment that begins before any query
    public void A_uri_SQLite_does_not_read_as_mode_ro_does_not_make_the_database_read_only(string uri)
    {
        // SQLite's URI parameter names are case-sensitive, and it drops a fragment: it opens these files for writing, so
        // the library maintains their WAL as for any writable database.
        var path = Folder.File("upper.db");
        var connectionString = $"Data Source={string.Format(System.Globalization.CultureInfo.InvariantCulture, uri, path)}";
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();

        Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        Pragma(connection, "journal_mode").ShouldBe("wal");
        SaverDataSource.GetShared(connectionString).Options.MaintainsWal.ShouldBeTrue();
        connection.DataSource.ShouldBe(path); // the file SQLite opens: the path ends at the query or the fragment
    }

    [Test]
    public void Without_pooling_memory_connections_open_at_once_have_databases_of_their_own()
    {
        const string connectionString = "Data Source=:memory:;Pooling=False";
        using var a = new SaverDbConnection(connectionString);
        using var b = new SaverDbConnection(connectionString);
        a.Open();
        b.Open();

        Exec(a, "CREATE TABLE only_in_a (x)");

        Scalar(b, "SELECT count(*) FROM sqlite_master WHERE name = 'only_in_a'").ShouldBe(0L);
    }

    [Test]
    public void Without_pooling_memory_connections_of_their_own_do_not_wait_for_each_others_transactions()
    {
        const string connectionString = "Data Source=:memory:;Pooling=False;Default Timeout=1";
        using var a = new SaverDbConnection(connectionString);
        using var b = new SaverDbConnection(connectionString);
        a.Open();
        b.Open();
        using var held = a.BeginTransaction();

        using var other = b.BeginTransaction(); // its own database: no write gate to wait at
        Exec(b, "CREATE TABLE t (x)");
        other.Commit();
    }

    [Test]
    public void A_named_shared_memory_database_is_the_one_plain_connections_of_the_process_use_by_that_name()
    {
        var connectionString = $"Data Source=saver-shared-{Guid.NewGuid():N};Mode=Memory;Cache=Shared";
        using var keeper = new SqliteConnection(connectionString);
        keeper.Open();
        using (var create = keeper.CreateCommand())
        {
            create.CommandText = "CREATE TABLE seeded (x); INSERT INTO seeded VALUES (42)";
            create.ExecuteNonQuery();
        }

        using var connection = new SaverDbConnection(connectionString);
        connection.Open();

        Scalar(connection, "SELECT x FROM seeded").ShouldBe(42L);
    }

    [Test]
    public void A_pooled_memory_database_is_shared_by_all_connections_of_the_pool_while_it_lives()
    {
        var connectionString = "Data Source=:memory:;Max Pool Size=4;Connection Idle Lifetime=0";
        using var dataSource = SaverDataSource.Create(connectionString);
        using (var a = dataSource.OpenConnection())
        using (var b = dataSource.OpenConnection())
        {
            Exec(a, "CREATE TABLE shared (x); INSERT INTO shared VALUES (7)");
            Scalar(b, "SELECT x FROM shared").ShouldBe(7L);
        }

        using (var later = dataSource.OpenConnection())
        {
            Scalar(later, "SELECT x FROM shared").ShouldBe(7L);
        }

        dataSource.Clear();
        using var afterClear = dataSource.OpenConnection();
        Scalar(afterClear, "SELECT count(*) FROM sqlite_master WHERE name = 'shared'").ShouldBe(0L);
    }

    [Test]
    public void A_cleared_memory_pool_starts_an_empty_database_even_while_a_connection_of_the_old_one_is_rented()
    {
        using var dataSource = SaverDataSource.Create("Data Source=:memory:;Max Pool Size=4");
        using (var setup = dataSource.OpenConnection())
        {
            Exec(setup, "CREATE TABLE shared (x); INSERT INTO shared VALUES (7)");
        }

        var held = dataSource.OpenConnection();
        dataSource.Clear();
        using (var during = dataSource.OpenConnection())
        {
            Scalar(during, "SELECT count(*) FROM sqlite_master WHERE name = 'shared'").ShouldBe(0L);
        }

        Scalar(held, "SELECT x FROM shared").ShouldBe(7L); // the renter keeps the database it had
        held.Dispose();
        using var after = dataSource.OpenConnection();
        Scalar(after, "SELECT count(*) FROM sqlite_master WHERE name = 'shared'").ShouldBe(0L);
    }

    /// <summary>
    /// A pooled :memory: database lives while the pool's anchor connection (or a connection of its generation) is
    /// open. A connection opened while a Clear closed its generation's anchor is opened again in the new generation,
    /// rather than handed out on a new, empty database of the old one that nothing else shares.
    /// </summary>
    [Test]
    public void An_Open_racing_Clear_never_gets_an_in_memory_database_that_nothing_else_keeps()
    {
        using var dataSource = SaverDataSource.Create("Data Source=:memory:;Max Pool Size=4");
        var orphans = 0;
        var iterations = 0;
        var random = new Random(1);
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        while (stopwatch.Elapsed < TimeSpan.FromSeconds(8) && orphans == 0)
        {
            iterations++;
            using (var setup = dataSource.OpenConnection())
            {
                Scalar(setup, "CREATE TABLE IF NOT EXISTS marker (x)");
                Scalar(setup, "CREATE TEMP TABLE scratch (x)"); // so that it is closed on return, leaving only the anchor
            }

            var spin = random.Next(0, 400);
            using var start = new Barrier(2);
            SqliteSaver.Data.Pooling.PhysicalConnection? rented = null;
            var renter = new Thread(() =>
            {
                start.SignalAndWait();
                rented = dataSource.Pool.Rent();
            });
            renter.Start();
            start.SignalAndWait();
            Thread.SpinWait(spin);
            dataSource.Clear();
            renter.Join();

            var physical = rented!;
            using (var check = physical.Sqlite.CreateCommand())
            {
                // A connection of a cleared generation must see that generation's database (with its marker table);
                // one of the new generation sees the new, empty one.
                check.CommandText = "SELECT count(*) FROM sqlite_master WHERE name = 'marker'";
                if ((long)check.ExecuteScalar()! == 0 && physical.Generation != CurrentGeneration(dataSource))
                {
                    orphans++;
                }
            }

            dataSource.Pool.Return(physical);
        }

        TestContext.Out.WriteLine($"{iterations} iterations, {orphans} orphaned in-memory databases");
        orphans.ShouldBe(0, $"a connection of a cleared generation opened a new empty database of its own (after {iterations} iterations)");
    }

    [Test]
    public void A_memory_database_opened_across_a_clear_is_kept_by_an_anchor_of_its_own_generation()
    {
        var time = new FakeTimeProvider();
        using var release = new ManualResetEventSlim();
        var opens = 0;
        using var dataSource = new SaverDataSourceBuilder("Data Source=:memory:;Connection Idle Lifetime=1")
            .UseTimeProvider(time)
            .UseConnectionInitializer(_ =>
            {
                if (Interlocked.Increment(ref opens) == 1)
                {
                    release.Wait(); // the pool's first open, its anchor, waits here
                }
            })
            .Build();
        var writer = Task.Run(() =>
        {
            using var connection = dataSource.OpenConnection();
            Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        });
        Wait.Until(() => Volatile.Read(ref opens) == 1);

        dataSource.Clear(); // while the anchor of the old generation opens
        release.Set();
        writer.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        // The anchor of the old generation was closed and one of the new opened: the writer's connection is of the
        // pool's generation, so it is kept, not closed on return as one opened across the Clear.
        dataSource.Statistics.Idle.ShouldBe(1);
        time.Advance(TimeSpan.FromSeconds(5)); // idle pruning closes the writer's connection

        dataSource.Statistics.Total.ShouldBe(0);
        using var again = dataSource.OpenConnection();
        Scalar(again, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    [TestCase("Data Source=named;Mode=Memory")]
    [TestCase("Data Source=file::memory:")]
    [TestCase("Data Source=file:named?mode=memory")]
    [TestCase("Data Source=file:named?vfs=memdb")]
    [TestCase("Data Source=file:named?mode=rwc&mode=memory")] // SQLite takes the last mode ...
    [TestCase("Data Source=file:named?mode=memory#top")] // ... drops a fragment ...
    [TestCase("Data Source=file:named?mode=%6Demory")] // ... decodes escapes ...
    [TestCase("Data Source=file:named?mode=memory&cache=private;Cache=Shared")] // ... and takes the URI's cache over the keyword
    [TestCase("Data Source=named?cache=private;Mode=Memory;Cache=Shared")] // Mode=Memory opens "file:" + Data Source, a URI
    [TestCase("Data Source=/named-in-pager;Mode=Memory;Vfs=memdb")] // in memory mode SQLite opens no file, so no VFS shares it by its "/"
    [TestCase("Data Source=/named-in-pager?vfs=memdb;Mode=Memory")]
    [TestCase("Data Source=file:/named-in-pager?vfs=memdb&mode=memory")]
    [TestCase("Data Source=/;Vfs=memdb")] // memdb shares a name of two characters or more that starts with a slash
    [TestCase("Data Source=file:/?vfs=memdb")]
    public void Every_spelling_of_a_private_memory_database_is_one_database_for_the_pool_and_outlives_idle_pruning(string connectionString)
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(connectionString + ";Max Pool Size=4;Connection Idle Lifetime=1").UseTimeProvider(time).Build();
        using var other = SaverDataSource.Create(connectionString + ";Max Pool Size=3");
        using (var a = dataSource.OpenConnection())
        using (var b = dataSource.OpenConnection())
        {
            Exec(a, "CREATE TABLE shared (x); INSERT INTO shared VALUES (7)");
            Scalar(b, "SELECT x FROM shared").ShouldBe(7L);
        }

        time.Advance(TimeSpan.FromSeconds(5));
        dataSource.Statistics.Total.ShouldBe(0);
        using (var later = dataSource.OpenConnection())
        {
            Scalar(later, "SELECT x FROM shared").ShouldBe(7L);
            Pragma(later, "journal_mode").ShouldBe("memory");
        }

        using var elsewhere = other.OpenConnection();
        Scalar(elsewhere, "SELECT count(*) FROM sqlite_master WHERE name = 'shared'").ShouldBe(0L);
        dataSource.Checkpoint().ShouldBe(new CheckpointResult(false, -1, -1)); // no WAL to keep
    }

    [TestCase("Data Source=named-in-memdb;Vfs=memdb")]
    public void A_memdb_name_without_a_leading_slash_is_private_to_its_pool(string connectionString)
    {
        using var first = SaverDataSource.Create(connectionString);
        using var second = SaverDataSource.Create(connectionString + ";Max Pool Size=3");
        using var a = first.OpenConnection();
        using var b = second.OpenConnection();

        Exec(a, "CREATE TABLE mine (x)");

        Scalar(b, "SELECT count(*) FROM sqlite_master WHERE name = 'mine'").ShouldBe(0L);
        first.Checkpoint().ShouldBe(new CheckpointResult(false, -1, -1));
    }

    /// <summary>
    /// SQLite finds a VFS by its exact name, so Microsoft.Data.Sqlite refuses Vfs=MEMDB; the library took any case of
    /// memdb for an in-memory database and opened one, losing every write (a bug hunt).
    /// </summary>
    [Test]
    public void A_vfs_name_in_another_case_is_refused_as_Microsoft_Data_Sqlite_refuses_it()
    {
        var connectionString = $"Data Source={Folder.File()};Vfs=MEMDB";
        using var plain = new SqliteConnection(connectionString);
        var expected = Should.Throw<SqliteException>(() => plain.Open());

        using var connection = new SaverDbConnection(connectionString);
        Should.Throw<SqliteException>(() => connection.Open()).Message.ShouldStartWith(expected.Message);
    }

    [TestCase("Data Source=shared-by-name;Mode=Memory;Cache=Shared")]
    [TestCase("Data Source=/shared-by-vfs;Vfs=memdb")]
    [TestCase("Data Source=\\shared-by-vfs;Vfs=memdb")] // a backslash too
    [TestCase("Data Source=file:shared-by-uri?mode=memory&cache=shared")]
    [TestCase("Data Source=:memory:;Mode=Memory;Cache=Shared")] // the URI file::memory: with a shared cache
    [TestCase("Data Source=shared-by-vfs-and-cache;Vfs=memdb;Cache=Shared")] // a memdb name without a slash, in a shared cache
    public void A_shared_cache_memory_database_is_shared_by_name_across_pools_and_outlives_idle_pruning(string connectionString)
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(connectionString + ";Connection Idle Lifetime=1").UseTimeProvider(time).Build();
        using var other = SaverDataSource.Create(connectionString + ";Max Pool Size=3");
        using (var connection = dataSource.OpenConnection())
        {
            Exec(connection, "CREATE TABLE shared (x); INSERT INTO shared VALUES (7)");
        }

        time.Advance(TimeSpan.FromSeconds(5));
        dataSource.Statistics.Total.ShouldBe(0);
        using (var later = dataSource.OpenConnection())
        {
            Scalar(later, "SELECT x FROM shared").ShouldBe(7L);
        }

        using var elsewhere = other.OpenConnection();
        Scalar(elsewhere, "SELECT x FROM shared").ShouldBe(7L);
    }

    [TestCase("Data Source=gate-by-name;Mode=Memory;Cache=Shared")]
    [TestCase("Data Source=/gate-by-vfs;Vfs=memdb")]
    [TestCase("Data Source=file:gate-by-uri?mode=memory&cache=shared")]
    public async Task Writers_of_two_data_sources_on_one_shared_memory_database_queue_at_one_write_gate(string connectionString)
    {
        using var first = SaverDataSource.Create(connectionString);
        using var second = SaverDataSource.Create(connectionString + ";Max Pool Size=4;Retry=0");
        second.Executor.Gate.ShouldBeSameAs(first.Executor.Gate);
        using var holder = first.OpenConnection();
        Exec(holder, "CREATE TABLE IF NOT EXISTS t (x)");
        using var writer = second.OpenConnection();
        var transaction = holder.BeginTransaction();
        Exec(holder, "INSERT INTO t VALUES (1)");

        var write = Task.Run(() => Exec(writer, "INSERT INTO t VALUES (2)"));
        Wait.Until(() => first.Executor.Gate!.WaitingCount == 1); // in line, not failing on SQLite's lock
        transaction.Commit();

        (await write.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBe(1);
        Scalar(writer, "SELECT count(*) FROM t").ShouldBe(2L);
    }

    /// <summary>
    /// Microsoft.Data.Sqlite opens a Data Source with Mode=Memory as the URI "file:" + Data Source, so SQLite decodes
    /// its escapes: two spellings of one name are one database, whose writers must queue at one gate.
    /// </summary>
    [Test]
    public void Spellings_of_one_shared_memory_name_that_SQLite_decodes_alike_share_a_write_gate()
    {
        var name = $"gate by {Guid.NewGuid():N}";
        using var plain = SaverDataSource.Create($"Data Source={name};Mode=Memory;Cache=Shared");
        using var escaped = SaverDataSource.Create($"Data Source={name.Replace(" ", "%20", StringComparison.Ordinal)};Mode=Memory;Cache=Shared");
        using var a = plain.OpenConnection();
        using var b = escaped.OpenConnection();

        Exec(a, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");

        Scalar(b, "SELECT x FROM t").ShouldBe(1L); // one database
        escaped.Executor.Gate.ShouldBeSameAs(plain.Executor.Gate);
        using var cut = SaverDataSource.Create($"Data Source={name}%00tail;Mode=Memory;Cache=Shared"); // SQLite reads the name up to a NUL
        cut.Executor.Gate.ShouldBeSameAs(plain.Executor.Gate);
    }

    /// <summary>A URI's mode parameter replaces Mode=Memory (see the test above it): the file is opened, and its gate is the file's.</summary>
    [Test]
    public void A_mode_parameter_in_a_Data_Source_that_Mode_Memory_opens_as_a_URI_opens_the_file()
    {
        using var plain = SaverDataSource.Create(Folder.ConnectionString());
        using var byMode = SaverDataSource.Create($"Data Source={Folder.File()}?mode=rwc;Mode=Memory");
        using (var connection = byMode.OpenConnection())
        {
            Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        }

        using (var connection = plain.OpenConnection())
        {
            Scalar(connection, "SELECT x FROM t").ShouldBe(1L);
        }

        byMode.Executor.Gate.ShouldBeSameAs(plain.Executor.Gate);
        var error = Should.Throw<ArgumentException>(() => new SaverDbConnection("Data Source=relative.db?mode=rwc;Mode=Memory"));
        error.ParamName.ShouldBe("Data Source");
        error.Message.ShouldContain("'file:relative.db?mode=rwc' with a relative path");
    }

    [Test]
    public void Private_memory_databases_of_two_data_sources_have_write_gates_of_their_own()
    {
        using var first = SaverDataSource.Create("Data Source=:memory:");
        using var second = SaverDataSource.Create("Data Source=:memory:");
        second.Executor.Gate.ShouldNotBeSameAs(first.Executor.Gate);
    }

    [TestCase("//")] // "file:" + a folder that ends in a separator + "/test.db"
    [TestCase("/./")]
    [TestCase("/../{0}/")]
    public void A_file_uri_spelling_the_path_of_a_file_another_way_shares_that_files_write_gate(string separator)
    {
        var folder = Path.GetFileName(Folder.Path);
        var uri = "file:" + Folder.Path + string.Format(System.Globalization.CultureInfo.InvariantCulture, separator, folder) + "test.db";
        using var plain = SaverDataSource.Create(Folder.ConnectionString());
        using var byUri = SaverDataSource.Create($"Data Source={uri}");
        using (var connection = byUri.OpenConnection())
        {
            Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        }

        using (var connection = plain.OpenConnection())
        {
            Scalar(connection, "SELECT x FROM t").ShouldBe(1L); // one file
        }

        byUri.Executor.Gate.ShouldBeSameAs(plain.Executor.Gate); // so its writers queue with the file's other writers
    }

    [Test]
    public void Without_pooling_an_explicit_Max_Pool_Size_of_16_and_no_limit_do_not_share_a_pool()
    {
        // README: "With Pooling=false no limit unless given". These two strings differ in meaning, so they must not
        // share a data source, as they would if the pool key held Max Pool Size's default rather than the limit.
        var limited = Folder.ConnectionString("Pooling=False;Max Pool Size=16");
        var unlimited = Folder.ConnectionString("Pooling=False");

        SaverDataSource.GetShared(limited).Statistics.MaxPoolSize.ShouldBe(16);

        SaverDataSource.GetShared(unlimited).Statistics.MaxPoolSize.ShouldBe(int.MaxValue);
    }

    [Test]
    public void File_uris_that_differ_only_in_an_empty_or_localhost_authority_share_one_pool()
    {
        // file:/path, file:///path and file://localhost/path name one file for SQLite: with a pool each, Max Pool
        // Size=1 would allow a connection per spelling, and ClearPool through one would leave the others'. Other
        // spellings keep pools of their own (they still share the file's write gate): an escape or a "..", which the
        // pool key does not rewrite, or another authority or scheme case, which SQLite refuses.
        var path = Folder.File();
        var first = SaverDataSource.GetShared($"Data Source=file:{path};Max Pool Size=1");

        SaverDataSource.GetShared($"Data Source=file://{path};Max Pool Size=1").ShouldBeSameAs(first);
        SaverDataSource.GetShared($"Data Source=file://localhost{path};Max Pool Size=1").ShouldBeSameAs(first);
        SaverDataSource.GetShared($"Data Source=file:{path.Replace("test", "%74est", StringComparison.Ordinal)};Max Pool Size=1").ShouldNotBeSameAs(first);
        SaverDataSource.GetShared($"Data Source=file:{path}?mode=ro;Max Pool Size=1").ShouldNotBeSameAs(first);
        SaverDataSource.GetShared($"Data Source={path};Max Pool Size=1").ShouldNotBeSameAs(first);
        SaverDataSource.GetShared($"Data Source=file:///{path};Max Pool Size=1") // the path //tmp/..., no authority
            .ShouldNotBeSameAs(SaverDataSource.GetShared($"Data Source=file:/{path};Max Pool Size=1")); // authority "tmp"
    }

    [TestCase("Data Source=:memory:;Mode=ReadOnly", "Mode")]
    [TestCase("Data Source=:memory:;Mode=ReadOnly;Pooling=False", "Mode")]
    [TestCase("Data Source=file::memory:?mode=ro", "Data Source")]
    public void Opening_a_private_in_memory_database_read_only_is_refused(string connectionString, string keyword)
    {
        // It could only ever be empty; pooled, its memdb replacement would not even be read-only, so Mode would be lost.
        var error = Should.Throw<ArgumentException>(() => new SaverDbConnection(connectionString));

        error.ParamName.ShouldBe(keyword);
        error.Message.ShouldContain("read-only");
        using var shared = new SaverDbConnection("Data Source=file:shared-read-only?mode=memory&cache=shared;Mode=ReadOnly"); // a named one another connection can write is allowed
    }

    [Test]
    public void A_file_uris_mode_replaces_the_Mode_keyword_as_in_SQLite()
    {
        // SQLite takes a URI's mode parameter in place of the open flags' mode: with mode=ro, Mode=Memory opens the file.
        PoolTests.Execute(Folder.ConnectionString(), "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        using var connection = new SaverDbConnection($"Data Source=file:{Folder.File()}?mode=ro;Mode=Memory");
        connection.Open();

        Scalar(connection, "SELECT count(*) FROM t").ShouldBe(1L);
        Should.Throw<SqliteException>(() => Exec(connection, "INSERT INTO t VALUES (2)")).SqliteErrorCode.ShouldBe(8); // SQLITE_READONLY
    }

    /// <summary>
    /// SaverDbConnection.DataSource is the database file's full path, also for a file: URI Data Source, as an open
    /// SqliteConnection reports it (sqlite3_db_filename).
    /// </summary>
    [Test]
    public void DataSource_of_a_connection_opened_by_a_file_URI_is_the_database_files_full_path_as_with_MDS()
    {
        var path = Folder.File();
        var connectionString = $"Data Source=file:{path}?cache=private";
        using var plain = new SqliteConnection(connectionString + ";Pooling=False");
        plain.Open();
        using var saver = new SaverDbConnection(connectionString);
        saver.Open();

        plain.DataSource.ShouldBe(path);
        saver.DataSource.ShouldBe(path);
    }

    /// <summary>
    /// ADO.NET providers (Microsoft.Data.Sqlite, SqlClient, Npgsql) refuse to change a command's Connection while a
    /// reader of the command is open, as SaverDbCommand does for it and for CommandText.
    /// </summary>
    [Test]
    public void Changing_a_commands_Connection_while_its_reader_is_open_throws_as_with_MDS()
    {
        using (var plain = new SqliteConnection($"Data Source={Folder.File("plain.db")};Pooling=False"))
        {
            plain.Open();
            using var plainCommand = plain.CreateCommand();
            plainCommand.CommandText = "SELECT 1";
            using var plainReader = plainCommand.ExecuteReader();
            Should.Throw<InvalidOperationException>(() => plainCommand.Connection = null);
        }

        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1";
        using var reader = command.ExecuteReader();

        Should.Throw<InvalidOperationException>(() => command.Connection = null).Message.ShouldContain("Connection");
        Should.Throw<InvalidOperationException>(() => ((DbCommand)command).Connection = new SaverDbConnection(Folder.ConnectionString()));
        command.Connection = connection; // no change
        reader.Close();
        command.Connection = null;
        command.Connection.ShouldBeNull();
    }

    /// <summary>
    /// "file:/dir/%FF.db" (the file named by the byte 0xFF, as SQLite decodes it) and "file:/dir/%25FF.db" (the file
    /// named "%FF.db") get pools of their own: .NET's Uri.UnescapeDataString would leave "%FF", which is no UTF-8, as it
    /// is, and make the two one. Here "%FF.db" exists and the byte-0xFF file does not: opening that one with mode=rw fails.
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
    /// SQLite follows a symbolic link before it applies "..", so "file:/f/link/../a.db" (link points to /f/sub/inner)
    /// opens /f/sub/a.db, not the "file:/f/a.db" that Path.GetFullPath would make of it: the two get pools of their own.
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
    /// URI, so Microsoft.Data.Sqlite cannot open either spelling. Such a string gets a pool of its own, not that of the
    /// plain "file:" URI of the same path: whichever came first would decide for both.
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

    [Test]
    public void The_write_gate_of_a_database_is_let_go_when_no_data_source_on_it_is_left()
    {
        var entriesBefore = SaverDataSource.SharedGateCount;
        var gates = new List<WeakReference>();
        for (var i = 0; i < 40; i++)
        {
            gates.Add(GateOfDisposedDataSource(Folder.ConnectionString(name: $"gone-{i}.db")));
        }

        using var kept = SaverDataSource.Create(Folder.ConnectionString(name: "kept.db"));
        GC.Collect();
        GC.WaitForPendingFinalizers();
        gates.ShouldAllBe(static gate => !gate.IsAlive);

        using var later = SaverDataSource.Create(Folder.ConnectionString(name: "later.db"));
        SaverDataSource.SharedGateCount.ShouldBeLessThanOrEqualTo(entriesBefore + 2); // the 40 collected gates' entries went
        using var again = SaverDataSource.Create(Folder.ConnectionString(name: "kept.db"));
        again.Executor.Gate.ShouldBeSameAs(kept.Executor.Gate);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference GateOfDisposedDataSource(string connectionString)
    {
        using var dataSource = SaverDataSource.Create(connectionString);
        using (var connection = dataSource.OpenConnection())
        {
            Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        }

        return new WeakReference(dataSource.Executor.Gate);
    }

    [Test]
    public void Separate_memory_pools_do_not_share_a_database()
    {
        using var first = SaverDataSource.Create("Data Source=:memory:");
        using var second = SaverDataSource.Create("Data Source=:memory:");
        using var a = first.OpenConnection();
        using var b = second.OpenConnection();

        Exec(a, "CREATE TABLE mine (x)");

        Scalar(b, "SELECT count(*) FROM sqlite_master WHERE name = 'mine'").ShouldBe(0L);
    }

    [TestCase("|DataDirectory|app.db")]
    [TestCase("|datadirectory|/app.db")]
    [TestCase("|DataDirectory|\\app.db")]
    public void DataDirectory_in_Data_Source_is_the_app_domains_DataDirectory_as_in_Microsoft_Data_Sqlite(string dataSource)
    {
        var previous = AppDomain.CurrentDomain.GetData("DataDirectory");
        AppDomain.CurrentDomain.SetData("DataDirectory", Folder.Path);
        try
        {
            using var connection = new SaverDbConnection($"Data Source={dataSource}");
            connection.DataSource.ShouldBe(Folder.File("app.db"));
            connection.Open();
            Exec(connection, "CREATE TABLE t (x)");
            File.Exists(Folder.File("app.db")).ShouldBeTrue();
        }
        finally
        {
            AppDomain.CurrentDomain.SetData("DataDirectory", previous);
        }
    }

    /// <summary>Without a DataDirectory, a leading |DataDirectory| is the application's base directory, not the current one.</summary>
    [Test]
    public void DataDirectory_in_Data_Source_is_the_base_directory_while_the_app_domains_DataDirectory_is_unset()
    {
        var previousDirectory = Environment.CurrentDirectory;
        var previous = AppDomain.CurrentDomain.GetData("DataDirectory");
        Environment.CurrentDirectory = Folder.Path;
        AppDomain.CurrentDomain.SetData("DataDirectory", null);
        try
        {
            using var connection = new SaverDbConnection("Data Source=|DataDirectory|app.db");

            connection.DataSource.ShouldBe(Path.Combine(AppContext.BaseDirectory, "app.db"));
        }
        finally
        {
            AppDomain.CurrentDomain.SetData("DataDirectory", previous);
            Environment.CurrentDirectory = previousDirectory;
        }
    }

    [Test]
    public void DataDirectory_in_Data_Source_follows_a_later_change_of_the_app_domains_DataDirectory_as_in_Microsoft_Data_Sqlite()
    {
        // A test fixture that gives each test a DataDirectory of its own keeps one connection string for all of them.
        var connectionString = $"Data Source=|DataDirectory|{Guid.NewGuid():N}.db";
        var first = Path.Combine(Folder.Path, "first");
        var second = Path.Combine(Folder.Path, "second");
        Directory.CreateDirectory(first);
        Directory.CreateDirectory(second);
        var previous = AppDomain.CurrentDomain.GetData("DataDirectory");
        try
        {
            AppDomain.CurrentDomain.SetData("DataDirectory", first);
            using (var connection = new SaverDbConnection(connectionString))
            {
                connection.DataSource.ShouldStartWith(first);
            }

            AppDomain.CurrentDomain.SetData("DataDirectory", second);
            using (var plain = new SqliteConnection(connectionString + ";Pooling=False"))
            {
                plain.Open();
                plain.DataSource.ShouldStartWith(second); // Microsoft.Data.Sqlite reads DataDirectory at each Open
            }

            using var saver = new SaverDbConnection(connectionString);
            saver.DataSource.ShouldStartWith(second);

            using var reused = new SaverDbConnection(connectionString);
            AppDomain.CurrentDomain.SetData("DataDirectory", first);
            reused.ConnectionString = connectionString; // set again, the same string: the DataDirectory of the moment
            reused.DataSource.ShouldStartWith(first);
        }
        finally
        {
            AppDomain.CurrentDomain.SetData("DataDirectory", previous);
        }
    }

    /// <summary>
    /// A relative Data Source with the application domain's DataDirectory set opens the file under that directory, as
    /// Microsoft.Data.Sqlite does (code that sets DataDirectory and names <c>app.db</c> read and wrote another file
    /// after swapping its provider: the current directory's; a hunt's finding); a later change of DataDirectory moves
    /// the connections of the same string, and with it unset (before and after) the current directory holds it.
    /// </summary>
    [TestCase("{0}")]
    [TestCase("./{0}")]
    [TestCase("sub/../{0}")]
    public void A_relative_Data_Source_opens_under_the_app_domains_DataDirectory_as_in_Microsoft_Data_Sqlite(string pattern)
    {
        var name = $"rel-{Guid.NewGuid():N}.db";
        var connectionString = "Data Source=" + string.Format(CultureInfo.InvariantCulture, pattern, name);
        var first = Path.Combine(Folder.Path, "first");
        var second = Path.Combine(Folder.Path, "second");
        Directory.CreateDirectory(Path.Combine(first, "sub"));
        Directory.CreateDirectory(Path.Combine(second, "sub"));
        var previous = AppDomain.CurrentDomain.GetData("DataDirectory");
        try
        {
            AppDomain.CurrentDomain.SetData("DataDirectory", null);
            new SaverDbConnection(connectionString).DataSource.ShouldStartWith(Environment.CurrentDirectory + Path.DirectorySeparatorChar);
            foreach (var directory in new[] { first, second })
            {
                AppDomain.CurrentDomain.SetData("DataDirectory", directory);
                string expected;
                using (var plain = new SqliteConnection(connectionString + ";Pooling=False"))
                {
                    plain.Open();
                    expected = plain.DataSource;
                }

                expected.ShouldBe(Path.Combine(directory, name));
                using var connection = new SaverDbConnection(connectionString);
                connection.Open();
                Scalar(connection, "SELECT file FROM pragma_database_list WHERE name = 'main'").ShouldBe(expected);
                Exec(connection, "CREATE TABLE t (x)");
            }

            AppDomain.CurrentDomain.SetData("DataDirectory", null);
            using var unset = new SaverDbConnection(connectionString);
            unset.DataSource.ShouldStartWith(Environment.CurrentDirectory + Path.DirectorySeparatorChar);
        }
        finally
        {
            AppDomain.CurrentDomain.SetData("DataDirectory", previous);
        }

        File.Exists(Path.Combine(first, name)).ShouldBeTrue();
        File.Exists(Path.Combine(second, name)).ShouldBeTrue();
        File.Exists(Path.Combine(Environment.CurrentDirectory, name)).ShouldBeFalse();
    }

    /// <summary>
    /// The shared data source of a string is found by the DataDirectory of the moment and opens its file under that
    /// same DataDirectory, even while another thread changes it (test fixtures giving each test a folder of its own):
    /// on the first form of the change above, the key and the path read it apart, and a change between the two reads
    /// kept the string's file in the other folder for good (a review: 245 of 6,000).
    /// </summary>
    [Test]
    public void A_DataDirectory_changed_on_another_thread_never_leaves_a_string_opening_in_the_other_folder()
    {
        var first = Directory.CreateDirectory(Path.Combine(Folder.Path, "first")).FullName;
        var second = Directory.CreateDirectory(Path.Combine(Folder.Path, "second")).FullName;
        var prefix = Guid.NewGuid().ToString("N");
        var previous = AppDomain.CurrentDomain.GetData("DataDirectory");
        const int Strings = 200; // of the 4,096 the table of shared strings keeps
        var wrong = new List<string>();
        try
        {
            using var stop = new CancellationTokenSource();
            var toggler = new Thread(() =>
            {
                for (var i = 0; !stop.IsCancellationRequested; i++)
                {
                    AppDomain.CurrentDomain.SetData("DataDirectory", i % 2 == 0 ? first : second);
                }
            });
            toggler.Start();
            try
            {
                for (var round = 0; round < 5; round++)
                {
                    for (var i = 0; i < Strings; i++)
                    {
                        _ = new SaverDbConnection($"Data Source={prefix}-{i}.db").DataSource;
                    }
                }
            }
            finally
            {
                stop.Cancel();
                toggler.Join();
            }

            foreach (var directory in new[] { first, second })
            {
                AppDomain.CurrentDomain.SetData("DataDirectory", directory);
                for (var i = 0; i < Strings; i++)
                {
                    var dataSource = new SaverDbConnection($"Data Source={prefix}-{i}.db").DataSource;
                    if (dataSource != Path.Combine(directory, $"{prefix}-{i}.db"))
                    {
                        wrong.Add($"DataDirectory {directory}: {dataSource}");
                    }
                }
            }
        }
        finally
        {
            AppDomain.CurrentDomain.SetData("DataDirectory", previous);
        }

        wrong.ShouldBeEmpty();
    }

    [TestCase("", 30)]
    [TestCase(";Pool Timeout=0", 0)]
    [TestCase(";Pool Timeout=0.5", 1)]
    [TestCase(";Pool Timeout=7", 7)]
    public void ConnectionTimeout_is_how_long_Open_waits_for_the_pool(string options, int seconds)
    {
        new SaverDbConnection($"Data Source={Folder.File()}{options}").ConnectionTimeout.ShouldBe(seconds);
        new SaverDbConnection().ConnectionTimeout.ShouldBe(30);
    }

    [Test]
    public void Connection_properties_behave_like_ADO_NET_expects()
    {
        var connectionString = $"Data Source={Folder.File()};  Max Pool Size = 2 ";
        using var connection = new SaverDbConnection(connectionString);
        var changes = new List<(ConnectionState From, ConnectionState To)>();
        connection.StateChange += (_, e) => changes.Add((e.OriginalState, e.CurrentState));

        connection.ConnectionString.ShouldBe(connectionString);
        connection.State.ShouldBe(ConnectionState.Closed);
        connection.Database.ShouldBe("main");
        connection.DataSource.ShouldBe(Folder.File());
        connection.ServerVersion.ShouldStartWith("3.");
        Should.Throw<InvalidOperationException>(() => connection.InnerConnection);

        connection.Open();
        connection.Open();
        connection.State.ShouldBe(ConnectionState.Open);
        Should.Throw<InvalidOperationException>(() => connection.ConnectionString = "Data Source=other.db");
        Should.Throw<NotSupportedException>(() => connection.ChangeDatabase("other"));
        Should.Throw<NotSupportedException>(() => connection.EnlistTransaction(null)).Message.ShouldContain("System.Transactions");
        connection.CanCreateBatch.ShouldBeFalse();
        Should.Throw<NotSupportedException>(() => connection.CreateBatch()).Message.ShouldContain("does not support DbBatch");
        Should.Throw<NotSupportedException>(() => SaverProviderFactory.Instance.CreateBatch()).Message.ShouldContain("separated by semicolons");
        Should.Throw<NotSupportedException>(() => SaverProviderFactory.Instance.CreateBatchCommand()).Message.ShouldContain("does not support DbBatch");
        connection.GetSchema().Rows.Count.ShouldBeGreaterThan(0);
        connection.Close();
        connection.Close();

        changes.ShouldBe([(ConnectionState.Closed, ConnectionState.Open), (ConnectionState.Open, ConnectionState.Closed)]);
    }

    /// <summary>
    /// A StateChange handler of Open finds the connection open and usable, and may close it and open it again: the open
    /// is over before the handlers run (an open still under way would refuse the second Open as "already opening").
    /// </summary>
    [Test]
    public void A_StateChange_handler_of_Open_finds_the_connection_open_and_may_close_and_open_it_again()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        var reopened = false;
        connection.StateChange += (_, e) =>
        {
            if (e.CurrentState == ConnectionState.Open && !reopened)
            {
                reopened = true;
                connection.State.ShouldBe(ConnectionState.Open);
                Scalar(connection, "SELECT 1").ShouldBe(1L);
                connection.Close();
                connection.Open();
            }
        };

        connection.Open();

        reopened.ShouldBeTrue();
        connection.State.ShouldBe(ConnectionState.Open);
    }

    /// <summary>
    /// GetSchema with a collection name, and with restrictions, answers as Microsoft.Data.Sqlite's does on the same
    /// database: the collection asked for, not the list of collections, and the restrictions passed on, not dropped.
    /// </summary>
    [Test]
    public void GetSchema_of_a_collection_and_with_restrictions_answers_as_MDS_does()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        using var plain = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        connection.Open();
        plain.Open();

        foreach (var collection in new[] { "MetaDataCollections", "ReservedWords" })
        {
            Describe(() => connection.GetSchema(collection)).ShouldBe(Describe(() => plain.GetSchema(collection)), collection);
        }

        Describe(() => connection.GetSchema("ReservedWords", ["restricted"])).ShouldBe(Describe(() => plain.GetSchema("ReservedWords", ["restricted"])));

        static string Describe(Func<DataTable> getSchema)
        {
            try
            {
                var table = getSchema();
                return $"{table.TableName}: {table.Rows.Count} rows";
            }
            catch (Exception error)
            {
                return $"{error.GetType().Name}: {error.Message}";
            }
        }
    }

    [Test]
    public void Commands_need_an_open_connection()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1";

        Should.Throw<InvalidOperationException>(() => command.ExecuteScalar()).Message.ShouldContain("open connection");
        Should.Throw<InvalidOperationException>(() => new SaverDbCommand("SELECT 1").ExecuteScalar()).Message.ShouldContain("Connection");
    }

    [Test]
    public void Transactions_do_not_nest_and_check_their_connection()
    {
        var connectionString = Folder.ConnectionString();
        using var connection = new SaverDbConnection(connectionString);
        using var other = new SaverDbConnection(connectionString);
        connection.Open();
        other.Open();
        using var transaction = connection.BeginTransaction();

        Should.Throw<InvalidOperationException>(() => connection.BeginTransaction()).Message.ShouldContain("does not nest");
        using var command = other.CreateCommand();
        command.CommandText = "SELECT 1";
        command.Transaction = transaction;
        Should.Throw<InvalidOperationException>(() => command.ExecuteScalar()).Message.ShouldContain("another connection");
        Should.Throw<ArgumentOutOfRangeException>(() => other.BeginTransaction(IsolationLevel.Snapshot));
    }

    /// <summary>
    /// A transaction begun as SQL (a BEGIN sent as a command) counts too: BeginTransaction and RunInTransaction refuse to
    /// nest in it as in one of their own, not with SQLite's "cannot start a transaction within a transaction".
    /// </summary>
    [Test]
    public void A_transaction_begun_as_SQL_is_not_nested_either()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        Exec(connection, "BEGIN");

        Should.Throw<InvalidOperationException>(() => connection.BeginTransaction()).Message.ShouldContain("does not nest");
        Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(_ => { })).Message.ShouldContain("does not nest");
        Exec(connection, "ROLLBACK");
        connection.BeginTransaction().Dispose();
    }

    /// <summary>
    /// RunInTransaction that opened the connection and then finds a transaction already open on it (begun by a
    /// StateChange handler of the Open) closes the connection again as it refuses, as it does once it has run.
    /// </summary>
    [Test]
    public async Task RunInTransaction_closes_the_connection_it_opened_when_it_refuses_to_begin([Values] bool async)
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.StateChange += (_, e) =>
        {
            if (e.CurrentState == ConnectionState.Open)
            {
                connection.BeginTransaction();
            }
        };

        var error = async
            ? await Should.ThrowAsync<InvalidOperationException>(() => connection.RunInTransactionAsync((_, _) => Task.CompletedTask))
            : Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(_ => { }));

        error.Message.ShouldContain("does not nest");
        connection.State.ShouldBe(ConnectionState.Closed);
    }

    [Test]
    public void A_command_created_while_a_transaction_is_open_carries_that_transaction_as_with_MDS()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var transaction = connection.BeginTransaction();

        // Microsoft.Data.Sqlite's CreateCommand sets the command's Transaction to the connection's open one, and code
        // written against it reads it back (to commit through it, or to pass it on to a helper's command).
        using var command = connection.CreateCommand();
        using var throughBase = ((DbConnection)connection).CreateCommand();

        command.Transaction.ShouldBeSameAs(transaction);
        throughBase.Transaction.ShouldBeSameAs(transaction);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void BeginTransaction_is_immediate_and_deferred_on_request(bool writeGate)
    {
        var connectionString = Folder.ConnectionString($"Busy Timeout=0;Retry=0;Default Timeout=1;Write Gate={writeGate}");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var writer = new SaverDbConnection(connectionString);
        using var other = new SaverDbConnection(connectionString);
        writer.Open();
        other.Open();

        using (var deferred = other.BeginTransaction(deferred: true))
        {
            using var immediate = writer.BeginTransaction();
            Exec(writer, "INSERT INTO t VALUES (1)");
            immediate.Commit();
        }

        using var holdsLock = writer.BeginTransaction();
        var busy = Should.Throw<SqliteException>(() => other.BeginTransaction()); // IMMEDIATE wants the write lock
        busy.SqliteErrorCode.ShouldBe(5);
        if (writeGate)
        {
            busy.Message.ShouldContain("write queue");
        }

        using var stillDeferred = other.BeginTransaction(deferred: true);
        Scalar(other, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    [Test]
    public void A_committed_transaction_is_durable_and_completed()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        transaction.Connection.ShouldBeSameAs(connection);
        transaction.IsolationLevel.ShouldBe(IsolationLevel.Serializable);
        using (var command = new SaverDbCommand("INSERT INTO t VALUES (1)", connection, transaction))
        {
            command.Transaction.ShouldBeSameAs(transaction); // as the constructor was given it, for code that reads it back
            command.ExecuteNonQuery().ShouldBe(1);
        }

        ((DbTransaction)transaction).Connection.ShouldBeSameAs(connection);
        transaction.Commit();

        transaction.Connection.ShouldBeNull();
        ((DbTransaction)transaction).Connection.ShouldBeNull(); // as code that holds a DbTransaction or IDbTransaction sees it
        ((IDbTransaction)transaction).Connection.ShouldBeNull();
        Should.Throw<InvalidOperationException>(transaction.Rollback);
        transaction.Dispose();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    [Test]
    public void A_reader_opened_with_CloseConnection_returns_the_connection_when_closed()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        var dataSource = SaverDataSource.GetShared(connectionString);
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var command = connection.CreateCommand();
        command.CommandText = "SELECT 1 UNION ALL SELECT 2";

        using (var reader = command.ExecuteReader(CommandBehavior.CloseConnection))
        {
            reader.Read().ShouldBeTrue();
            reader.GetInt64(0).ShouldBe(1L);
        }

        connection.State.ShouldBe(ConnectionState.Closed);
        dataSource.Statistics.Idle.ShouldBe(1);
    }

    [Test]
    public async Task A_reader_with_CloseConnection_whose_command_fails_returns_the_connection_as_with_MDS(
        [Values] bool async,
        [Values("INSERT INTO t VALUES (1)", "SELECT abs(-9223372036854775807 - 1)")] string sql)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE); INSERT INTO t VALUES (1)");
        var dataSource = SaverDataSource.GetShared(connectionString);

        // As in a helper that opens a connection and returns ExecuteReader(CloseConnection): when the command fails
        // there is no reader, so nothing but the reader's own failure can give the connection back.
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;

        await Should.ThrowAsync<SqliteException>(async () =>
        {
            if (async)
            {
                _ = await command.ExecuteReaderAsync(CommandBehavior.CloseConnection);
            }
            else
            {
                _ = command.ExecuteReader(CommandBehavior.CloseConnection);
            }
        });

        // Microsoft.Data.Sqlite's reader closes the connection when the statement it runs first fails.
        connection.State.ShouldBe(ConnectionState.Closed);
        dataSource.Statistics.InUse.ShouldBe(0);
    }

    internal static object? Pragma(SaverDbConnection connection, string name) => Scalar(connection, "PRAGMA " + name);

    internal static object? Scalar(SaverDbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    internal static int Exec(SaverDbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteNonQuery();
    }

    private sealed class DbDataReaderHolder
    {
        public System.Data.Common.DbDataReader? Reader { get; set; }
    }

    private static int CurrentGeneration(SaverDataSource dataSource)
        => (int)typeof(SqliteSaver.Data.Pooling.ConnectionPool)
            .GetField("_generation", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!
            .GetValue(dataSource.Pool)!;
}
