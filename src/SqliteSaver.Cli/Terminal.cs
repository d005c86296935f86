using Spectre.Console;

namespace SqliteSaver.Cli;

/// <summary>A Spectre.Console console on a writer: live display and colour only when the writer is a terminal.</summary>
internal static class Terminal
{
    public static IAnsiConsole For(TextWriter output) => AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) });
}
