using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Pooling;

namespace SqliteSaver.Data.Tests.Pooling;

/// <summary>
/// The PRAGMAs a renter's command may set, found in its text as SQLite reads it, so that a setting that cannot be set
/// back closes the connection rather than reaching the next renter (a bug hunt's findings: a comment marker inside a
/// string, or a quoted name without white space after PRAGMA, hid the PRAGMA; settings of a database the connection
/// initializer attached were neither set back nor closed).
/// </summary>
public class PragmaTextTests : DatabaseTest
{
    [TestCase("PRAGMA case_sensitive_like = 1")]
    [TestCase("pragma\nCase_Sensitive_Like\n=\n1")]
    [TestCase("PRAGMA /* a */ main /* b */ . -- c\n case_sensitive_like /* d */ = 1")]
    [TestCase("SELECT '--'; PRAGMA case_sensitive_like = 1")]
    [TestCase("SELECT '/*'; PRAGMA case_sensitive_like = 1")]
    [TestCase("SELECT 'it''s --'; PRAGMA case_sensitive_like = 1")]
    [TestCase("SELECT 1 AS \"--\"; PRAGMA case_sensitive_like = 1")]
    [TestCase("SELECT 1 AS [/*]; PRAGMA case_sensitive_like = 1")]
    [TestCase("SELECT 1 AS `--`; PRAGMA case_sensitive_like = 1")]
    [TestCase("PRAGMA\"case_sensitive_like\"=1")]
    [TestCase("PRAGMA[case_sensitive_like]=1")]
    [TestCase("PRAGMA'case_sensitive_like'=1")]
    [TestCase("PRAGMA`case_sensitive_like`(1)")]
    [TestCase("\uFEFFPRAGMA case_sensitive_like = 1")] // a byte order mark, white space to SQLite where a token begins
    [TestCase("SELECT 1;\uFEFFPRAGMA case_sensitive_like = 1")]
    [TestCase("PRAGMA \uFEFFcase_sensitive_like = 1")]
    public void Case_sensitive_like_is_not_handed_on_however_the_text_is_written(string sql)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            ConnectionTests.Exec(connection, sql);
            ConnectionTests.Scalar(connection, "SELECT 'a' LIKE 'A'").ShouldBe(0L); // it was set
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "SELECT 'a' LIKE 'A'").ShouldBe(1L);
    }

    /// <summary>
    /// A parameter written as a Tcl array element, which SQLite reads as one token up to its <c>)</c>: a quote or
    /// comment marker inside it opened nothing (a review's finding).
    /// </summary>
    [TestCase("$a(')")]
    [TestCase("$a(/*)")]
    [TestCase(":a(--)")]
    [TestCase("@a([)")]
    [TestCase("$a::b(')")]
    [TestCase("$a::(')")] // a :: pair, then the ( of the array
    public void Case_sensitive_like_after_a_parameter_with_a_quote_in_it_is_not_handed_on(string parameter)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = $"SELECT {parameter};PRAGMA case_sensitive_like=1";
            command.Parameters.Add(new SqliteParameter(parameter, 1));
            command.ExecuteNonQuery();
            ConnectionTests.Scalar(connection, "SELECT 'a' LIKE 'A'").ShouldBe(0L); // it was set
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "SELECT 'a' LIKE 'A'").ShouldBe(1L);
    }

    [TestCase("SELECT '--'; PRAGMA temp.cache_size = 7")]
    [TestCase("SELECT 'a/*b'; PRAGMA temp.cache_size = 7")]
    [TestCase("PRAGMA[temp].cache_size = 7")]
    [TestCase("PRAGMA\"temp\".cache_size = 7")]
    [TestCase("PRAGMA 'temp' . \"cache_size\" = 7")]
    public void A_temp_setting_is_not_handed_on_however_the_text_is_written(string sql)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        object? before;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            before = ConnectionTests.Scalar(connection, "PRAGMA temp.cache_size");
            ConnectionTests.Exec(connection, sql);
            ConnectionTests.Scalar(connection, "PRAGMA temp.cache_size").ShouldBe(7L);
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "PRAGMA temp.cache_size").ShouldBe(before);
    }

    [TestCase("aux", "PRAGMA aux.max_page_count = 3", "max_page_count")]
    [TestCase("aux", "PRAGMA aux.cache_size = 7", "cache_size")]
    [TestCase("aux", "PRAGMA AUX.synchronous = 0", "synchronous")]
    [TestCase("aux", "PRAGMA aux.journal_mode = MEMORY", "journal_mode")]
    [TestCase("aux", "PRAGMA journal_mode = MEMORY", "journal_mode")] // without a schema: every attached database
    [TestCase("aux", "PRAGMA secure_delete = 1", "secure_delete")] // likewise
    [TestCase("aux", "PRAGMA mmap_size = 4096", "mmap_size")] // likewise
    [TestCase("aux-1", "PRAGMA \"aux-1\".synchronous = 0", "synchronous")]
    [TestCase("aux db", "PRAGMA [aux db].synchronous = 0", "synchronous")]
    [TestCase("a\"b", "PRAGMA \"a\"\"b\".synchronous = 0", "synchronous")]
    public void A_setting_of_a_database_the_initializer_attached_is_not_handed_on(string schema, string sql, string pragma)
    {
        using var dataSource = AttachingOther(schema);
        var quoted = "\"" + schema.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
        object? before;
        using (var connection = dataSource.OpenConnection())
        {
            before = ConnectionTests.Scalar(connection, $"PRAGMA {quoted}.{pragma}");
            ConnectionTests.Exec(connection, sql);
            ConnectionTests.Scalar(connection, $"PRAGMA {quoted}.{pragma}").ShouldNotBe(before); // it was set
        }

        using var next = dataSource.OpenConnection();
        ConnectionTests.Scalar(next, $"PRAGMA {quoted}.{pragma}").ShouldBe(before);
        ConnectionTests.Scalar(next, "PRAGMA main.journal_mode").ShouldBe("wal");
    }

    /// <summary>
    /// Setting the PRAGMAs back after a command that may have set one (here one that only reads) wrote main's
    /// secure_delete, mmap_size and locking_mode over those the connection initializer gave its attached database, as
    /// SQLite applies them to every database when no schema is named (a review's finding).
    /// </summary>
    [Test]
    public void Setting_back_keeps_what_the_initializer_set_on_its_attached_database()
    {
        var other = Folder.File("other.db");
        using var dataSource = Initialized(
            Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0"),
            "ATTACH $file AS aux; PRAGMA aux.secure_delete = FAST; PRAGMA aux.mmap_size = 65536; PRAGMA aux.locking_mode = EXCLUSIVE",
            other);
        using (var connection = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(connection, "PRAGMA table_info(t)");
        }

        using var next = dataSource.OpenConnection();
        ConnectionTests.Scalar(next, "PRAGMA aux.secure_delete").ShouldBe(2L); // FAST, which "= 2" would not set
        ConnectionTests.Scalar(next, "PRAGMA aux.mmap_size").ShouldBe(65536L);
        ConnectionTests.Scalar(next, "PRAGMA aux.locking_mode").ShouldBe("exclusive");
    }

    /// <summary>
    /// A query_only the connection initializer set stays for every renter: setting the PRAGMAs back lifts it first, so
    /// that it cannot stop the others, and sets it again last (a hunt's mutation that left it lifted passed every test).
    /// </summary>
    [Test]
    public void Query_only_the_initializer_set_is_set_again_after_the_PRAGMAs_are_set_back()
    {
        using var dataSource = Initialized(Folder.ConnectionString("Max Pool Size=1"), "PRAGMA query_only = 1", Folder.File());
        using (var connection = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(connection, "PRAGMA cache_size = 7");
        }

        using var next = dataSource.OpenConnection();
        ConnectionTests.Scalar(next, "PRAGMA query_only").ShouldBe(1L);
    }

    /// <summary>
    /// The PRAGMAs SQLite applies to every database when no schema is named, set back so that the temp schema and the
    /// databases a later renter attaches get the connection's values again, not a renter's (a review of the commit
    /// that named main in setting them back).
    /// </summary>
    [Test]
    public void Unqualified_settings_a_renter_made_reach_neither_temp_nor_a_later_attachment()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        object? secureDelete, mmapSize;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            secureDelete = ConnectionTests.Scalar(connection, "PRAGMA temp.secure_delete");
            mmapSize = ConnectionTests.Scalar(connection, "PRAGMA mmap_size");
            ConnectionTests.Exec(connection, "PRAGMA secure_delete = FAST; PRAGMA mmap_size = 1048576");
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "PRAGMA temp.secure_delete").ShouldBe(secureDelete);
        using var attach = next.CreateCommand();
        attach.CommandText = "ATTACH $file AS later";
        attach.Parameters.AddWithValue("$file", Folder.File("later.db"));
        attach.ExecuteNonQuery();
        ConnectionTests.Scalar(next, "PRAGMA later.mmap_size").ShouldBe(mmapSize);
    }

    /// <summary>
    /// SQLite reports locking_mode EXCLUSIVE for a database in memory: read for main, it was taken for the connection's
    /// own setting, and a renter's EXCLUSIVE, which locks the attached file, no longer closed the connection (a review).
    /// </summary>
    [Test]
    public void Exclusive_locking_a_renter_set_beside_a_database_in_memory_is_not_handed_on()
    {
        var other = Folder.File("other.db");
        PoolTests.Execute(Folder.ConnectionString("Pooling=False", "other.db"), "CREATE TABLE t (x)");
        using var dataSource = Initialized(
            $"Data Source=memory-{Guid.NewGuid():N};Mode=Memory;Cache=Shared;Max Pool Size=1",
            "ATTACH $file AS aux",
            new Uri(other).AbsoluteUri + "?mode=rw");
        using (var connection = dataSource.OpenConnection())
        {
            ConnectionTests.Scalar(connection, "PRAGMA main.locking_mode").ShouldBe("exclusive"); // SQLite's answer for a database in memory
            ConnectionTests.Exec(connection, "PRAGMA locking_mode = EXCLUSIVE");
            ConnectionTests.Exec(connection, "INSERT INTO aux.t VALUES (1)"); // takes aux's lock and keeps it
        }

        using var next = dataSource.OpenConnection();
        ConnectionTests.Scalar(next, "PRAGMA aux.locking_mode").ShouldBe("normal");
        ConnectionTests.Scalar(next, "PRAGMA locking_mode").ShouldBe("normal"); // for databases attached later
    }

    /// <summary>
    /// A connection initializer that sets main's locking mode alone (<c>PRAGMA main.locking_mode = EXCLUSIVE</c>): the
    /// reset read the mode for databases attached later, NORMAL, and wrote it over main's, and a renter's EXCLUSIVE then
    /// closed the connection, which README says stays when the initializer set EXCLUSIVE (a review).
    /// </summary>
    [Test]
    public void Exclusive_locking_the_initializer_set_on_main_alone_is_kept([Values] bool renterSetsExclusive)
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0;Journal Mode=Delete"))
            .UseConnectionInitializer(connection =>
            {
                using var command = connection.CreateCommand();
                command.CommandText = "PRAGMA main.locking_mode = EXCLUSIVE";
                command.ExecuteNonQuery();
            })
            .Build();
        SqliteConnection inner;
        using (var connection = dataSource.OpenConnection())
        {
            inner = connection.InnerConnection;
            ConnectionTests.Exec(connection, renterSetsExclusive ? "PRAGMA locking_mode = EXCLUSIVE" : "PRAGMA cache_size = 100");
        }

        using var next = dataSource.OpenConnection();
        next.InnerConnection.ShouldBeSameAs(inner);
        ConnectionTests.Scalar(next, "PRAGMA main.locking_mode").ShouldBe("exclusive");
    }

    /// <summary>
    /// A renter's locking_mode, named while the connection was EXCLUSIVE as the initializer set it (so kept), is
    /// forgotten with its rental: after a later renter set NORMAL through InnerConnection, which stays, a rental that
    /// names no locking_mode keeps the connection (a hunt's mutation that kept the note across rentals closed it).
    /// </summary>
    [Test]
    public void A_locking_mode_a_renter_named_is_not_held_against_later_rentals()
    {
        using var dataSource = Initialized(
            Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0;Journal Mode=Delete"),
            "PRAGMA locking_mode = EXCLUSIVE",
            Folder.File());
        SqliteConnection inner;
        using (var connection = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(connection, "PRAGMA locking_mode = EXCLUSIVE");
        }

        using (var connection = dataSource.OpenConnection())
        {
            inner = connection.InnerConnection;
            using var command = inner.CreateCommand();
            command.CommandText = "PRAGMA locking_mode = NORMAL";
            command.ExecuteNonQuery();
        }

        using (var connection = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(connection, "PRAGMA cache_size = 100");
        }

        using var next = dataSource.OpenConnection();
        next.InnerConnection.ShouldBeSameAs(inner);
        ConnectionTests.Scalar(next, "PRAGMA locking_mode").ShouldBe("normal");
    }

    /// <summary>
    /// A renter's EXCLUSIVE locking (by command, or through InnerConnection) also switches the databases the connection
    /// initializer attached, whose lock SQLite keeps while the connection sits idle: the connection counted as
    /// exclusive, and was handed on, when main alone was (set so by the initializer, or an immutable file, which
    /// SQLite always reports EXCLUSIVE), and the InnerConnection check read main's mode alone (a review); and one set
    /// back to NORMAL through InnerConnection keeps its lock until the database is next read (the next review).
    /// </summary>
    [Test]
    public void Exclusive_locking_a_renter_left_on_an_attached_database_does_not_stay(
        [Values("main exclusive", "immutable main", "main set back through InnerConnection", "all set back through InnerConnection")] string setup)
    {
        var aux = Folder.File("aux.db");
        PoolTests.Execute(Folder.ConnectionString("Pooling=False", "aux.db"), "CREATE TABLE t (x)");
        PoolTests.Execute(Folder.ConnectionString("Pooling=False;Journal Mode=Delete"), "CREATE TABLE t (x)");
        var dataSourceText = setup == "immutable main" ? $"file:{Folder.File()}?immutable=1" : Folder.File();
        using var dataSource = Initialized(
            $"Data Source={dataSourceText};Max Pool Size=1;Checkpoint Interval=0;Journal Mode=Delete",
            "ATTACH $file AS aux" + (setup == "main exclusive" ? "; PRAGMA main.locking_mode = EXCLUSIVE" : string.Empty),
            aux);
        using (var connection = dataSource.OpenConnection())
        {
            using var command = connection.InnerConnection.CreateCommand();
            command.CommandText = "PRAGMA locking_mode = EXCLUSIVE; "
                + (setup == "main set back through InnerConnection" ? "PRAGMA main.locking_mode = NORMAL; " : string.Empty)
                + "INSERT INTO aux.t VALUES (1)"
                + (setup == "all set back through InnerConnection" ? "; PRAGMA locking_mode = NORMAL" : string.Empty);
            command.ExecuteNonQuery();
        }

        WritesElsewhere(aux);
    }

    /// <summary>
    /// The read that releases a lock EXCLUSIVE mode kept must not take one: an attached database the connection
    /// initializer left in EXCLUSIVE mode, which a renter never touched, was read after InnerConnection use, and SQLite
    /// kept that read's lock on the idle connection, so no other process could write it (a review).
    /// </summary>
    [Test]
    public void An_attached_database_the_initializer_left_exclusive_is_not_locked_by_a_return_after_InnerConnection_use()
    {
        var aux = Folder.File("aux.db");
        PoolTests.Execute(Folder.ConnectionString("Pooling=False", "aux.db"), "PRAGMA journal_mode = DELETE; CREATE TABLE t (x)");
        PoolTests.Execute(Folder.ConnectionString("Pooling=False;Journal Mode=Delete"), "CREATE TABLE t (x)");
        using var dataSource = Initialized(
            Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0;Journal Mode=Delete"),
            "ATTACH $file AS aux; PRAGMA aux.locking_mode = EXCLUSIVE",
            aux);
        using (var connection = dataSource.OpenConnection())
        {
            using var command = connection.InnerConnection.CreateCommand();
            command.CommandText = "SELECT count(*) FROM main.t";
            command.ExecuteScalar();
        }

        WritesElsewhere(aux);
    }

    /// <summary>
    /// The read of the databases the connection initializer attached, made without waiting for a lock as a connection
    /// goes back after InnerConnection use, gives the connection its busy timeout back after it (a hunt's mutation that
    /// left the waits off passed every test: the next renter met every lock at once).
    /// </summary>
    [Test]
    public void The_busy_timeout_is_back_after_the_attached_databases_are_read_on_a_return_after_InnerConnection_use()
    {
        using var dataSource = Initialized(Folder.ConnectionString("Max Pool Size=1;Busy Timeout=4321"), "ATTACH $file AS aux", Folder.File("aux.db"));
        Microsoft.Data.Sqlite.SqliteConnection inner;
        using (var connection = dataSource.OpenConnection())
        {
            inner = connection.InnerConnection;
        }

        using var next = dataSource.OpenConnection();
        next.InnerConnection.ShouldBeSameAs(inner);
        ConnectionTests.Scalar(next, "PRAGMA busy_timeout").ShouldBe(4321L);
    }

    /// <summary>
    /// A stream left open past Close keeps a statement active: the read that releases a kept lock then took a lock on
    /// an attached database the renter never touched, which SQLite kept until the stream was disposed, even on the
    /// closed connection (a review). GetSchema uses InnerConnection too.
    /// </summary>
    [Test]
    public void A_stream_left_open_after_InnerConnection_use_does_not_lock_an_untouched_attached_database([Values] bool getSchema)
    {
        var aux = Folder.File("aux.db");
        PoolTests.Execute(Folder.ConnectionString("Pooling=False", "aux.db"), "PRAGMA journal_mode = DELETE; CREATE TABLE t (x)");
        PoolTests.Execute(Folder.ConnectionString("Pooling=False;Journal Mode=Delete"), "CREATE TABLE t (x BLOB); INSERT INTO t VALUES (x'0102')");
        using var dataSource = Initialized(Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0;Journal Mode=Delete"), "ATTACH $file AS aux", aux);
        Stream stream;
        using (var connection = dataSource.OpenConnection())
        {
            _ = getSchema ? connection.GetSchema() : (object)connection.InnerConnection;
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT rowid, x FROM main.t";
            using var reader = command.ExecuteReader();
            reader.Read().ShouldBeTrue();
            stream = reader.GetStream(1);
        }

        using (stream)
        {
            WritesElsewhere(aux);
        }
    }

    /// <summary>
    /// A database SQLite always reports in EXCLUSIVE locking mode (one in memory, an immutable file) closed the
    /// connection at every return after any use of InnerConnection, a plain SELECT included (a review of the change
    /// above): only a mode that became EXCLUSIVE counts.
    /// </summary>
    [Test]
    public void A_database_always_reported_exclusive_does_not_close_the_connection_after_InnerConnection_use(
        [Values("attached in memory", "immutable main")] string setup)
    {
        var aux = Folder.File("aux.db");
        PoolTests.Execute(Folder.ConnectionString("Pooling=False"), "CREATE TABLE t (x)");
        var dataSourceText = setup == "immutable main" ? $"file:{Folder.File()}?immutable=1" : Folder.File();
        using var dataSource = Initialized(
            $"Data Source={dataSourceText};Max Pool Size=1;Checkpoint Interval=0",
            "ATTACH $file AS aux",
            setup == "attached in memory" ? ":memory:" : aux);
        SqliteConnection inner;
        using (var connection = dataSource.OpenConnection())
        {
            inner = connection.InnerConnection;
            using var command = inner.CreateCommand();
            command.CommandText = "SELECT 1";
            command.ExecuteScalar();
        }

        using var next = dataSource.OpenConnection();
        next.InnerConnection.ShouldBeSameAs(inner);
    }

    /// <summary>
    /// The databases the connection initializer attached were kept as one string cut at U+001E and U+001F: a file
    /// path holding the first failed every open (and left the file open), a schema name holding the second was set
    /// back under another name (a review). NUL, which neither can hold, separates them now.
    /// </summary>
    [Test]
    public void An_attachment_whose_path_or_name_holds_a_control_character_is_set_back([Values] bool inPath)
    {
        var other = Folder.File(inPath ? "a\u001eb.db" : "other.db");
        var schema = inPath ? "aux" : "a\u001fb";
        var quoted = "\"" + schema + "\"";
        using var dataSource = Initialized(
            Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0"),
            $"ATTACH $file AS {quoted}; PRAGMA {quoted}.secure_delete = 1",
            other);
        using (var connection = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(connection, "PRAGMA secure_delete = 0");
        }

        using var next = dataSource.OpenConnection();
        ConnectionTests.Scalar(next, $"PRAGMA {quoted}.secure_delete").ShouldBe(1L);
    }

    [TestCase("PRAGMA aux.table_info(t)")]
    [TestCase("PRAGMA aux.wal_checkpoint(PASSIVE)")]
    [TestCase("PRAGMA temp.index_list('t')")]
    [TestCase("PRAGMA main.synchronous = 0")] // set back, as without a schema
    [TestCase("PRAGMA aux.synchronous")] // read
    [TestCase("SELECT 'PRAGMA aux.synchronous = 0'")]
    [TestCase("SELECT 1 /* PRAGMA case_sensitive_like = 1 */")]
    [TestCase("SELECT 1 -- PRAGMA aux.cache_size = 7")]
    public void What_sets_nothing_that_stays_does_not_close_the_connection(string sql)
    {
        using var dataSource = AttachingOther("aux");
        SqliteConnection inner;
        using (var connection = dataSource.OpenConnection())
        {
            inner = connection.InnerConnection;
            ConnectionTests.Exec(connection, sql);
        }

        using var next = dataSource.OpenConnection();
        next.InnerConnection.ShouldBeSameAs(inner);
    }

    [TestCase("PRAGMA x = 1", null, "x")]
    [TestCase("PRAGMA s.x(1)", "s", "x")]
    [TestCase("pragma/**/\"s\"\"t\"/**/./**/[x y]/**/=/**/1", "s\"t", "x y")]
    [TestCase("PRAGMA `a``b`.'c''d' = 1", "a`b", "c'd")]
    [TestCase("SELECT '--'; PRAGMA x = 1", null, "x")]
    [TestCase("SELECT \"/*\"; PRAGMA x = 1", null, "x")]
    [TestCase("EXPLAIN PRAGMA x = 1", null, "x")]
    [TestCase("SELECT $a(');PRAGMA x=1", null, "x")]
    [TestCase("SELECT :a(--);PRAGMA x=1", null, "x")]
    [TestCase("SELECT @a([);PRAGMA x=1", null, "x")]
    [TestCase("SELECT #a(/*);PRAGMA x=1", null, "x")]
    [TestCase("SELECT $a::b(');PRAGMA x=1", null, "x")]
    [TestCase("SELECT $a::(');PRAGMA x=1", null, "x")]
    [TestCase("PRAGMA\tx=1", null, "x")]
    [TestCase("PRAGMA\fx=1", null, "x")]
    [TestCase("PRAGMA\rx=1", null, "x")]
    [TestCase("PRAGMA \u00e9.x = 1", "\u00e9", "x")] // an attached database's name past ASCII
    [TestCase("PRAGMA s$t.x = 1", "s$t", "x")]
    [TestCase("PRAGMA [a[[b].x = 1", "a[[b", "x")] // nothing is doubled inside [ ]
    [TestCase("PRAGMA x = 1 -", null, "x")] // text that ends where a comment or a :: pair could begin
    [TestCase("PRAGMA x = 1 /", null, "x")]
    [TestCase("PRAGMA x = $a:", null, "x")]
    public void A_PRAGMA_that_may_set_is_found(string sql, string? schema, string name)
        => PragmaSettings.Of(sql).ShouldBe(new[] { (schema, name) });

    [TestCase("PRAGMA x")]
    [TestCase("PRAGMA s.x")]
    [TestCase("SELECT 'PRAGMA x = 1'")]
    [TestCase("SELECT \"PRAGMA\" = 1")]
    [TestCase("-- PRAGMA x = 1")]
    [TestCase("/* PRAGMA x = 1")]
    [TestCase("/*/ PRAGMA x = 1 */")] // the * that opens the comment does not close it
    [TestCase("SELECT 'unterminated; PRAGMA x = 1")]
    [TestCase("SELECT $a( ');PRAGMA x=1")] // the parameter ends at the white space: the string runs on
    [TestCase("PRAGMA")]
    [TestCase("")]
    public void Text_that_sets_no_PRAGMA_finds_none(string sql)
        => PragmaSettings.Of(sql).ShouldBeEmpty();

    /// <summary>A data source whose connection initializer runs <paramref name="sql"/> with <c>$file</c> bound to <paramref name="file"/>.</summary>
    private static SaverDataSource Initialized(string connectionString, string sql, string file)
        => new SaverDataSourceBuilder(connectionString)
            .UseConnectionInitializer(connection =>
            {
                using var command = connection.CreateCommand();
                command.CommandText = sql;
                command.Parameters.AddWithValue("$file", file);
                command.ExecuteNonQuery();
            })
            .Build();

    /// <summary>A write to the table t of <paramref name="file"/> by another connection, as another process would, that waits at most a second.</summary>
    private static void WritesElsewhere(string file)
    {
        using var elsewhere = new SqliteConnection($"Data Source={file};Pooling=False;Default Timeout=1");
        elsewhere.Open();
        using var write = elsewhere.CreateCommand();
        write.CommandText = "INSERT INTO t VALUES (2)";
        Should.NotThrow(() => write.ExecuteNonQuery());
    }

    /// <summary>A data source whose connection initializer attaches other.db, with a table, under <paramref name="schema"/>.</summary>
    private SaverDataSource AttachingOther(string schema)
    {
        var quoted = "\"" + schema.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
        return Initialized(
            Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0"),
            $"ATTACH $file AS {quoted}; CREATE TABLE IF NOT EXISTS {quoted}.t (x)",
            Folder.File("other.db"));
    }
}
