using Shouldly;

namespace SqliteSaver.Cli.Tests;

/// <summary>Bad input is one clear line on standard error and exit code 2, never a stack trace, and creates no database.</summary>
public class BadInputTests : CliTest
{
    private static readonly string[][] BadArguments =
    [
        ["checkpoint", "{folder}/missing.db"],
        ["info", "{folder}/missing.db"],
        ["info", "{folder}/missing.db", "--json"], // errors stay on standard error, as the README says
        ["checkpoint", "{folder}/text.db", "--json"],
        ["checkpoint", "{folder}"],
        ["info", "{folder}"],
        ["checkpoint", "{folder}/text.db"],
        ["info", "{folder}/text.db"],
        ["checkpoint", "{folder}/text.db", "--mode", "sideways"],
        ["checkpoint", "{folder}/missing.db", "--mode", "7"],
        ["checkpoint", "{folder}/missing.db", "--busy-timeout", "-1"],
        ["checkpoint"],
        ["info", ""],
        ["demo", "--threads", "-3"],
        ["demo", "--threads", "many"],
        ["demo", "--processes", "-1"],
        ["demo", "--seconds", "0"],
        ["stress", "--db", "{folder}/stress.db", "--seconds", "1e-8"], // rounded to 0 for the child writers, which refused it
        ["demo", "--read-ratio", "-0.5"],
        ["stress", "--db", "{folder}/stress.db", "--seconds", "10000000"],
        ["stress", "--db", "{folder}/stress.db", "--seconds", "2147483"], // a child writer's wait would overflow
        ["stress", "--db", "{folder}/stress.db", "--read-ratio", "1e12"],
        ["stress", "--db", "{folder}/stress.db", "--threads", "100000000"],
        ["demo", "--processes", "1000"],
        ["stress"],
        ["stress", "--db", "{folder}/no-such-folder/stress.db"],
        ["stress", "--db", "{folder}"],
        ["stress", "--db", "{folder}/text.db"],
        ["stress", "--db", "{folder}/stress.db", "--connection-string", "Max Pool Size=0"],
        ["stress", "--db", "{folder}/stress.db", "--connection-string", "Colour=blue"],
        ["stress", "--db", "{folder}/stress.db", "--connection-string", "Mode=Memory"], // the child writers found no table: exit 1
        ["stress", "--db", "{folder}/stress.db", "--connection-string", "Mode=ReadOnly"], // "unable to open database file": exit 1
        ["stress", "--db", "{folder}/stress.db", "--threads", "-1"],
        ["bogus"],
        [],
    ];

    [TestCaseSource(nameof(BadArguments))]
    public void Bad_input_prints_one_line_on_stderr_and_exits_with_2(string[] arguments)
    {
        File.WriteAllText(PathOf("text.db"), "This is a text file, not a SQLite database.\n");
        var before = Directory.GetFileSystemEntries(Folder, "*", SearchOption.AllDirectories).Order().ToArray();

        var run = CliRun.Of([.. arguments.Select(a => a.Replace("{folder}", Folder, StringComparison.Ordinal))]);

        run.ExitCode.ShouldBe(2, run.Error);
        run.ErrorLines.Length.ShouldBe(1, run.Error);
        run.Error.ShouldStartWith("sqlite-saver");
        run.Error.ShouldNotContain("   at "); // no stack trace
        run.Output.ShouldBeEmpty();
        Directory.GetFileSystemEntries(Folder, "*", SearchOption.AllDirectories).Order().ShouldBe(before);
    }

    [Test]
    public void The_line_says_what_is_wrong()
    {
        File.WriteAllText(PathOf("text.db"), "not a database");

        CliRun.Of("info", PathOf("missing.db")).Error.ShouldContain("no such file");
        CliRun.Of("info", Folder).Error.ShouldContain("is a directory");
        CliRun.Of("checkpoint", PathOf("text.db")).Error.ShouldContain("not a SQLite database");
        CliRun.Of("checkpoint", PathOf("text.db"), "--mode", "sideways").Error.ShouldContain("--mode must be passive, full, restart or truncate, not 'sideways'");
        CliRun.Of("demo", "--threads", "-3").Error.ShouldContain("--threads must be a whole number from 1 to 1024, not '-3'");
        CliRun.Of("checkpoint", PathOf("text.db"), "--busy-timeout", "2147483648").Error.ShouldContain("--busy-timeout must be a whole number from 0 to 2147483647, not '2147483648'");
        CliRun.Of("worker").Error.ShouldEndWith("(demo and stress start it; it is not run by hand)\n"); // its help says nothing
        CliRun.Of("stress", "--db", PathOf(), "--connection-string", "Colour=blue").Error.ShouldContain("'Colour' is not supported", Case.Sensitive);
        CliRun.Of("frobnicate").Error.ShouldBe("sqlite-saver: there is no command 'frobnicate'; the commands are demo, stress, checkpoint and info (see sqlite-saver --help)\n");
    }

    /// <summary>
    /// An unknown option where the command goes is said to be unrecognized, not taken for a command that does not exist
    /// (a mutation hunt: with every unknown word taken for a command, no test failed).
    /// </summary>
    [Test]
    public void An_unknown_option_where_the_command_goes_is_unrecognized_not_a_command()
        => CliRun.Of("--bogus").Error.ShouldBe(
            $"sqlite-saver: Required command was not provided. Unrecognized command or argument '--bogus'. (see sqlite-saver --help){Environment.NewLine}");

    /// <summary>
    /// The child writer reads the <c>--seconds</c> its parent writes (in the invariant culture) as the parent's own
    /// options are read, whatever the culture. Before, it read them in the current one: under de-DE "0.5" was 5 (the
    /// children wrote ten times as long, and stress reported their inflated counts as a success), and under fr-FR
    /// "1.5" failed to parse, so that no child writer got ready (a bug hunt's finding). The worker here stops at its
    /// missing --writer, before it would write.
    /// </summary>
    [Test]
    [SetCulture("de-DE")]
    public void The_child_writer_refuses_seconds_with_a_decimal_comma_in_a_culture_that_writes_them_so()
        => CliRun.Of("worker", "--stack", "Saver", "--connection-string", "Data Source=x.db", "--run", "r", "--seconds", "0,5")
            .Error.ShouldContain("--seconds must be a number of at least 0.001 and at most 2000000, not '0,5'");

    /// <inheritdoc cref="The_child_writer_refuses_seconds_with_a_decimal_comma_in_a_culture_that_writes_them_so"/>
    [Test]
    [SetCulture("fr-FR")]
    public void The_child_writer_reads_seconds_with_a_decimal_point_in_a_culture_that_writes_a_comma()
    {
        var run = CliRun.Of("worker", "--stack", "Saver", "--connection-string", "Data Source=x.db", "--run", "r", "--seconds", "1.5");

        run.Error.ShouldBe("sqlite-saver worker: Option '--writer' is required. (demo and stress start it; it is not run by hand)\n");
    }

    /// <summary>The child writer's --seconds stays required, though it is read as stress's is (which has a default).</summary>
    [Test]
    public void The_child_writer_requires_seconds()
        => CliRun.Of("worker", "--stack", "Saver", "--connection-string", "Data Source=x.db", "--run", "r", "--writer", "0")
            .Error.ShouldContain("'--seconds' is required");

    /// <summary>
    /// README's exit codes: 2 is bad input, "an invalid value" among it, and `--connection-string "Max Pool Size=0"`
    /// gets it. Keywords the data source refuses together (Min Pool Size above Max Pool Size, Base Delay above Max
    /// Delay) are as invalid a value of <c>--connection-string</c>, and must get the same one line and exit code 2.
    /// </summary>
    [TestCase("Min Pool Size=32")]
    [TestCase("Base Delay=5")]
    public void Stress_with_connection_string_keywords_the_data_source_refuses_together_is_bad_input_exit_2(string keywords)
    {
        var run = CliRun.Of("stress", "--db", PathOf("stress.db"), "--seconds", "0.5", "--threads", "1", "--processes", "0", "--connection-string", keywords);

        run.ExitCode.ShouldBe(2, run.Error);
        run.ErrorLines.Length.ShouldBe(1, run.Error);
        run.Error.ShouldStartWith("sqlite-saver stress: --connection-string:");
        run.Error.ShouldNotContain("(Parameter '"); // the ArgumentException's own suffix
    }

    /// <summary>
    /// A keyword's error is the library's message as one clean line, without the " (Parameter 'Max Pool Size')" that
    /// <see cref="ArgumentException.Message"/> appends.
    /// </summary>
    [Test]
    public void Stress_with_an_invalid_keyword_value_prints_the_librarys_message_without_the_parameter_name()
        => CliRun.Of("stress", "--db", PathOf("stress.db"), "--connection-string", "Max Pool Size=0").Error.ShouldBe(
            $"sqlite-saver stress: --connection-string: Invalid value '0' for connection-string keyword 'Max Pool Size': expected a whole number of connections from 1 to 1024.{Environment.NewLine}");

    /// <summary>
    /// The bounds README gives are allowed (<c>--threads</c> 1 to 1024, <c>--processes</c> 0 to 64, <c>--read-ratio</c> 0
    /// to 16, <c>--seconds</c> 0.001 to 2000000, <c>--busy-timeout</c> 0 to 2147483647): the only error on the line is
    /// the unknown option's, which stops the command before it runs anything.
    /// </summary>
    [TestCase("demo", "--threads", "1024", "--processes", "64", "--read-ratio", "16", "--seconds", "2000000")]
    [TestCase("stress", "--threads", "1", "--processes", "0", "--read-ratio", "0", "--seconds", "0.001", "--db", "x.db")]
    [TestCase("checkpoint", "x.db", "--busy-timeout", "2147483647")]
    [TestCase("checkpoint", "x.db", "--busy-timeout", "0")]
    public void The_bounds_of_every_allowed_range_are_allowed(params string[] arguments)
        => CliRun.Of([.. arguments, "--bogus"]).Error.ShouldBe(
            $"sqlite-saver {arguments[0]}: Unrecognized command or argument '--bogus'. (see sqlite-saver {arguments[0]} --help){Environment.NewLine}");

    /// <summary>
    /// A value just past a bound README gives, or not a number at all (NaN), is refused with the range allowed. The
    /// unknown option stops the command before it runs, should the value be taken (a mutation hunt: with --processes up to
    /// 65, --read-ratio up to 17 or NaN allowed, no test failed).
    /// </summary>
    [TestCase("--threads must be a whole number from 1 to 1024, not '1025'", "demo", "--threads", "1025")]
    [TestCase("--processes must be a whole number from 0 to 64, not '65'", "demo", "--processes", "65")]
    [TestCase("--read-ratio must be a number of at least 0 and at most 16, not '16.5'", "demo", "--read-ratio", "16.5")]
    [TestCase("--read-ratio must be a number of at least 0 and at most 16, not 'NaN'", "demo", "--read-ratio", "NaN")]
    [TestCase("--seconds must be a number of at least 0.001 and at most 2000000, not '2000000.5'", "stress", "--db", "x.db", "--seconds", "2000000.5")]
    [TestCase("--seconds must be a number of at least 0.001 and at most 2000000, not 'NaN'", "demo", "--seconds", "NaN")]
    [TestCase("--busy-timeout must be a whole number from 0 to 2147483647, not '-1'", "checkpoint", "x.db", "--busy-timeout", "-1")]
    public void Just_past_the_bounds_of_every_range_is_refused_naming_the_range(string error, params string[] arguments)
    {
        var run = CliRun.Of([.. arguments, "--bogus"]);

        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldContain(error);
    }
}
