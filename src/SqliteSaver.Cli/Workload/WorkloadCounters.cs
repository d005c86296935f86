namespace SqliteSaver.Cli.Workload;

/// <summary>Running totals of this process's writers and readers, for the live progress display.</summary>
internal sealed class WorkloadCounters
{
    private long _commits;
    private long _errors;
    private long _reads;

    public long Commits => Interlocked.Read(ref _commits);

    public long Errors => Interlocked.Read(ref _errors);

    public long Reads => Interlocked.Read(ref _reads);

    public void Committed() => Interlocked.Increment(ref _commits);

    public void Failed() => Interlocked.Increment(ref _errors);

    public void Read() => Interlocked.Increment(ref _reads);
}
