using Shouldly;

namespace SqliteSaver.Cli.Tests;

/// <summary>The tool on databases in the states users leave them in: behind a symbolic link, with a hot journal, with a table of the name stress uses.</summary>
public class UserDatabaseTests : CliTest
{
    [Test]
    public void Stress_that_refuses_a_table_of_the_same_name_leaves_the_journal_mode_as_it_was()
    {
        // The README: stress "sets back the journal mode the database had". Refusing to run (exit code 2) must not
        // leave the user's rollback-journal database switched to WAL.
        var path = PathOf("app.db");
        using (var connection = Open(path))
        {
            Execute(connection, "CREATE TABLE saver_stress (name TEXT)");
        }

        var run = CliRun.Of("stress", "--db", path, "--seconds", "0.5", "--threads", "1", "--processes", "0");

        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldContain("has a table saver_stress that is not this tool's");
        JournalMode(path).ShouldBe("delete", "stress refused to run, yet left the user's database in WAL mode");
    }

    [Test]
    public void Stress_through_a_symbolic_link_reports_the_wal_file_beside_the_file_it_points_to()
    {
        // SQLite keeps the -wal file next to the file a symbolic link points to (info and checkpoint look there).
        Directory.CreateDirectory(PathOf("real"));
        var real = Path.Combine(PathOf("real"), "app.db");
        using (var connection = Open(real))
        {
            Execute(connection, "PRAGMA journal_mode = WAL; CREATE TABLE note (id INTEGER PRIMARY KEY, text TEXT);");
        }

        var link = PathOf("link.db");
        File.CreateSymbolicLink(link, real);
        string[] stress = ["stress", "--seconds", "1", "--threads", "2", "--processes", "0", "--read-ratio", "0", "--json"];

        var direct = CliRun.Of([.. stress, "--db", real]);
        var linked = CliRun.Of([.. stress, "--db", link]);

        direct.ExitCode.ShouldBe(0, direct.Error);
        linked.ExitCode.ShouldBe(0, linked.Error);
        WalBytes(direct).ShouldBeGreaterThan(0, "the workload leaves a -wal file while its connections are open");
        WalBytes(linked).ShouldBeGreaterThan(0, "'WAL file at the end' looked for link.db-wal, which SQLite never writes");
    }

    private static long WalBytes(CliRun run) => run.Json().GetProperty("stacks")[0].GetProperty("walBytes").GetInt64();

    [Test]
    public void Stress_runs_on_a_writable_database_whose_writer_crashed_and_left_a_hot_journal()
    {
        // A rollback-journal database whose writer crashed mid-transaction: any read-write connection rolls the
        // -journal back on open. stress writes anyway, yet it reads the journal mode first on a read-only connection,
        // which SQLite refuses (SQLITE_READONLY_ROLLBACK), and fails saying the database is read-only.
        var path = CrashedRollbackJournalDatabase();

        var run = CliRun.Of("stress", "--db", path, "--seconds", "0.5", "--threads", "1", "--processes", "0", "--read-ratio", "0", "--json");

        run.Error.ShouldNotContain("readonly database");
        run.ExitCode.ShouldBe(0, run.Error);
        using var connection = Open(path);
        using var count = connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM item WHERE text = 'before'";
        ((long)count.ExecuteScalar()!).ShouldBe(200); // the crashed transaction was rolled back
    }

    [Test]
    public void Info_on_a_database_with_a_hot_journal_does_not_say_the_writable_file_is_read_only()
    {
        var path = CrashedRollbackJournalDatabase();

        var run = CliRun.Of("info", path);

        run.Error.ShouldNotContain("readonly database"); // the file is writable: it has a hot journal, which info does not roll back
        run.Error.ShouldContain("journal");
    }

    /// <summary>
    /// A copy of a rollback-journal database and its -journal file taken in the middle of a write transaction that had
    /// spilled to the file: what a writer that crashed then leaves (a hot journal).
    /// </summary>
    private string CrashedRollbackJournalDatabase()
    {
        var original = PathOf("original.db");
        var crashed = PathOf("crashed.db");
        using var writer = Open(original);
        Execute(writer, """
            CREATE TABLE item (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
            INSERT INTO item (text) SELECT 'before' FROM n;
            PRAGMA cache_size = 1;
            BEGIN;
            UPDATE item SET text = printf('%02000d', id);
            """);
        File.Exists(original + "-journal").ShouldBeTrue();
        File.Copy(original, crashed);
        File.Copy(original + "-journal", crashed + "-journal");
        Execute(writer, "ROLLBACK");
        return crashed;
    }

    /// <summary>The database's journal mode, read on a fresh connection.</summary>
    private static string JournalMode(string path)
    {
        using var connection = Open(path);
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode";
        return (string)command.ExecuteScalar()!;
    }
}
