using System.Text.Json.Serialization;
using SqliteSaver.Cli.Workload;

namespace SqliteSaver.Cli.Commands;

/// <summary>What <c>demo</c> and <c>stress</c> print with <c>--json</c>.</summary>
/// <param name="Database">The database file (<c>stress</c>); null for <c>demo</c>, whose files are deleted.</param>
/// <param name="Threads">Writer threads in this process.</param>
/// <param name="Processes">Writer child processes, one writer each.</param>
/// <param name="Readers">Reader threads in this process.</param>
/// <param name="Seconds">How long the workload ran on each stack.</param>
/// <param name="Stacks">One result per stack, in the order they ran.</param>
internal sealed record WorkloadReport(string? Database, int Threads, int Processes, int Readers, double Seconds, IReadOnlyList<StackResult> Stacks)
{
    public WorkloadReport(string? database, WorkloadSettings settings, IReadOnlyList<StackResult> stacks)
        : this(database, settings.Threads, settings.Processes, settings.Readers, settings.Duration.TotalSeconds, stacks)
    {
    }

    /// <summary>Whether the SqliteSaver run reached the caller with no error and left no row lost or doubled.</summary>
    [JsonIgnore]
    public bool SaverClean => Stacks.Where(s => s.Stack == Operations.Name(Stack.Saver)).All(s => s.Errors == 0 && s.RowsLost == 0 && s.RowsDoubled == 0);
}
