using System.Diagnostics;
using Microsoft.Data.Sqlite;
using SqliteSaver.Cli.Database;
using SqliteSaver.Data;

namespace SqliteSaver.Cli.Workload;

/// <summary>
/// Runs the contention workload on one stack: writer threads, writer child processes and reader threads on one
/// database for a fixed time, then checks the table against the acknowledged commits.
/// </summary>
internal static class WorkloadRunner
{
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(100);

    /// <param name="stack">The stack to run through.</param>
    /// <param name="settings">What to run; the table must exist.</param>
    /// <param name="progress">Called on the calling thread about ten times a second while the workload runs.</param>
    /// <param name="interrupted">Ends the workload before its duration, the child writers' too.</param>
    public static StackResult Run(Stack stack, WorkloadSettings settings, Action<WorkloadCounters, TimeSpan> progress, CancellationToken interrupted)
    {
        var connectionString = Operations.ConnectionString(stack, settings.DatabasePath, settings.SaverKeywords);
        var run = Guid.NewGuid().ToString("N");
        var counters = new WorkloadCounters();
        Operations.Read(stack, connectionString); // opens the stack's pool before anything is timed

        var children = new List<ChildWriter>();
        try
        {
            for (var process = 0; process < settings.Processes; process++)
            {
                children.Add(ChildWriter.Start(stack, connectionString, run, settings.Threads + process, settings.Duration));
            }

            children.ForEach(child => child.WaitUntilReady());

            using var go = new ManualResetEventSlim();
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(interrupted);
            var writers = new WriterReport[settings.Threads];
            var readers = new ReaderReport[settings.Readers];
            var threads = new List<Thread>();
            for (var i = 0; i < settings.Threads; i++)
            {
                var writer = i;
                threads.Add(new Thread(() =>
                {
                    go.Wait();
                    writers[writer] = Loops.Write(stack, connectionString, run, writer, counters, stop.Token);
                }));
            }

            for (var i = 0; i < settings.Readers; i++)
            {
                var reader = i;
                threads.Add(new Thread(() =>
                {
                    go.Wait();
                    readers[reader] = Loops.Read(stack, connectionString, counters, stop.Token);
                }));
            }

            threads.ForEach(thread => thread.Start());
            children.ForEach(child => child.Go());
            using var stopChildren = interrupted.Register(() => children.ForEach(child => child.Stop()));
            var clock = Stopwatch.StartNew();
            go.Set();
            stop.CancelAfter(settings.Duration);
            foreach (var thread in threads)
            {
                while (!thread.Join(ProgressInterval))
                {
                    progress(counters, clock.Elapsed);
                    if (!stop.IsCancellationRequested && children.Any(child => child.HasFailed))
                    {
                        // Its report is lost, and with it the run: end the run now, not at its time (Finish says why).
                        stop.Cancel();
                        children.ForEach(child => child.Stop());
                    }
                }
            }

            var seconds = clock.Elapsed.TotalSeconds;
            var childReports = children.Select(child => child.Finish(settings.Duration)).ToList();
            var reports = writers.Concat(childReports).ToList();
            var walBytes = WalBytes(settings.DatabasePath);
            var (lost, doubled) = StressTable.Verify(settings.DatabasePath, run, reports);
            return Summarize(stack, seconds, reports, Commits(childReports), readers, lost, doubled, walBytes);
        }
        finally
        {
            children.ForEach(child => child.Dispose());
            SaverDbConnection.ClearAllPools();
            SqliteConnection.ClearAllPools();
        }
    }

    /// <summary>The size of the database's <c>-wal</c> file, beside the file a symbolic link names, where SQLite keeps it.</summary>
    private static long WalBytes(string path)
    {
        using var connection = DatabaseFile.OpenPlain(path, SqliteOpenMode.ReadWrite, busyTimeout: 5000);
        return connection.GetWalStatus().WalFileBytes;
    }

    /// <summary>
    /// One stack's result: its writers' latencies sorted together for the p99 and the worst, their commits (attempts
    /// less failures) per second, and the writers' and readers' errors counted together, the writers' first error first.
    /// </summary>
    internal static StackResult Summarize(
        Stack stack, double seconds, List<WriterReport> writers, long childProcessCommits, ReaderReport[] readers, long lost, long doubled, long walBytes)
    {
        var latencies = writers.SelectMany(w => w.LatenciesMicroseconds).Order().ToArray();
        var commits = Commits(writers);
        return new StackResult(
            Operations.Name(stack),
            seconds,
            commits,
            childProcessCommits,
            commits / seconds,
            PercentileMilliseconds(latencies, 0.99),
            PercentileMilliseconds(latencies, 1),
            writers.Sum(w => (long)w.FailedSeqs.Length) + readers.Sum(r => r.Errors),
            writers.Select(w => w.FirstError).Concat(readers.Select(r => r.FirstError)).FirstOrDefault(e => e is not null),
            lost,
            doubled,
            walBytes,
            readers.Sum(r => r.Reads));
    }

    /// <summary>
    /// The nearest-rank percentile <paramref name="fraction"/> (above 0, at most 1) of latencies sorted from the
    /// shortest, in milliseconds: the smallest value that at least that fraction of them do not exceed; null for none.
    /// </summary>
    internal static double? PercentileMilliseconds(int[] sortedMicroseconds, double fraction)
        => sortedMicroseconds.Length == 0 ? null : sortedMicroseconds[(int)Math.Ceiling(fraction * sortedMicroseconds.Length) - 1] / 1000.0;

    private static long Commits(IEnumerable<WriterReport> writers) => writers.Sum(w => w.Attempts - w.FailedSeqs.Length);
}
