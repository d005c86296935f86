namespace SqliteSaver.Cli.Workload;

/// <summary>What one run of the contention workload does.</summary>
/// <param name="DatabasePath">The database file.</param>
/// <param name="SaverKeywords">Connection-string keywords added for the SqliteSaver stack, such as <c>Busy Timeout=1000</c>.</param>
/// <param name="Threads">Writer threads in this process.</param>
/// <param name="Processes">Child processes with one writer each.</param>
/// <param name="Readers">Reader threads in this process.</param>
/// <param name="Duration">How long the writers and readers run.</param>
internal sealed record WorkloadSettings(string DatabasePath, string SaverKeywords, int Threads, int Processes, int Readers, TimeSpan Duration);
