using System.CommandLine;
using System.CommandLine.Invocation;
using SqliteSaver.Cli.Commands;

namespace SqliteSaver.Cli;

/// <summary>The <c>sqlite-saver</c> tool: parses the command line, runs one command and turns its outcome into an exit code.</summary>
internal static class Program
{
    private static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs the tool in this process with its standard output and error on the given writers.</summary>
    /// <returns>The exit code (see <see cref="ExitCodes"/>).</returns>
    internal static int Run(string[] args, TextWriter output, TextWriter error)
    {
        var parseResult = CreateRootCommand().Parse(args);
        var command = parseResult.CommandResult.Command is RootCommand ? "sqlite-saver" : $"sqlite-saver {parseResult.CommandResult.Command.Name}";
        if (parseResult.Action is ParseErrorAction && parseResult.CommandResult.Command is RootCommand root
            && parseResult.UnmatchedTokens is [var unknown, ..] && !unknown.StartsWith('-'))
        {
            // System.CommandLine says "Required command was not provided. Unrecognized command or argument 'x'."
            var commands = root.Subcommands.Where(c => !c.Hidden).Select(c => c.Name).ToList();
            error.WriteLine($"{command}: there is no command '{unknown}'; the commands are {string.Join(", ", commands[..^1])} and {commands[^1]} (see {command} --help)");
            return ExitCodes.BadInput;
        }

        if (parseResult.Action is ParseErrorAction)
        {
            error.WriteLine($"{command}: {string.Join(" ", parseResult.Errors.Select(e => e.Message).Distinct())} (see {command} --help)");
            return ExitCodes.BadInput;
        }

        try
        {
            return parseResult.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        }
        catch (BadInputException exception)
        {
            error.WriteLine($"{command}: {exception.Message}");
            return ExitCodes.BadInput;
        }
        catch (Exception exception)
        {
            error.WriteLine($"{command}: {OneLine(exception.Message)}");
            return ExitCodes.Failure;
        }
    }

    /// <summary>The first line of a message, for errors printed on one line.</summary>
    internal static string OneLine(string message) => message.Split('\n', 2)[0].TrimEnd();

    private static RootCommand CreateRootCommand()
    {
        var root = new RootCommand("Shows what SqliteSaver.Data does for SQLite under write contention, and runs WAL maintenance.")
        {
            HelpName = "sqlite-saver",
        };
        root.Options.OfType<VersionOption>().Single().Action = new VersionAction();
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(StressCommand.Create());
        root.Subcommands.Add(CheckpointCommand.Create());
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(WorkerCommand.Create());
        return root;
    }
}
