using Shouldly;

namespace SqliteSaver.Cli.Tests;

/// <summary>Defects found in review of the tool: each test states the behaviour the README promises.</summary>
public class CliReviewTests : CliTest
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

    /// <summary>The database's journal mode, read on a fresh connection.</summary>
    private static string JournalMode(string path)
    {
        using var connection = Open(path);
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode";
        return (string)command.ExecuteScalar()!;
    }
}
