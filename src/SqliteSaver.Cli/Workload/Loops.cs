using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace SqliteSaver.Cli.Workload;

/// <summary>A writer's and a reader's loop: the same unit of work again and again until stopped, every error counted.</summary>
internal static class Loops
{
    /// <summary>Runs write transactions numbered from 0 until <paramref name="stop"/> is cancelled.</summary>
    [SuppressMessage("Design", "CA1031", Justification = "Every error that reaches the caller is counted, whatever its type.")]
    public static WriterReport Write(Stack stack, string connectionString, string run, int writer, WorkloadCounters counters, CancellationToken stop)
    {
        var latencies = new List<int>(4096);
        var failed = new List<long>();
        string? firstError = null;
        var random = new Random(writer);
        long seq = 0;
        for (; !stop.IsCancellationRequested; seq++)
        {
            var began = Stopwatch.GetTimestamp();
            try
            {
                Operations.Write(stack, connectionString, run, writer, seq, random);
                latencies.Add((int)Stopwatch.GetElapsedTime(began).TotalMicroseconds);
                counters.Committed();
            }
            catch (Exception exception)
            {
                failed.Add(seq);
                firstError ??= Program.OneLine(exception.Message);
                counters.Failed();
            }
        }

        return new WriterReport(writer, seq, [.. failed], [.. latencies], firstError);
    }

    /// <summary>Runs reads until <paramref name="stop"/> is cancelled.</summary>
    [SuppressMessage("Design", "CA1031", Justification = "Every error that reaches the caller is counted, whatever its type.")]
    public static ReaderReport Read(Stack stack, string connectionString, WorkloadCounters counters, CancellationToken stop)
    {
        long reads = 0, errors = 0;
        string? firstError = null;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                Operations.Read(stack, connectionString);
                reads++;
            }
            catch (Exception exception)
            {
                errors++;
                firstError ??= Program.OneLine(exception.Message);
                counters.Failed();
            }
        }

        return new ReaderReport(reads, errors, firstError);
    }
}
