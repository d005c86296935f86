namespace SqliteSaver.Cli.Workload;

/// <summary>What the workload measured on one stack.</summary>
/// <param name="Stack">The stack's name: Microsoft.Data.Sqlite or SqliteSaver.</param>
/// <param name="Seconds">How long the writers ran.</param>
/// <param name="Commits">Write transactions acknowledged to the caller.</param>
/// <param name="ChildProcessCommits">The part of <paramref name="Commits"/> made by the writers in child processes.</param>
/// <param name="TransactionsPerSecond">Acknowledged write transactions per second.</param>
/// <param name="P99Milliseconds">The 99th percentile of the acknowledged transactions' latency; null when none was.</param>
/// <param name="MaxMilliseconds">The worst latency of an acknowledged transaction.</param>
/// <param name="Errors">Errors that reached the caller, writers' and readers'.</param>
/// <param name="FirstError">The first error's message, if any.</param>
/// <param name="RowsLost">Acknowledged commits whose row is not in the table.</param>
/// <param name="RowsDoubled">Rows beyond the first for one transaction.</param>
/// <param name="WalBytes">The size of the <c>-wal</c> file when the workload ended, with its connections still open.</param>
/// <param name="Reads">Read queries completed by the readers.</param>
internal sealed record StackResult(
    string Stack,
    double Seconds,
    long Commits,
    long ChildProcessCommits,
    double TransactionsPerSecond,
    double? P99Milliseconds,
    double? MaxMilliseconds,
    long Errors,
    string? FirstError,
    long RowsLost,
    long RowsDoubled,
    long WalBytes,
    long Reads);
