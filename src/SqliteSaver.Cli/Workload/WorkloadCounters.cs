namespace SqliteSaver.Cli.Workload;

/// <summary>Running totals of this process's commits and errors, for the live progress display.</summary>
internal sealed class WorkloadCounters
{
    private long _commits;
    private long _errors;

    public long Commits => Interlocked.Read(ref _commits);

    public long Errors => Interlocked.Read(ref _errors);

    public void Committed() => Interlocked.Increment(ref _commits);

    public void Failed() => Interlocked.Increment(ref _errors);
}
