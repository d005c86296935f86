using System.Diagnostics;
using System.Globalization;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// When a command's CommandTimeout runs out, counted from the moment the command started, or, for what the connection
/// itself runs (BeginTransaction, a unit of work's turn, a Commit's or checkpoint's wait for an earlier execution), its
/// connection string's Default Timeout. It bounds the waits for the write lock (in the write queue, for a lock another
/// connection holds, and before each new attempt); a statement SQLite is already running is never cut short, as with
/// Microsoft.Data.Sqlite.
/// </summary>
internal readonly struct CommandDeadline
{
    private readonly long _started;
    private readonly int _seconds;
    private readonly bool _defaultTimeout;

    private CommandDeadline(long started, int seconds, bool defaultTimeout)
        => (_started, _seconds, _defaultTimeout) = (started, seconds, defaultTimeout);

    /// <summary>
    /// Whether there is no deadline: a CommandTimeout of 0, or one longer than the longest wait a timer takes
    /// (24.8 days), waits as long as Busy Timeout and Retry allow.
    /// </summary>
    public bool IsNone => _seconds == 0 || _seconds > int.MaxValue / 1000;

    /// <summary>The CommandTimeout (or Default Timeout) the deadline was started with.</summary>
    public int Seconds => _seconds;

    /// <summary>The setting the deadline stands for, as an error names it.</summary>
    public string Bound => _defaultTimeout ? "the connection string's Default Timeout" : "the command's CommandTimeout";

    /// <summary>The time left, at least zero; <see cref="Timeout.InfiniteTimeSpan"/> without a deadline.</summary>
    public TimeSpan Remaining
        => IsNone ? Timeout.InfiniteTimeSpan : TimeSpan.FromTicks(Math.Max(0, TimeSpan.FromSeconds(_seconds).Ticks - Stopwatch.GetElapsedTime(_started).Ticks));

    /// <summary>Whether the deadline has passed.</summary>
    public bool HasPassed => !IsNone && Stopwatch.GetElapsedTime(_started) >= TimeSpan.FromSeconds(_seconds);

    /// <summary>Starts the clock for a command whose CommandTimeout is <paramref name="seconds"/>.</summary>
    public static CommandDeadline Start(int seconds) => new(Stopwatch.GetTimestamp(), seconds, defaultTimeout: false);

    /// <summary>Starts the clock for what the connection runs without a command, bounded by its Default Timeout of <paramref name="seconds"/>.</summary>
    public static CommandDeadline StartDefault(int seconds) => new(Stopwatch.GetTimestamp(), seconds, defaultTimeout: true);

    /// <summary>Throws <see cref="LockWaitTimedOut"/> once the deadline has passed, before another attempt begins.</summary>
    /// <exception cref="CommandTimeoutException">The deadline has passed.</exception>
    public void ThrowIfPassed()
    {
        if (HasPassed)
        {
            throw LockWaitTimedOut();
        }
    }

    /// <summary>The error for a deadline that ran out in the process's write queue.</summary>
    public CommandTimeoutException QueueTimedOut()
        => new(string.Create(
            CultureInfo.InvariantCulture,
            $"SQLite Error 5: 'database is locked'. Waited {_seconds} s ({Bound}) in this process's write queue behind writers that held it that long (a transaction that stayed open, a long write, or writes waiting out another connection's lock); commit or roll back transactions promptly."));

    /// <summary>The error for a deadline that ran out while another connection held the write lock.</summary>
    public CommandTimeoutException LockWaitTimedOut()
        => _defaultTimeout
            ? new(string.Create(
                CultureInfo.InvariantCulture,
                $"SQLite Error 5: 'database is locked'. Waited {Stopwatch.GetElapsedTime(_started).TotalSeconds:0.0} s for a lock another connection held; the connection string's Default Timeout, which bounds the waits of BeginTransaction and RunInTransaction for the write lock, is {_seconds} s. Set a longer Default Timeout to wait longer; 0 waits as long as Busy Timeout and Retry allow."))
            : new(string.Create(
                CultureInfo.InvariantCulture,
                $"SQLite Error 5: 'database is locked'. Waited {Stopwatch.GetElapsedTime(_started).TotalSeconds:0.0} s for a lock another connection held; the command's CommandTimeout is {_seconds} s (a read's wait inside SQLite's busy handler, up to Busy Timeout, is not cut short by it). Give the command a longer CommandTimeout (Default Timeout sets it for every command) to wait longer; 0 waits as long as Busy Timeout and Retry allow."));
}
