using Shouldly;

namespace SqliteSaver.Data.Tests.Benchmarks;

/// <summary>Keeps the contention benchmark working: a short run must print its table with no escaped errors. Nothing here is timed.</summary>
public class ContentionSmokeTests
{
    [Test]
    public void A_short_run_prints_a_table_with_zero_escaped_errors()
    {
        var program = Path.Combine(AppContext.BaseDirectory, "SqliteSaver.Data.Contention.dll");
        using var child = ChildProcess.Dotnet([program, "--smoke", "--seconds", "1"]);
        child.Process.WaitForExit(TimeSpan.FromMinutes(2)).ShouldBeTrue();

        child.Process.ExitCode.ShouldBe(0, child.Error.Result);
        var rows = child.Output.Result.Split('\n').Where(line => line.StartsWith("| ReadThenInsert | 2 threads |", StringComparison.Ordinal)).ToList();
        rows.Count.ShouldBe(3); // SqliteSaver and both Microsoft.Data.Sqlite stacks
        var saver = rows.Single(row => row.Contains("| Saver |", StringComparison.Ordinal)).Split('|').Select(cell => cell.Trim()).ToArray();
        saver[10].ShouldBe("0"); // errors that reached the caller
        saver[11].ShouldBe("yes"); // rows equal the commits acknowledged
    }
}
