using System.CommandLine;
using System.CommandLine.Invocation;
using Microsoft.Data.Sqlite;
using SqliteSaver.Cli.Commands;
using SqliteSaver.Cli.Database;

namespace SqliteSaver.Cli;

/// <summary>The <c>sqlite-saver</c> tool: parses the command line, runs one command and turns its outcome into an exit code.</summary>
internal static class Program
{
    private static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs the tool in this process with its standard output and error on the given writers.</summary>
    /// <returns>The exit code (see <see cref="ExitCodes"/>).</returns>
    internal static int Run(string[] args, TextWriter output, TextWriter error)
    {
        // No response files: "@app.db" is a file name, which System.CommandLine would otherwise read for arguments.
        var parseResult = CreateRootCommand().Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
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
            var help = parseResult.CommandResult.Command.Hidden ? "demo and stress start it; it is not run by hand" : $"see {command} --help";
            error.WriteLine($"{command}: {string.Join(" ", parseResult.Errors.Select(e => e.Message).Distinct())} ({help})");
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
            var message = OneLine(exception.Message);
            error.WriteLine($"{command}: {(exception is SqliteException or IOException or UnauthorizedAccessException ? Naming(DatabasePath(parseResult), message) : message)}");
            return ExitCodes.Failure;
        }
    }

    /// <summary>The database file the command was given (its <c>PATH</c> argument, or <c>--db</c>), in full; null for a command without one.</summary>
    private static string? DatabasePath(ParseResult parseResult)
    {
        var command = parseResult.CommandResult.Command;
        var given = command.Arguments.Any(a => a.Name == "PATH") ? parseResult.GetValue<string>("PATH")
            : command.Options.Any(o => o.Name == "--db") ? parseResult.GetValue<string>("--db")
            : null;
        return string.IsNullOrWhiteSpace(given) ? null : DatabaseFile.Full(given);
    }

    /// <summary>
    /// <paramref name="message"/>, an error of SQLite's or of the file system, led by <paramref name="path"/> unless it
    /// names it already: SQLite's own errors ("unable to open database file", "database disk image is malformed") do
    /// not say which file.
    /// </summary>
    private static string Naming(string? path, string message)
        => path is null || message.Contains(path, StringComparison.Ordinal) ? message : $"{path}: {message}";

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
