using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Wal;

/// <summary>
/// Keeps one data source's WAL bounded. It owns a connection of its own, outside the pool's size, on which it
/// runs the data source's on-demand checkpoints and, every Checkpoint Interval, a checkpoint in Checkpoint Mode, or a
/// TRUNCATE one when the <c>-wal</c> file has grown past Journal Size Limit. Its connection waits for readers and
/// writers at most <see cref="StepTimeout"/>, so a RESTART or TRUNCATE checkpoint never holds writers back for longer;
/// when it comes back busy the next ones are spaced out (twice, four, then eight times the interval), except that a
/// <c>-wal</c> file past the limit is tried at every interval.
/// </summary>
internal sealed class Checkpointer : IDisposable
{
    /// <summary>The longest a checkpoint waits for readers and writers (it blocks new writers while it waits).</summary>
    public static readonly TimeSpan StepTimeout = TimeSpan.FromMilliseconds(250);

    private readonly SaverOptions _options;
    private readonly SaverRetryStrategy _strategy;
    private readonly TimeProvider _time;
    private readonly Func<bool> _poolInUse;
    private readonly Lock _lock = new();
    private readonly ITimer? _timer;
    private PhysicalConnection? _connection;
    private int _busyStreak;
    private long _ticksToSkip;

    public Checkpointer(SaverOptions options, SaverRetryStrategy strategy, TimeProvider time, Func<bool> poolInUse)
    {
        _options = options;
        _strategy = strategy;
        _time = time;
        _poolInUse = poolInUse;
        if (options.MaintainsWal && options.CheckpointInterval > TimeSpan.Zero)
        {
            _timer = time.CreateTimer(static state => ((Checkpointer)state!).Tick(), this, options.CheckpointInterval, options.CheckpointInterval);
        }
    }

    /// <summary>The result of the last checkpoint run here, background or on demand.</summary>
    public CheckpointResult? LastResult { get; private set; }

    /// <summary>When the last checkpoint here finished, by the data source's clock.</summary>
    public DateTimeOffset? LastTime { get; private set; }

    /// <summary>The error of the last background checkpoint that failed; cleared by the next one that succeeds.</summary>
    public Exception? LastError { get; private set; }

    /// <summary>Background checkpoints run so far.</summary>
    public int BackgroundRuns { get; private set; }

    /// <summary>Runs a checkpoint on the checkpointer's own connection.</summary>
    /// <exception cref="Microsoft.Data.Sqlite.SqliteException">SQLite could not open the database or reported an error other than busy.</exception>
    public CheckpointResult Run(CheckpointMode mode)
    {
        lock (_lock)
        {
            var result = CheckpointExtensions.Run(Connection().Handle, mode);
            LastResult = result;
            LastTime = _time.GetUtcNow();
            return result;
        }
    }

    /// <summary>Reads the WAL status on the checkpointer's own connection.</summary>
    public WalStatus GetStatus()
    {
        lock (_lock)
        {
            return CheckpointExtensions.ReadStatus(Connection().Handle);
        }
    }

    /// <summary>
    /// The TRUNCATE checkpoint for Checkpoint On Close, once the cleared pool's last connection has closed; the
    /// connection it used is closed too, so that the files are released.
    /// </summary>
    public void CheckpointOnClose()
    {
        if (!_options.CheckpointOnClose || !_options.MaintainsWal)
        {
            Close();
            return;
        }

        lock (_lock)
        {
            try
            {
                Run(CheckpointMode.Truncate);
            }
            catch (Microsoft.Data.Sqlite.SqliteException exception)
            {
                LastError = exception; // closing goes on: the next open recovers the WAL as usual
            }
            finally
            {
                Close();
            }
        }
    }

    /// <summary>Closes the checkpointer's connection, releasing the files; it reopens when next needed.</summary>
    public void Close()
    {
        lock (_lock)
        {
            _connection?.Dispose();
            _connection = null;
        }
    }

    public void Dispose()
    {
        _timer?.Dispose();
        Close();
    }

    private PhysicalConnection Connection()
    {
        if (_connection is null)
        {
            _connection = PhysicalConnection.Open(_options, _strategy, generation: 0);
            raw.sqlite3_busy_timeout(_connection.Handle, (int)Math.Min(_options.BusyTimeout.TotalMilliseconds, StepTimeout.TotalMilliseconds));
        }

        return _connection;
    }

    /// <summary>One background step: skipped while the pool is unused (a cleared pool must not reopen its files) or backing off.</summary>
    private void Tick()
    {
        if (!_poolInUse() || !_lock.TryEnter())
        {
            return;
        }

        try
        {
            // A -wal file past the limit is truncated at every tick, backing off or not: the bound comes first.
            var overLimit = _options.JournalSizeLimit >= 0 && GetStatus().WalFileBytes > _options.JournalSizeLimit;
            if (!overLimit && _ticksToSkip > 0)
            {
                _ticksToSkip--;
                return;
            }

            var result = Run(overLimit ? CheckpointMode.Truncate : _options.CheckpointMode);
            BackgroundRuns++;
            LastError = null;
            _busyStreak = result.Busy ? Math.Min(_busyStreak + 1, 3) : 0;
            _ticksToSkip = (1L << _busyStreak) - 1;
        }
        catch (Exception exception) when (exception is Microsoft.Data.Sqlite.SqliteException or IOException)
        {
            LastError = exception;
        }
        finally
        {
            _lock.Exit();
        }
    }
}
