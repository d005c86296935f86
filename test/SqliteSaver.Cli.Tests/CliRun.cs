using System.Text.Json;

namespace SqliteSaver.Cli.Tests;

/// <summary>What one in-process run of the tool returned and printed.</summary>
public sealed record CliRun(int ExitCode, string Output, string Error)
{
    /// <summary>Runs the tool in this process, as <c>sqlite-saver</c> would with these arguments.</summary>
    public static CliRun Of(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var exitCode = Program.Run(args, output, error);
        return new CliRun(exitCode, output.ToString(), error.ToString());
    }

    /// <summary>Standard output parsed as the one JSON object that <c>--json</c> prints.</summary>
    public JsonElement Json()
    {
        using var document = JsonDocument.Parse(Output);
        return document.RootElement.Clone();
    }

    /// <summary>Standard error's lines, without the final line break.</summary>
    public string[] ErrorLines => Error.TrimEnd('\n', '\r').Split('\n');
}
