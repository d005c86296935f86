using Spectre.Console;

namespace SqliteSaver.Cli;

/// <summary>A Spectre.Console console on a writer: live display, colour and line wrapping only when the writer is a terminal.</summary>
internal static class Terminal
{
    private const int UnwrappedWidth = 1000;

    public static IAnsiConsole For(TextWriter output)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(output) });
        if (!console.Profile.Out.IsTerminal)
        {
            console.Profile.Width = UnwrappedWidth;
        }

        return console;
    }
}
