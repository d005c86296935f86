using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace SqliteSaver.Cli.Workload;

/// <summary>
/// A writer in a child process (this tool's hidden <c>worker</c> command). It opens its connection, prints
/// <c>ready</c>, starts writing when it reads <c>go</c>, stops early when it reads <c>stop</c>, and prints its
/// <see cref="WriterReport"/> as JSON when done.
/// </summary>
internal sealed class ChildWriter : IDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly Task<string> _error;

    private ChildWriter(Process process)
    {
        _process = process;
        _error = process.StandardError.ReadToEndAsync();
    }

    public static ChildWriter Start(Stack stack, string connectionString, string run, int writer, TimeSpan duration)
    {
        var start = SelfProcess.StartInfo([
            "worker", "--stack", stack.ToString(), "--connection-string", connectionString, "--run", run,
            "--writer", writer.ToString(CultureInfo.InvariantCulture),
            "--seconds", duration.TotalSeconds.ToString(CultureInfo.InvariantCulture)]);
        return new ChildWriter(Process.Start(start) ?? throw new InvalidOperationException($"Could not start {start.FileName}."));
    }

    /// <summary>Waits until the child has opened its connection and is ready to write.</summary>
    /// <exception cref="InvalidOperationException">The child exited or did not get ready within a minute.</exception>
    /// <exception cref="OperationCanceledException">The child was stopped by a signal.</exception>
    public void WaitUntilReady()
    {
        var line = _process.StandardOutput.ReadLineAsync();
        if (!line.Wait(StartTimeout) || line.Result != "ready")
        {
            throw Failed("did not get ready");
        }
    }

    public void Go() => Send("go");

    /// <summary>Whether the child has exited with an error (killed, say) before its report: <see cref="Finish"/> then throws.</summary>
    public bool HasFailed => _process.HasExited && _process.ExitCode != 0;

    /// <summary>Tells the child to stop writing before its duration ends; it then reports as usual.</summary>
    public void Stop()
    {
        try
        {
            Send("stop");
        }
        catch (IOException)
        {
            // It has exited already; Finish reports how.
        }
    }

    /// <summary>Waits for the child to finish and reads its report.</summary>
    /// <exception cref="InvalidOperationException">The child failed or did not finish in time.</exception>
    /// <exception cref="OperationCanceledException">The child was stopped by a signal.</exception>
    public WriterReport Finish(TimeSpan duration)
    {
        var output = _process.StandardOutput.ReadToEndAsync();
        if (!_process.WaitForExit(duration + StartTimeout) || _process.ExitCode != 0 || !output.Wait(StartTimeout))
        {
            throw Failed("failed");
        }

        return JsonSerializer.Deserialize<WriterReport>(output.Result, Json.Options)
            ?? throw Failed("printed no report");
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }

        _process.Dispose();
    }

    private void Send(string line)
    {
        _process.StandardInput.WriteLine(line);
        _process.StandardInput.Flush();
    }

    /// <summary>
    /// The error for a child that failed; <see cref="OperationCanceledException"/> when it died of SIGINT or SIGTERM (exit
    /// code 128 + the signal): a terminal's Ctrl-C reaches the whole process group, and a child still starting dies of
    /// it, perhaps before this process has handled its own.
    /// </summary>
    private Exception Failed(string what)
    {
        // A child whose output ended is exiting, but may not have been reaped yet: give it a moment.
        var exited = _process.WaitForExit(TimeSpan.FromSeconds(5));
        if (exited && _process.ExitCode is 128 + 2 or 128 + 15)
        {
            return new OperationCanceledException($"A child writer process {what}: it was stopped by a signal.");
        }

        var error = exited && _error.Wait(TimeSpan.FromSeconds(5)) ? Program.OneLine(_error.Result) : string.Empty;
        return new InvalidOperationException($"A child writer process {what}{(error.Length > 0 ? $": {error}" : ".")}");
    }
}
