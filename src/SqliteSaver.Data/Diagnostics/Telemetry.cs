using System.Diagnostics.Metrics;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace SqliteSaver.Data.Diagnostics;

/// <summary>
/// One data source's metrics, logs and counters. Every event is counted for <see cref="SaverDataSource.Statistics"/>;
/// durations are timed, and log messages built, only while a listener or an enabled logger wants them.
/// </summary>
/// <remarks>
/// Nothing here throws. A metrics listener or a logger that fails loses its measurement or message (only its own:
/// metrics and logs are guarded apart), and the pool, the write gate and the caller's operation go on as if nobody
/// listened: an exception between renting and handing over a connection would otherwise leave it rented for good,
/// and one on a timer or pool thread would end the process.
/// </remarks>
internal sealed class Telemetry
{
    private readonly TimeProvider _time;
    private readonly ILogger _poolLogger;
    private readonly ILogger _retryLogger;
    private readonly ILogger _checkpointLogger;
    private long _timeouts;
    private long _retries;
    private long _transientErrors;
    private long _retriesExhausted;
    private long _lockTimeouts;
    private long _leaked;

    public Telemetry(string poolName, ILoggerFactory loggerFactory, TimeProvider time)
    {
        PoolName = poolName;
        PoolTag = new(SaverMetrics.PoolNameTag, poolName);
        _time = time;
        _poolLogger = loggerFactory.CreateLogger("SqliteSaver.Data.Pool");
        _retryLogger = loggerFactory.CreateLogger("SqliteSaver.Data.Retry");
        _checkpointLogger = loggerFactory.CreateLogger("SqliteSaver.Data.Checkpoint");
    }

    /// <summary>The name the data source is known by in metrics and logs.</summary>
    public string PoolName { get; }

    /// <summary>The <c>db.client.connection.pool.name</c> tag.</summary>
    public KeyValuePair<string, object?> PoolTag { get; }

    public long Timeouts => Interlocked.Read(ref _timeouts);

    public long Retries => Interlocked.Read(ref _retries);

    public long TransientErrors => Interlocked.Read(ref _transientErrors);

    public long RetriesExhausted => Interlocked.Read(ref _retriesExhausted);

    public long LockTimeouts => Interlocked.Read(ref _lockTimeouts);

    public long Leaked => Interlocked.Read(ref _leaked);

    /// <summary>A start time for <paramref name="instrument"/>, or 0 when nobody listens to it.</summary>
    public long Start(Instrument instrument) => instrument.Enabled ? _time.GetTimestamp() : 0;

    /// <summary>Records the time since <paramref name="started"/> (from <see cref="Start"/>) in seconds, unless it was not timed.</summary>
    public void Record(Histogram<double> histogram, long started)
    {
        if (started == 0)
        {
            return;
        }

        try
        {
            histogram.Record(_time.GetElapsedTime(started).TotalSeconds, PoolTag);
        }
        catch (Exception)
        {
            // See the class remarks: a failing listener loses the measurement. The same holds for every catch below.
        }
    }

    /// <summary>A start time for opening a physical connection, or 0 when neither the metric nor the log wants it.</summary>
    public long StartOpening()
        => SaverMetrics.CreateTime.Enabled || PoolDebugEnabled() ? _time.GetTimestamp() : 0;

    public void Opened(long connectionId, long started)
    {
        if (started == 0)
        {
            return;
        }

        var elapsed = _time.GetElapsedTime(started);
        try
        {
            SaverMetrics.CreateTime.Record(elapsed.TotalSeconds, PoolTag);
        }
        catch (Exception)
        {
        }

        try
        {
            SaverLog.ConnectionOpened(_poolLogger, connectionId, PoolName, elapsed.TotalMilliseconds);
        }
        catch (Exception)
        {
        }
    }

    public void Closed(long connectionId, CloseReason reason, string? whyNotReset = null)
    {
        try
        {
            if (reason == CloseReason.NotReset)
            {
                SaverLog.ConnectionReplaced(_poolLogger, connectionId, PoolName, whyNotReset ?? "it could not be reset");
            }
            else
            {
                SaverLog.ConnectionClosed(_poolLogger, connectionId, PoolName, Describe(reason));
            }
        }
        catch (Exception)
        {
        }
    }

    public void PoolTimedOut(double poolTimeoutSeconds, int inUse, int maxPoolSize)
    {
        Interlocked.Increment(ref _timeouts);
        try
        {
            SaverMetrics.Timeouts.Add(1, PoolTag);
        }
        catch (Exception)
        {
        }

        try
        {
            SaverLog.PoolTimeout(_poolLogger, PoolName, poolTimeoutSeconds, inUse, maxPoolSize);
        }
        catch (Exception)
        {
        }
    }

    /// <summary>Counts and logs a connection whose <see cref="SaverDbConnection"/> was garbage collected while open.</summary>
    public void ConnectionLeaked(long connectionId)
    {
        try
        {
            SaverLog.ConnectionLeaked(_poolLogger, PoolName, connectionId);
        }
        catch (Exception)
        {
        }

        Interlocked.Increment(ref _leaked); // after the log, so that whoever sees the count sees the message too
    }

    /// <summary>A transient error that the policy retries after <paramref name="delay"/>; counted as a retry by <see cref="Retried"/>, once the delay is over.</summary>
    public void Retrying(int retry, int maxRetries, TimeSpan delay, SqliteException error)
    {
        Interlocked.Increment(ref _transientErrors);
        try
        {
            SaverMetrics.TransientErrors.Add(1, PoolTag);
        }
        catch (Exception)
        {
        }

        try
        {
            SaverLog.Retrying(_retryLogger, retry, maxRetries, PoolName, delay.TotalMilliseconds, error.SqliteExtendedErrorCode, error.Message);
        }
        catch (Exception)
        {
        }
    }

    /// <summary>The policy runs an attempt again: its delay is over, not cancelled.</summary>
    public void Retried()
    {
        Interlocked.Increment(ref _retries);
        try
        {
            SaverMetrics.Retries.Add(1, PoolTag);
        }
        catch (Exception)
        {
        }
    }

    public void GaveUp(int attempts, TimeSpan elapsed, SqliteException error)
    {
        Interlocked.Increment(ref _transientErrors);
        Interlocked.Increment(ref _retriesExhausted);
        try
        {
            SaverMetrics.TransientErrors.Add(1, PoolTag);
            SaverMetrics.RetriesExhausted.Add(1, PoolTag);
        }
        catch (Exception)
        {
        }

        try
        {
            SaverLog.RetriesExhausted(_retryLogger, PoolName, attempts, elapsed.TotalMilliseconds, error.SqliteExtendedErrorCode, error.Message);
        }
        catch (Exception)
        {
        }
    }

    /// <summary>A command or BeginTransaction gave up on a lock: its CommandTimeout ran out while it waited (see <see cref="Resilience.CommandDeadline"/>).</summary>
    public void LockWaitTimedOut(SqliteException error)
    {
        Interlocked.Increment(ref _lockTimeouts);
        try
        {
            SaverMetrics.LockTimeouts.Add(1, PoolTag);
        }
        catch (Exception)
        {
        }

        try
        {
            SaverLog.LockWaitTimedOut(_retryLogger, PoolName, error.Message);
        }
        catch (Exception)
        {
        }
    }

    /// <summary>A command looked for a prepared statement for its text in its physical connection's cache.</summary>
    /// <param name="kept">Whether one was kept there, so SQLite did not have to prepare it.</param>
    public void StatementLookedUp(bool kept)
    {
        try
        {
            if (SaverMetrics.StatementCacheLookups.Enabled)
            {
                SaverMetrics.StatementCacheLookups.Add(1, PoolTag, new("sqlitesaver.statement_cache.hit", kept));
            }
        }
        catch (Exception)
        {
        }
    }

    /// <summary>Counts and logs a checkpoint; <paramref name="trigger"/> says what ran it (on demand, interval, catch-up ...).</summary>
    public void Checkpointed(CheckpointMode mode, CheckpointResult result, string trigger)
    {
        try
        {
            if (SaverMetrics.Checkpoints.Enabled)
            {
                SaverMetrics.Checkpoints.Add(
                    1,
                    PoolTag,
                    new("sqlitesaver.checkpoint.mode", ModeName(mode)),
                    new("sqlitesaver.checkpoint.trigger", trigger),
                    new("sqlitesaver.checkpoint.busy", result.Busy));
            }

            // A TRUNCATE that succeeds reports the WAL it has just emptied, 0 frames, whatever it copied.
            if (SaverMetrics.CheckpointFrames.Enabled && result.CheckpointedFrames >= 0 && !(mode == CheckpointMode.Truncate && !result.Busy))
            {
                SaverMetrics.CheckpointFrames.Record(
                    result.CheckpointedFrames,
                    PoolTag,
                    new("sqlitesaver.checkpoint.mode", ModeName(mode)),
                    new("sqlitesaver.checkpoint.trigger", trigger));
            }
        }
        catch (Exception)
        {
        }

        try
        {
            SaverLog.Checkpointed(_checkpointLogger, mode, PoolName, result.Busy, result.LogFrames, result.CheckpointedFrames);
        }
        catch (Exception)
        {
        }
    }

    public void CheckpointsStayBusy(int times)
    {
        try
        {
            SaverLog.CheckpointsStayBusy(_checkpointLogger, PoolName, times);
        }
        catch (Exception)
        {
        }
    }

    public void WalOverLimit(long walBytes, long limit)
    {
        try
        {
            SaverLog.WalOverLimit(_checkpointLogger, PoolName, walBytes, limit);
        }
        catch (Exception)
        {
        }
    }

    /// <summary>Logs a failed background checkpoint (its error is kept in LastCheckpointError all the same).</summary>
    public void CheckpointFailed(Exception exception)
    {
        try
        {
            SaverLog.CheckpointFailed(_checkpointLogger, exception, PoolName);
        }
        catch (Exception)
        {
        }
    }

    private static string ModeName(CheckpointMode mode) => mode switch
    {
        CheckpointMode.Passive => "passive",
        CheckpointMode.Full => "full",
        CheckpointMode.Restart => "restart",
        _ => "truncate",
    };

    /// <summary>Whether the pool logger writes Debug; no when it throws (Microsoft.Extensions.Logging passes on a provider's error).</summary>
    private bool PoolDebugEnabled()
    {
        try
        {
            return _poolLogger.IsEnabled(LogLevel.Debug);
        }
        catch (Exception)
        {
            return false;
        }
    }

    private static string Describe(CloseReason reason) => reason switch
    {
        CloseReason.PoolingOff => "pooling is off",
        CloseReason.Cleared => "the pool was cleared",
        CloseReason.Disposed => "the data source was disposed",
        CloseReason.Idle => "it stayed idle for Connection Idle Lifetime",
        CloseReason.Leaked => "its SaverDbConnection was garbage collected while open",
        CloseReason.PoolEmpty => "it is the checkpointer's own, which closes with the pool's last connection",
        CloseReason.Redundant => "another connection keeps the in-memory database alive already",
        _ => "it could not be reset",
    };
}
