using System.Diagnostics;

namespace SqliteSaver.Data.Tests;

/// <summary>
/// A child process whose stdout and stderr are read to the end as it runs. Disposing it kills it and every process
/// it started if it is still running (a test that failed before it exited), so no orphan holds the database files.
/// </summary>
internal sealed class ChildProcess : IDisposable
{
    private ChildProcess(ProcessStartInfo start)
    {
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        Process = Process.Start(start)!;
        Output = Process.StandardOutput.ReadToEndAsync();
        Error = Process.StandardError.ReadToEndAsync();
    }

    public Process Process { get; }

    public Task<string> Output { get; }

    public Task<string> Error { get; }

    /// <summary>Runs <c>dotnet</c> with <paramref name="arguments"/>.</summary>
    public static ChildProcess Dotnet(IEnumerable<string> arguments, string? workingDirectory = null)
        => new(new ProcessStartInfo("dotnet", arguments) { WorkingDirectory = workingDirectory ?? string.Empty });

    public void Dispose()
    {
        KillTree(Process);
        Process.Dispose();
    }

    /// <summary>Kills <paramref name="process"/> and its descendants unless it has exited, and waits for it to exit.</summary>
    public static void KillTree(Process process)
    {
        if (process.HasExited)
        {
            return;
        }

        try
        {
            process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // It exited meanwhile.
        }

        process.WaitForExit();
    }
}
