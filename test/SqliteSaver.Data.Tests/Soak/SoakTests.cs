using System.Globalization;
using System.Text.RegularExpressions;
using Shouldly;

namespace SqliteSaver.Data.Tests.Soak;

/// <summary>Runs the soak program for 20 seconds (make soak runs it for minutes) and reads its verdict.</summary>
public class SoakTests
{
    [Test]
    public void A_twenty_second_soak_with_random_SIGKILLs_loses_no_acknowledged_commit()
    {
        var program = Path.Combine(AppContext.BaseDirectory, "SqliteSaver.Data.Soak.dll");
        using var child = ChildProcess.Dotnet([program, "--seconds", "20"]); // its workers are killed with it
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

    private static long Number(string text, string pattern)
        => long.Parse(Regex.Match(text, pattern).Groups[1].Value, CultureInfo.InvariantCulture);
}
