namespace SqliteSaver.Data;

/// <summary>
/// A snapshot of a <see cref="SaverDataSource"/>'s pool and of what it has counted since it was created, for
/// applications that do not collect the "SqliteSaver.Data" metrics.
/// </summary>
public sealed record SaverDataSourceStatistics
{
    /// <summary>Physical connections open or being opened, idle and in use (the memory anchor and checkpoint connection excluded).</summary>
    public required int Total { get; init; }

    /// <summary>Physical connections open and waiting in the pool.</summary>
    public required int Idle { get; init; }

    /// <summary>Physical connections rented by a <see cref="SaverDbConnection"/>, being opened for one, or returned and still closing (with their files open).</summary>
    public required int InUse { get; init; }

    /// <summary>Callers queued for a connection because <see cref="MaxPoolSize"/> are in use.</summary>
    public required int Waiting { get; init; }

    /// <summary>The pool's size limit (Max Pool Size; <see cref="int.MaxValue"/> with <c>Pooling=false</c> and no Max Pool Size given).</summary>
    public required int MaxPoolSize { get; init; }

    /// <summary>Callers who gave up after waiting Pool Timeout for a connection.</summary>
    public required long Timeouts { get; init; }

    /// <summary>Attempts the built-in retry policy ran again after SQLITE_BUSY or SQLITE_LOCKED (0 with another retry strategy).</summary>
    public required long Retries { get; init; }

    /// <summary>SQLITE_BUSY and SQLITE_LOCKED errors the built-in retry policy caught.</summary>
    public required long TransientErrors { get; init; }

    /// <summary>Pieces of work that still failed with SQLITE_BUSY or SQLITE_LOCKED after every retry.</summary>
    public required long RetriesExhausted { get; init; }

    /// <summary>
    /// Commands and BeginTransaction calls that failed with SQLITE_BUSY ("database is locked") because their
    /// CommandTimeout ran out while they waited for a lock, in the process's write queue or for another connection's
    /// lock, whatever the retry strategy (a unit of work counts each attempt's BEGIN that ran out). With the defaults
    /// (Retry=5, Busy Timeout=5 s, Default Timeout=30 s) a write or BeginTransaction that meets a lock held past 30 s
    /// ends here rather than in <see cref="RetriesExhausted"/>; a read or PRAGMA waits inside SQLite's busy handler,
    /// whose waits the CommandTimeout does not cut short, and ends there after 6 attempts (about 32 s). A command's
    /// wait for the connection's earlier asynchronous execution is not counted.
    /// </summary>
    public required long LockTimeouts { get; init; }

    /// <summary>Connections opened and never closed whose physical connection the pool took back after they were garbage collected.</summary>
    public required long Leaked { get; init; }

    /// <summary>The result of the last checkpoint this data source ran, if any.</summary>
    public CheckpointResult? LastCheckpointResult { get; init; }

    /// <summary>When the last checkpoint finished.</summary>
    public DateTimeOffset? LastCheckpointTime { get; init; }
}
