using Shouldly;

namespace SqliteSaver.Cli.Tests;

/// <summary><c>--help</c> on every command and <c>--version</c>.</summary>
public class HelpTests
{
    [TestCase("")]
    [TestCase("demo")]
    [TestCase("stress")]
    [TestCase("checkpoint")]
    [TestCase("info")]
    public void Help_describes_the_command_and_exits_with_0(string command)
    {
        var run = CliRun.Of(command.Length == 0 ? ["--help"] : [command, "--help"]);

        run.ExitCode.ShouldBe(0);
        run.Error.ShouldBeEmpty();
        run.Output.ShouldContain($"Usage:{Environment.NewLine}  sqlite-saver {command}".TrimEnd());
        run.Output.ShouldContain("--help");
    }

    [Test]
    public void Help_lists_the_commands_but_not_the_internal_worker()
    {
        var run = CliRun.Of("--help");

        foreach (var command in new[] { "demo", "stress", "checkpoint <PATH>", "info <PATH>" })
        {
            run.Output.ShouldContain($"  {command}");
        }

        run.Output.ShouldNotContain("worker");
    }

    [TestCase("demo")]
    [TestCase("stress")]
    [TestCase("checkpoint")]
    [TestCase("info")]
    public void Every_command_has_json(string command) => CliRun.Of(command, "--help").Output.ShouldContain("--json");

    /// <summary>The default as it is written on the command line; before, help showed the enum's name, "Passive".</summary>
    [Test]
    public void Checkpoint_help_shows_the_default_mode_as_it_is_written()
        => CliRun.Of("checkpoint", "--help").Output.ShouldContain("[default: passive]", Case.Sensitive);

    /// <summary>
    /// README's defaults: 3 s per stack for demo and 10 s for stress, 16 writer threads, 2 writer child processes, 0.25
    /// reader threads per writer thread; checkpoint's busy timeout 5000 ms. Help shows the defaults the options have.
    /// </summary>
    [TestCase("demo", "--seconds", "3")]
    [TestCase("demo", "--threads", "16")]
    [TestCase("demo", "--processes", "2")]
    [TestCase("demo", "--read-ratio", "0.25")]
    [TestCase("stress", "--seconds", "10")]
    [TestCase("stress", "--threads", "16")]
    [TestCase("stress", "--processes", "2")]
    [TestCase("stress", "--read-ratio", "0.25")]
    [TestCase("checkpoint", "--busy-timeout", "5000")]
    public void Help_shows_the_documented_default_of_each_option(string command, string option, string value)
        => CliRun.Of(command, "--help").Output.Split('\n').Single(line => line.TrimStart().StartsWith(option + " ", StringComparison.Ordinal))
            .ShouldContain($"[default: {value}]", Case.Sensitive);

    [Test]
    public void Version_prints_the_version()
    {
        var run = CliRun.Of("--version");

        run.ExitCode.ShouldBe(0);
        run.Output.ShouldStartWith(typeof(Program).Assembly.GetName().Version!.ToString(3));
    }
}
