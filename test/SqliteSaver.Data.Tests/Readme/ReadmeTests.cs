using System.Text.RegularExpressions;
using Shouldly;
using SqliteSaver.Data.Configuration;

namespace SqliteSaver.Data.Tests.Readme;

/// <summary>Keeps the README honest: its quick start is the sample program, which runs; its keyword table is complete.</summary>
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
}
