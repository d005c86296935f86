using System.Globalization;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Soak;

/// <summary>Runs the soak program for 20 seconds (make soak runs it for minutes) and reads its verdict.</summary>
public class SoakTests
{
    private static readonly string Program = Path.Combine(AppContext.BaseDirectory, "SqliteSaver.Data.Soak.dll");

    [Test]
    public void A_twenty_second_soak_with_random_SIGKILLs_loses_no_acknowledged_commit()
    {
        using var child = ChildProcess.Dotnet([Program, "--seconds", "20"]); // its workers are killed with it
        child.Process.WaitForExit(TimeSpan.FromMinutes(3)).ShouldBeTrue();
        var output = child.Output;
        TestContext.Out.WriteLine(output.Result);

        child.Process.ExitCode.ShouldBe(0, output.Result + child.Error.Result);
        output.Result.ShouldContain("RESULT: PASS (0 violations)");
        output.Result.ShouldContain("integrity_check: ok");
        output.Result.ShouldContain("acknowledged rows lost: 0; rows applied twice: 0; transactions partly applied: 0");
        Number(output.Result, @"kills \(SIGKILL\): (\d+)").ShouldBeGreaterThan(5); // it did kill workers
        Number(output.Result, @"acknowledged rows: (\d+)").ShouldBeGreaterThan(1000); // and they did write
    }

    /// <summary>
    /// The verdict above can fail: the soak's final checks, run on a folder made to hold one of each violation they
    /// look for, name every one and exit 1.
    /// </summary>
    [Test]
    public void The_soaks_checks_name_each_violation_in_a_folder_that_holds_them()
    {
        using var folder = new TempFolder();
        using (var connection = new SqliteConnection($"Data Source={folder.File("soak.db")};Pooling=False"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = """
                CREATE TABLE item (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, tx TEXT NOT NULL, size INTEGER NOT NULL, payload BLOB);
                CREATE INDEX by_size ON item (size);
                INSERT INTO item (id, tx, size) VALUES ('kept.0', 'kept', 1), ('twice.0', 'twice', 2), ('twice.0', 'twice', 2), ('partial.0', 'partial', 2);
                PRAGMA writable_schema = ON;
                UPDATE sqlite_schema SET sql = 'CREATE INDEX by_size ON item (tx)' WHERE name = 'by_size'; -- its entries no longer match its rows
                """;
            command.ExecuteNonQuery();
        }

        File.WriteAllText(folder.File("worker-0.0.log"), "kept.0\nlost.0\ntwice.0\npartial.0\ncut"); // a line a kill cut short acknowledges nothing
        File.WriteAllText(folder.File("worker-0.0.errors"), "an error that escaped\n");
        File.WriteAllText(folder.File("worker-0.1.errors"), string.Empty);

        using var child = ChildProcess.Dotnet([Program, "--check", folder.Path]);
        child.Process.WaitForExit(TimeSpan.FromMinutes(1)).ShouldBeTrue();
        var output = child.Output.Result;

        child.Process.ExitCode.ShouldBe(1, output + child.Error.Result);
        output.ShouldContain("acknowledged rows: 4; rows in the database: 4 ");
        output.ShouldContain("acknowledged rows lost: 1; rows applied twice: 1; transactions partly applied: 1");
        output.ShouldContain("worker error logs with escaped errors: 1");
        output.ShouldContain("VIOLATION: 1 acknowledged rows lost, e.g. lost.0\n");
        output.ShouldContain("VIOLATION: 1 rows applied twice, e.g. twice.0\n");
        output.ShouldContain("VIOLATION: 1 transactions only partly in the database\n");
        output.ShouldContain("VIOLATION: errors escaped in worker-0.0.errors:\nan error that escaped\n");
        output.ShouldContain("VIOLATION: integrity_check: row 1 missing from index by_size");
        output.ShouldContain($"RESULT: FAIL (5 violations; files kept in {folder.Path})");
    }

    private static long Number(string text, string pattern)
        => long.Parse(Regex.Match(text, pattern).Groups[1].Value, CultureInfo.InvariantCulture);
}
