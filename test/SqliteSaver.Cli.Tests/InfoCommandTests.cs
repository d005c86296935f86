using Shouldly;

namespace SqliteSaver.Cli.Tests;

/// <summary><c>info</c>: what a database holds, read without creating it, and whether its write lock is held right now.</summary>
public class InfoCommandTests : CliTest
{
    [Test]
    public void Json_reports_the_database_and_its_wal()
    {
        var path = PathOf();
        using var keepOpen = CreateWalDatabase(path);
        Execute(keepOpen, "DELETE FROM item WHERE id > 100; PRAGMA wal_checkpoint(TRUNCATE);");

        var run = CliRun.Of("info", path, "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Error.ShouldBeEmpty();
        var json = run.Json();
        json.EnumerateObject().Select(p => p.Name).ShouldBe([
            "database", "sqliteVersion", "journalMode", "pageSize", "pageCount", "freelistPages", "databaseBytes", "walBytes", "walFrames", "writeLocked"]);
        json.GetProperty("database").GetString().ShouldBe(path);
        json.GetProperty("sqliteVersion").GetString()!.ShouldMatch(@"^3\.\d+\.\d+$");
        json.GetProperty("journalMode").GetString().ShouldBe("wal");
        json.GetProperty("pageSize").GetInt64().ShouldBe(4096);
        json.GetProperty("pageCount").GetInt64().ShouldBeGreaterThan(1);
        json.GetProperty("freelistPages").GetInt64().ShouldBeGreaterThan(0); // the deleted rows' pages
        json.GetProperty("databaseBytes").GetInt64().ShouldBe(json.GetProperty("pageSize").GetInt64() * json.GetProperty("pageCount").GetInt64());
        json.GetProperty("walBytes").GetInt64().ShouldBe(0);
        json.GetProperty("walFrames").GetInt64().ShouldBe(0);
        json.GetProperty("writeLocked").GetBoolean().ShouldBeFalse();
    }

    [Test]
    public void A_wal_left_by_a_writer_that_crashed_is_left_as_it_is()
    {
        var original = PathOf("original.db");
        var crashed = PathOf("crashed.db");
        using (var writer = CreateWalDatabase(original))
        {
            // The files as a writer that crashed now would leave them: its rows only in the -wal file.
            File.Copy(original, crashed);
            File.Copy(original + "-wal", crashed + "-wal");
        }

        var database = File.ReadAllBytes(crashed);
        var wal = File.ReadAllBytes(crashed + "-wal");
        wal.Length.ShouldBeGreaterThan(0);

        var run = CliRun.Of("info", crashed, "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Json().GetProperty("walFrames").GetInt64().ShouldBeGreaterThan(0);
        (File.ReadAllBytes(crashed).SequenceEqual(database)).ShouldBeTrue("info checkpointed the -wal file into the database");
        (File.ReadAllBytes(crashed + "-wal").SequenceEqual(wal)).ShouldBeTrue("info changed or deleted the -wal file");
    }

    [Test]
    public void A_wal_left_by_a_writer_that_crashed_is_left_as_it_is_when_the_path_is_a_symbolic_link()
    {
        // SQLite follows a symbolic link to the database and keeps the -wal file next to the file it points to.
        var original = PathOf("original.db");
        Directory.CreateDirectory(PathOf("real"));
        var crashed = Path.Combine(PathOf("real"), "crashed.db");
        using (var writer = CreateWalDatabase(original))
        {
            File.Copy(original, crashed);
            File.Copy(original + "-wal", crashed + "-wal");
        }

        var link = PathOf("link.db");
        File.CreateSymbolicLink(link, crashed);
        var database = File.ReadAllBytes(crashed);
        var wal = File.ReadAllBytes(crashed + "-wal");

        var run = CliRun.Of("info", link, "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Json().GetProperty("walBytes").GetInt64().ShouldBe(wal.Length);
        run.Json().GetProperty("walFrames").GetInt64().ShouldBeGreaterThan(0);
        (File.ReadAllBytes(crashed).SequenceEqual(database)).ShouldBeTrue("info checkpointed the -wal file into the database");
        File.Exists(crashed + "-wal").ShouldBeTrue("info deleted the -wal file");
    }

    /// <summary>
    /// A <c>-wal</c> file that holds only the frames of a transaction that never committed (its pages spilled there
    /// before a crash) is left too: info found no committed frame in it, and its write-lock check, closing last,
    /// deleted it (a bug hunt's finding).
    /// </summary>
    [Test]
    public void A_wal_of_uncommitted_frames_left_by_a_writer_that_crashed_is_left_as_it_is()
    {
        var original = PathOf("original.db");
        var crashed = PathOf("crashed.db");
        using (var writer = CreateWalDatabase(original, rows: 0))
        {
            Execute(writer, """
                PRAGMA wal_checkpoint(TRUNCATE);
                PRAGMA cache_size = 10;
                BEGIN;
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
                INSERT INTO item (text) SELECT printf('%0500d', i) FROM n;
                """);
            File.Copy(original, crashed); // as a crash now would leave them: the transaction's pages spilled into the -wal file
            File.Copy(original + "-wal", crashed + "-wal");
            Execute(writer, "ROLLBACK");
        }

        var database = File.ReadAllBytes(crashed);
        var wal = File.ReadAllBytes(crashed + "-wal");
        wal.Length.ShouldBeGreaterThan(0);

        var run = CliRun.Of("info", crashed, "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Json().GetProperty("walBytes").GetInt64().ShouldBe(wal.Length);
        run.Json().GetProperty("walFrames").GetInt64().ShouldBe(0);
        (File.ReadAllBytes(crashed).SequenceEqual(database)).ShouldBeTrue("info changed the database");
        File.Exists(crashed + "-wal").ShouldBeTrue("info deleted the -wal file");
        (File.ReadAllBytes(crashed + "-wal").SequenceEqual(wal)).ShouldBeTrue("info changed the -wal file");
    }

    /// <summary>Through a symbolic link, the file size is the database file's, not the link's (the length of the path it holds; a bug hunt's finding).</summary>
    [Test]
    public void Through_a_symbolic_link_the_file_size_is_the_database_files()
    {
        var target = PathOf("target.db");
        CreateWalDatabase(target).Dispose(); // closing checkpoints: the database file holds every page
        var link = PathOf("link.db");
        File.CreateSymbolicLink(link, target);

        var json = CliRun.Of("info", link, "--json").Json();

        json.GetProperty("databaseBytes").GetInt64().ShouldBe(new FileInfo(target).Length);
        json.GetProperty("databaseBytes").GetInt64().ShouldBe(json.GetProperty("pageCount").GetInt64() * json.GetProperty("pageSize").GetInt64());
    }

    [Test]
    public void It_tells_when_another_connection_holds_the_write_lock()
    {
        var path = PathOf();
        using var writer = CreateWalDatabase(path);
        Execute(writer, "BEGIN IMMEDIATE; INSERT INTO item (text) VALUES ('pending');");

        var held = CliRun.Of("info", path, "--json");
        var text = CliRun.Of("info", path);
        Execute(writer, "ROLLBACK");
        var free = CliRun.Of("info", path, "--json");

        held.ExitCode.ShouldBe(0, held.Error);
        held.Json().GetProperty("writeLocked").GetBoolean().ShouldBeTrue();
        held.Json().GetProperty("walFrames").GetInt64().ShouldBeGreaterThan(0);
        text.Output.ShouldContain("Write lock      held by another connection right now");
        free.Json().GetProperty("writeLocked").GetBoolean().ShouldBeFalse();
    }

    /// <summary>
    /// In rollback-journal mode a writer that is committing (an EXCLUSIVE lock) keeps readers out: the write-lock check's
    /// own first read meets SQLITE_BUSY. That is the lock held; before, info failed with "database is locked" (exit 1)
    /// whenever a commit came between its read and this check (an operator's trial, 10 runs in 10 against a writer of
    /// 100 transactions a second).
    /// </summary>
    [Test]
    public void The_write_lock_check_reports_a_rollback_journal_writer_that_keeps_readers_out_as_holding_the_lock()
    {
        var path = PathOf();
        using var writer = Open(path);
        Execute(writer, "PRAGMA journal_mode = DELETE; CREATE TABLE item (id INTEGER PRIMARY KEY); BEGIN EXCLUSIVE; INSERT INTO item DEFAULT VALUES;");

        var held = Database.DatabaseFile.IsWriteLocked(path, keepWal: false);
        Execute(writer, "COMMIT");
        var free = Database.DatabaseFile.IsWriteLocked(path, keepWal: false);

        $"held {held}, then {free}".ShouldBe("held True, then False");
    }

    [Test]
    public void The_wal_frames_it_reports_are_those_checkpoint_finds_in_the_wal()
    {
        var path = PathOf();
        using var writer = CreateWalDatabase(path);
        // A RESTART checkpoint copies every frame back; the next commit writes the WAL again from its start, so the
        // -wal file keeps its size but holds the new commit's frames only.
        Execute(writer, "PRAGMA wal_checkpoint(RESTART); INSERT INTO item (text) VALUES ('one more');");

        var info = CliRun.Of("info", path, "--json");
        var checkpoint = CliRun.Of("checkpoint", path, "--json");

        info.ExitCode.ShouldBe(0, info.Error);
        checkpoint.ExitCode.ShouldBe(0, checkpoint.Error);
        info.Json().GetProperty("walFrames").GetInt64().ShouldBe(checkpoint.Json().GetProperty("logFrames").GetInt64());
    }

    /// <summary>
    /// A file this user may not write is not checked for the write lock, and says so: null in JSON, not false, which
    /// would claim that the lock is free (a mutation hunt: no test opened such a file with info).
    /// </summary>
    [Test]
    public void The_write_lock_of_a_file_this_user_may_not_write_is_not_checked()
    {
        var path = PathOf();
        using (var connection = Open(path))
        {
            Execute(connection, "CREATE TABLE item (id INTEGER PRIMARY KEY)");
        }

        MayWrite(path, false);
        try
        {
            var json = CliRun.Of("info", path, "--json");
            var text = CliRun.Of("info", path);

            json.ExitCode.ShouldBe(0, json.Error);
            json.Json().GetProperty("writeLocked").ValueKind.ShouldBe(System.Text.Json.JsonValueKind.Null);
            text.Output.ShouldContain("Write lock      not checked: the file cannot be opened for writing");
        }
        finally
        {
            MayWrite(path, true);
        }
    }

    /// <summary>
    /// The low bit of a -wal file's magic number gives its checksums' byte order, which is the writing machine's: a
    /// -wal file written with either is counted alike (a mutation hunt: with only this machine's accepted, no test failed).
    /// </summary>
    [Test]
    public void The_wal_frames_are_counted_whichever_byte_order_its_checksums_use()
    {
        var path = PathOf();
        using var keepOpen = CreateWalDatabase(path);
        var other = PathOf("other-byte-order.db-wal");
        var wal = File.ReadAllBytes(path + "-wal");
        wal[3] ^= 1; // the magic number, 0x377f0682 or 0x377f0683, is big-endian
        File.WriteAllBytes(other, wal);

        var frames = Database.WalFile.CommittedFrames(path + "-wal");

        frames.ShouldBeGreaterThan(0);
        Database.WalFile.CommittedFrames(other).ShouldBe(frames);
    }

    [Test]
    public void Text_output_has_one_line_per_fact()
    {
        var path = PathOf();
        using (var connection = Open(path))
        {
            Execute(connection, "CREATE TABLE item (id INTEGER PRIMARY KEY)");
        }

        var run = CliRun.Of("info", path);

        run.ExitCode.ShouldBe(0, run.Error);
        run.Output.ShouldContain($"Database        {path}");
        run.Output.ShouldContain("Journal mode    delete");
        run.Output.ShouldContain("Pages           2 of 4096 bytes, 0 free");
        run.Output.ShouldContain("File size       8.0 KiB (8192 bytes)");
        run.Output.ShouldContain("WAL             0 B, 0 frames");
        run.Output.ShouldContain("Write lock      free");
        File.Exists(path + "-journal").ShouldBeFalse();
    }

    /// <summary>A size is given in bytes below a kibibyte, in KiB from 1024 bytes, in MiB from 1024 x 1024 (a mutation hunt: the first bound was untested).</summary>
    [TestCase(1023, "1023 B")]
    [TestCase(1024, "1.0 KiB")]
    [TestCase(1024 * 1024, "1.0 MiB")]
    public void Sizes_change_unit_at_each_power_of_1024(long bytes, string text) => Format.Bytes(bytes).ShouldBe(text);

    /// <summary>A file of a mebibyte or more is given in MiB, of 1024 x 1024 bytes, with one decimal.</summary>
    [Test]
    public void Text_output_gives_a_file_of_a_mebibyte_or_more_in_MiB()
    {
        var path = PathOf();
        using (var connection = Open(path))
        {
            Execute(connection, "CREATE TABLE item (data BLOB); INSERT INTO item VALUES (zeroblob(1600000));");
        }

        var bytes = new FileInfo(path).Length;
        bytes.ShouldBeInRange(1024L * 1024, 2L * 1024 * 1024);

        var run = CliRun.Of("info", path);

        run.ExitCode.ShouldBe(0, run.Error);
        run.Output.ShouldContain(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"File size       {bytes / (1024.0 * 1024):0.0} MiB ({bytes} bytes)"));
    }

    /// <summary>
    /// SQLite's largest page, 65536 bytes, is a -wal file's page size too: its committed frames are counted, as
    /// checkpoint finds them (a -wal header of 64 KiB pages must not be taken for an invalid one).
    /// </summary>
    [Test]
    public void The_wal_frames_of_a_database_of_64_KiB_pages_are_counted()
    {
        var path = PathOf();
        using var writer = Open(path);
        Execute(writer, """
            PRAGMA page_size = 65536;
            PRAGMA journal_mode = WAL;
            PRAGMA wal_autocheckpoint = 0;
            CREATE TABLE item (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
            INSERT INTO item (text) VALUES ('one');
            """);

        var info = CliRun.Of("info", path, "--json");
        var checkpoint = CliRun.Of("checkpoint", path, "--json");

        info.ExitCode.ShouldBe(0, info.Error);
        info.Json().GetProperty("pageSize").GetInt64().ShouldBe(65536);
        info.Json().GetProperty("walFrames").GetInt64().ShouldBeGreaterThan(0);
        info.Json().GetProperty("walFrames").GetInt64().ShouldBe(checkpoint.Json().GetProperty("logFrames").GetInt64());
    }

    /// <summary>
    /// README: info reads "waiting at most 5 s for another connection's lock"; a database another connection holds
    /// exclusively then fails with exit code 1, naming the file and that wait.
    /// </summary>
    [Test]
    public void A_database_another_connection_holds_exclusively_fails_after_the_5_second_wait_naming_it()
    {
        var path = PathOf();
        using var writer = CreateWalDatabase(path);
        Execute(writer, "PRAGMA locking_mode = EXCLUSIVE; INSERT INTO item (text) VALUES ('held');");

        var run = CliRun.Of("info", path);

        run.ExitCode.ShouldBe(1, run.Error);
        run.Error.ShouldBe($"sqlite-saver info: SQLite Error 5: 'database is locked': another connection held a lock on {path} for longer than this command waits (5000 ms).{Environment.NewLine}");
    }

    [Test]
    public void An_empty_file_is_an_empty_database()
    {
        var path = PathOf();
        File.WriteAllBytes(path, []);

        var run = CliRun.Of("info", path, "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Json().GetProperty("pageCount").GetInt64().ShouldBe(0);
        new FileInfo(path).Length.ShouldBe(0); // nothing was written to it
    }

    /// <summary>
    /// A damaged database file (its first 100 bytes only) fails with exit code 1 and SQLite's error led by the file's
    /// path, which SQLite's "database disk image is malformed" does not name (a new user's trial).
    /// </summary>
    [TestCase("info")]
    [TestCase("checkpoint")]
    public void A_damaged_file_fails_with_an_error_naming_it(string command)
    {
        var source = PathOf("whole.db");
        using (var connection = Open(source))
        {
            Execute(connection, "CREATE TABLE item (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO item (text) VALUES ('x');");
        }

        var damaged = PathOf("damaged.db");
        File.WriteAllBytes(damaged, File.ReadAllBytes(source)[..100]);

        var run = CliRun.Of(command, damaged);

        run.ExitCode.ShouldBe(1, run.Error);
        run.Error.ShouldBe($"sqlite-saver {command}: {damaged}: SQLite Error 11: 'database disk image is malformed'.{Environment.NewLine}");
    }
}
