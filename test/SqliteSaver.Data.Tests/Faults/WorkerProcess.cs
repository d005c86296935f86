using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>A SqliteSaver.Data.TestWorker child process whose output lines are collected as they arrive.</summary>
internal sealed class WorkerProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly Task<string> _errors;

    private WorkerProcess(IEnumerable<string> arguments, bool input = false)
    {
        var worker = Path.Combine(AppContext.BaseDirectory, "SqliteSaver.Data.TestWorker.dll");
        var start = new ProcessStartInfo("dotnet", [worker, .. arguments])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = input,
        };
        _process = Process.Start(start)!;
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                _lines.Enqueue(e.Data);
            }
        };
        _process.BeginOutputReadLine();
        _errors = _process.StandardError.ReadToEndAsync();
    }

    public IReadOnlyCollection<string> Lines => _lines;

    public Process Process => _process;

    /// <summary>Starts a worker that commits <paramref name="commits"/> rows, then holds a write transaction until killed.</summary>
    public static WorkerProcess Hold(string connectionString, int commits, int worker)
        => new(["hold", connectionString, Invariant(commits), Invariant(worker)]);

    /// <summary>
    /// Starts a process without this library: a plain Microsoft.Data.Sqlite connection to <paramref name="path"/> that
    /// runs the SQL given with <see cref="Run"/>, one command a line.
    /// </summary>
    public static WorkerProcess Sql(string path)
    {
        var worker = new WorkerProcess(["sql", path], input: true);
        worker.WaitForLines(1);
        return worker;
    }

    /// <summary>Runs one command in a <see cref="Sql"/> worker and returns its answer ("ok ..." or "error ...").</summary>
    public string Run(string sql) => Answer(Send(sql));

    /// <summary>Sends one command to a <see cref="Sql"/> worker without waiting for it; <see cref="Answer"/> waits for its answer.</summary>
    public int Send(string sql)
    {
        var answered = _lines.Count;
        _process.StandardInput.WriteLine(sql);
        _process.StandardInput.Flush();
        return answered;
    }

    /// <summary>Whether the command <see cref="Send"/> returned <paramref name="sent"/> for has been answered.</summary>
    public bool Answered(int sent) => _lines.Count > sent;

    /// <summary>The answer to the command <see cref="Send"/> returned <paramref name="sent"/> for, once it has come.</summary>
    public string Answer(int sent)
    {
        WaitForLines(sent + 1);
        return _lines.ElementAt(sent);
    }

    private void WaitForLines(int count)
    {
        Wait.Until(() => _lines.Count >= count || _process.HasExited, timeoutSeconds: 60);
        if (_lines.Count < count)
        {
            throw new InvalidOperationException($"The worker exited: {_errors.Result}");
        }
    }

    /// <summary>Starts a worker that gives SQLitePCLRaw a copy of e_sqlite3 of its own, in <paramref name="folder"/>, then writes asynchronously.</summary>
    public static WorkerProcess CopiedSqlite(string folder) => new(["copied-sqlite", folder]);

    /// <summary>Starts a worker whose threads run read-then-insert units of work.</summary>
    public static WorkerProcess Write(string connectionString, int threads, int transactions, int worker)
        => new([connectionString, Invariant(threads), Invariant(transactions), Invariant(worker)]);

    /// <summary>Waits for the process to exit and returns what it wrote to stderr.</summary>
    public string WaitForExit()
    {
        if (!_process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            throw new TimeoutException("The worker did not exit within 2 minutes.");
        }

        _process.WaitForExit(); // drains the asynchronous output reader
        return _errors.Result;
    }

    /// <summary>SIGKILL on Linux: the process gets no chance to commit, roll back or close anything.</summary>
    public void Kill()
    {
        _process.Kill();
        _process.WaitForExit();
    }

    public void Dispose()
    {
        ChildProcess.KillTree(_process);
        _process.Dispose();
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);
}
