using Microsoft.Extensions.Logging;

namespace SqliteSaver.Data.Diagnostics;

/// <summary>The library's log messages, generated so that nothing is formatted while their level is off.</summary>
internal static partial class SaverLog
{
    [LoggerMessage(1001, LogLevel.Debug, "Opened physical connection {ConnectionId} to {PoolName} in {ElapsedMilliseconds:0.0} ms")]
    public static partial void ConnectionOpened(ILogger logger, long connectionId, string poolName, double elapsedMilliseconds);

    [LoggerMessage(1002, LogLevel.Debug, "Closed physical connection {ConnectionId} to {PoolName}: {Reason}")]
    public static partial void ConnectionClosed(ILogger logger, long connectionId, string poolName, string reason);

    [LoggerMessage(1003, LogLevel.Debug, "Replacing physical connection {ConnectionId} to {PoolName}: {Reason}, so it was closed and a fresh one opens when needed")]
    public static partial void ConnectionReplaced(ILogger logger, long connectionId, string poolName, string reason);

    [LoggerMessage(1004, LogLevel.Warning, "No pooled connection to {PoolName} came free within Pool Timeout={PoolTimeoutSeconds} s: {InUse} of Max Pool Size={MaxPoolSize} are in use")]
    public static partial void PoolTimeout(ILogger logger, string poolName, double poolTimeoutSeconds, int inUse, int maxPoolSize);

    [LoggerMessage(1005, LogLevel.Warning, "A SaverDbConnection to {PoolName} was garbage collected while open; physical connection {ConnectionId} was closed, rolling back any transaction, and its pool slot freed. Dispose connections when done with them")]
    public static partial void ConnectionLeaked(ILogger logger, string poolName, long connectionId);

    [LoggerMessage(2001, LogLevel.Debug, "Retry {Retry} of {MaxRetries} on {PoolName} in {DelayMilliseconds:0.0} ms after {Error} (extended code {ErrorCode})")]
    public static partial void Retrying(ILogger logger, int retry, int maxRetries, string poolName, double delayMilliseconds, int errorCode, string error);

    [LoggerMessage(2002, LogLevel.Warning, "Gave up on {PoolName} after {Attempts} attempts over {ElapsedMilliseconds:0} ms: {Error} (extended code {ErrorCode})")]
    public static partial void RetriesExhausted(ILogger logger, string poolName, int attempts, double elapsedMilliseconds, int errorCode, string error);

    [LoggerMessage(2003, LogLevel.Warning, "A CommandTimeout (a command's, or Default Timeout for BeginTransaction) ran out on {PoolName} while it waited for a lock: {Error}")]
    public static partial void LockWaitTimedOut(ILogger logger, string poolName, string error);

    [LoggerMessage(3001, LogLevel.Debug, "{Mode} checkpoint on {PoolName}: busy={Busy}, {LogFrames} frames in the WAL, {CheckpointedFrames} checkpointed")]
    public static partial void Checkpointed(ILogger logger, CheckpointMode mode, string poolName, bool busy, int logFrames, int checkpointedFrames);

    [LoggerMessage(3002, LogLevel.Warning, "Background checkpoints on {PoolName} came back busy {Times} times in a row: long readers or writers keep the WAL from being reset")]
    public static partial void CheckpointsStayBusy(ILogger logger, string poolName, int times);

    [LoggerMessage(3003, LogLevel.Warning, "The -wal file of {PoolName} is {WalBytes} bytes after a TRUNCATE checkpoint, over Journal Size Limit={JournalSizeLimit}: readers or writers keep it from being reset")]
    public static partial void WalOverLimit(ILogger logger, string poolName, long walBytes, long journalSizeLimit);

    [LoggerMessage(3004, LogLevel.Warning, "A background checkpoint on {PoolName} failed")]
    public static partial void CheckpointFailed(ILogger logger, Exception exception, string poolName);
}
