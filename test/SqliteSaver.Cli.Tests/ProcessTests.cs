using System.Diagnostics;
using Shouldly;

namespace SqliteSaver.Cli.Tests;

/// <summary>The tool as a process of its own: its exit code and standard error are the ones <c>Program.Run</c> returns and writes.</summary>
public class ProcessTests : CliTest
{
    [Test]
    public void Bad_input_exits_with_2_and_one_line_on_stderr()
    {
        var (exitCode, output, error) = RunTool("info", PathOf("missing.db"));

        exitCode.ShouldBe(2);
        output.ShouldBeEmpty();
        error.ShouldBe($"sqlite-saver info: {PathOf("missing.db")}: no such file{Environment.NewLine}");
        File.Exists(PathOf("missing.db")).ShouldBeFalse();
    }

    [Test]
    public void A_busy_checkpoint_exits_with_3()
    {
        var path = PathOf();
        using var writer = CreateWalDatabase(path);
        using var reader = Open(path);
        Execute(reader, "BEGIN; SELECT count(*) FROM item;");
        Execute(writer, "INSERT INTO item (text) VALUES ('after the reader started')");

        var (exitCode, output, error) = RunTool("checkpoint", path, "--mode", "truncate", "--busy-timeout", "0");

        exitCode.ShouldBe(3, error);
        output.ShouldContain("truncate checkpoint BUSY");
    }

    private static (int ExitCode, string Output, string Error) RunTool(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet", [typeof(Program).Assembly.Location, .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        process.WaitForExit(TimeSpan.FromSeconds(60)).ShouldBeTrue();
        return (process.ExitCode, output.Result, error.Result);
    }
}
