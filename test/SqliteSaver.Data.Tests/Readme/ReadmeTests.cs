using System.Diagnostics.Metrics;
using System.Text.RegularExpressions;
using Shouldly;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Diagnostics;

namespace SqliteSaver.Data.Tests.Readme;

/// <summary>Keeps the README honest: its quick start is the sample program, which runs; its keyword table is complete; its metrics table is the Meter's.</summary>
public partial class ReadmeTests
{
    private static readonly string RepositoryRoot = FindRepositoryRoot();

    [Test]
    public void The_quick_start_in_the_README_is_the_sample_program_word_for_word()
    {
        var readme = File.ReadAllText(Path.Combine(RepositoryRoot, "README.md"));
        var program = File.ReadAllText(Path.Combine(RepositoryRoot, "src", "SqliteSaver.Sample", "Program.cs"));

        var readmeBlock = QuickStartBlock().Match(readme);
        var programBlock = ProgramBlock().Match(program);

        readmeBlock.Success.ShouldBeTrue("README.md needs a ```csharp block right after <!-- quick-start -->");
        programBlock.Success.ShouldBeTrue("Program.cs needs its quick-start:begin/end markers");
        Normalize(readmeBlock.Groups["code"].Value).ShouldBe(Normalize(programBlock.Groups["code"].Value));
    }

    [Test]
    public void The_quick_start_runs_and_prints_the_row_it_inserted()
    {
        using var folder = new TempFolder();
        var sample = Path.Combine(AppContext.BaseDirectory, "SqliteSaver.Sample.dll");
        using var child = ChildProcess.Dotnet([sample], workingDirectory: folder.Path);
        child.Process.WaitForExit(TimeSpan.FromSeconds(60)).ShouldBeTrue();

        child.Error.Result.ShouldBeEmpty();
        child.Process.ExitCode.ShouldBe(0);
        child.Output.Result.Trim().ShouldBe("1: Hello, SQLite");
        File.Exists(Path.Combine(folder.Path, "app.db")).ShouldBeTrue();
        File.Exists(Path.Combine(folder.Path, "app.db-wal")).ShouldBeFalse(); // the pools were closed at exit
        File.Exists(Path.Combine(folder.Path, "app.db-shm")).ShouldBeFalse();
    }

    [Test]
    public void The_README_documents_every_connection_string_keyword()
    {
        var readme = File.ReadAllText(Path.Combine(RepositoryRoot, "README.md"));

        var missing = Keywords.All.Where(k => !readme.Contains($"| `{k.Name}`", StringComparison.Ordinal)).Select(k => k.Name);

        missing.ShouldBeEmpty();
    }

    /// <summary>
    /// The README's metrics table lists every instrument of the library's Meter with its kind and unit, and no other.
    /// Before, most instruments were collected through their fields in the tests: renaming one or changing its unit
    /// passed every test (a hunt).
    /// </summary>
    [Test]
    public void The_README_metrics_table_is_the_Meters_instruments_with_their_kinds_and_units()
    {
        var readme = File.ReadAllText(Path.Combine(RepositoryRoot, "README.md"));
        var documented = MetricsRow().Matches(readme).Select(row => $"{row.Groups["name"].Value}: {row.Groups["kind"].Value}, {row.Groups["unit"].Value}");

        GC.KeepAlive(SaverMetrics.CreateTime); // creates the Meter's instruments, the observable ones too
        var published = new List<string>();
        using (var listener = new MeterListener())
        {
            listener.InstrumentPublished = (instrument, _) =>
            {
                if (instrument.Meter.Name == SaverMetrics.MeterName)
                {
                    published.Add($"{instrument.Name}: {Kind(instrument)}, {instrument.Unit}");
                }
            };
            listener.Start(); // reports the instruments already published, on this thread
        }

        published.ShouldNotBeEmpty();
        published.Order(StringComparer.Ordinal).ShouldBe(documented.Order(StringComparer.Ordinal));
    }

    private static string Kind(Instrument instrument)
    {
        var type = instrument.GetType().GetGenericTypeDefinition();
        return type == typeof(Counter<>) ? "counter"
            : type == typeof(Histogram<>) ? "histogram"
            : type == typeof(ObservableUpDownCounter<>) ? "up-down counter"
            : type == typeof(ObservableGauge<>) ? "gauge"
            : type.Name;
    }

    private static string Normalize(string code) => code.Replace("\r\n", "\n", StringComparison.Ordinal).Trim();

    private static string FindRepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "SqliteSaver.Data.sln")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("The repository root (with SqliteSaver.Data.sln) was not found.");
    }

    [GeneratedRegex(@"<!-- quick-start -->\s*```csharp\n(?<code>.*?)```", RegexOptions.Singleline)]
    private static partial Regex QuickStartBlock();

    [GeneratedRegex(@"// quick-start:begin\n(?<code>.*?)// quick-start:end", RegexOptions.Singleline)]
    private static partial Regex ProgramBlock();

    [GeneratedRegex(@"^\| `(?<name>[a-z_.]+)` \| (?<kind>[a-z -]+), `(?<unit>[^`]+)` \|", RegexOptions.Multiline)]
    private static partial Regex MetricsRow();
}
