using System.Diagnostics;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Interop;
using SqliteSaver.Data.Pooling;
using SqliteSaver.Data.Resilience;
using SQLitePCL;

namespace SqliteSaver.Data.Wal;

/// <summary>
/// Keeps one data source's WAL bounded. It owns a connection of its own, outside the pool's size, on which it
/// runs the data source's on-demand checkpoints and, every Checkpoint Interval, a checkpoint in Checkpoint Mode, or a
/// TRUNCATE one when the <c>-wal</c> file has grown past Journal Size Limit. Its connection waits for each lock (the
/// writer's, then each reader's) at most <see cref="StepTimeout"/>, so a RESTART or TRUNCATE checkpoint holds writers
/// back for a few such steps at most, and the one for a <c>-wal</c> file past the limit for one step in all;
/// when it comes back busy the next ones are spaced out (twice, four, then eight times the interval), except that a
/// <c>-wal</c> file past the limit is tried at every interval.
/// </summary>
/// <remarks>
/// SQLite's automatic checkpoint runs inside the COMMIT that takes the WAL to Wal Autocheckpoint pages, so it is
/// paid by a writer holding the write gate, with every other writer in the process queued behind it while it copies
/// and syncs up to Wal Autocheckpoint pages. So whenever the transactions committed through the data source have
/// written a quarter of Wal Autocheckpoint pages to the WAL (as SQLite counts them for each connection), this also
/// runs a PASSIVE checkpoint on a pool thread (a catch-up), which copies and syncs most of those pages while writers
/// go on. The automatic checkpoint then only has the frames written since, and still starts the WAL over as before.
/// </remarks>
internal sealed class Checkpointer : IDisposable
{
    /// <summary>The longest a checkpoint waits for readers and writers (it blocks new writers while it waits).</summary>
    public static readonly TimeSpan StepTimeout = TimeSpan.FromMilliseconds(250);

    /// <summary>How often a wait for the lock looks at its cancellation token.</summary>
    private static readonly TimeSpan CancellationPoll = TimeSpan.FromMilliseconds(5);

    /// <summary>The fewest pages between catch-ups, so that a small Wal Autocheckpoint does not queue one per commit.</summary>
    private const int MinimumCatchUpPages = 64;

    // What ran a checkpoint: the values of its sqlitesaver.checkpoint.trigger tag.
    private const string OnDemand = "on_demand";
    private const string Interval = "interval";
    private const string WalOverLimit = "wal_over_limit";
    private const string CatchUpTrigger = "catch_up";
    private const string PoolDrained = "pool_drained";

    // What an on-demand checkpoint answers when another one here keeps the connection past StepTimeout.
    public static readonly CheckpointResult AnotherCheckpointRuns = new(Busy: true, LogFrames: -1, CheckpointedFrames: -1);

    private readonly SaverOptions _options;
    private readonly PhysicalConnectionFactory _factory;
    private readonly Telemetry _telemetry;
    private readonly TimeProvider _time;
    private readonly ConnectionPool _pool;
    private readonly WriteGate? _gate;
    private readonly Lock _lock = new();
    private readonly ITimer? _timer;
    private PhysicalConnection? _connection;
    private WalFile? _walFile; // of the connection, once opened: for a status while a checkpoint keeps the connection
    private CancellationTokenSource? _opening; // while the connection opens (see StopOpening)
    private bool _disposed;
    private volatile Outcome? _last; // one reference, so a reader never sees a result from one run and a time from another
    private int _busyStreak;
    private long _ticksToSkip;
    private readonly int _catchUpPages;
    private int _pages;
    private int _catchUpQueued;
    private int _catchUps;
    private int _ticking;

    public Checkpointer(SaverOptions options, PhysicalConnectionFactory factory, Telemetry telemetry, TimeProvider time, ConnectionPool pool, WriteGate? gate)
    {
        _gate = gate;
        _options = options;
        _factory = factory;
        _telemetry = telemetry;
        _time = time;
        _pool = pool;
        if (options.MaintainsWal && options.CheckpointInterval > TimeSpan.Zero)
        {
            // The system timer counts whole milliseconds, and a period of 0 would make it fire once and stop.
            var period = TimeSpan.FromTicks(Math.Max(options.CheckpointInterval.Ticks, TimeSpan.TicksPerMillisecond));
            _timer = time.CreateTimer(static state => ((Checkpointer)state!).Tick(), this, period, period);
            _catchUpPages = options.WalAutocheckpoint > 0 ? Math.Max(options.WalAutocheckpoint / 4, MinimumCatchUpPages) : 0;
        }
    }

    /// <summary>The result of the last checkpoint run here, background or on demand, and when it finished (by the data source's clock).</summary>
    public (CheckpointResult Result, DateTimeOffset Time)? Last => _last is { } last ? (last.Result, last.Time) : null;

    /// <summary>The error of the last background checkpoint that failed; cleared by the next one that succeeds.</summary>
    public Exception? LastError { get; private set; }

    /// <summary>Background checkpoints run so far.</summary>
    public int BackgroundRuns { get; private set; }

    /// <summary>Catch-up checkpoints queued so far (see the remarks).</summary>
    public int CatchUps => Volatile.Read(ref _catchUps);

    /// <summary>The <c>-wal</c> file of the database the checkpoint connection last opened; null before it first opened or for one in memory.</summary>
    public string? WalPath => Volatile.Read(ref _walFile)?.Path;

    /// <summary>Whether a catch-up is queued or running.</summary>
    public bool CatchUpPending => Volatile.Read(ref _catchUpQueued) == 1;

    /// <summary>
    /// Runs a checkpoint on the checkpointer's own connection; closes it again if the pool has no connection open,
    /// so that it holds no file the application may delete or replace. Waits at most <see cref="StepTimeout"/> for
    /// another checkpoint here to end (a background one copying a large WAL back may take longer), and comes back
    /// busy, with -1 frames, if it does not.
    /// </summary>
    /// <param name="mode">The checkpoint mode.</param>
    /// <param name="cancellationToken">Ends the waits for another checkpoint, of the connection's opening, if it opens, and of the checkpoint.</param>
    /// <exception cref="Microsoft.Data.Sqlite.SqliteException">SQLite could not open the database or reported an error other than busy.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public CheckpointResult Run(CheckpointMode mode, CancellationToken cancellationToken)
    {
        if (!TryEnter(cancellationToken))
        {
            return AnotherCheckpointRuns; // as SQLite answers while another connection checkpoints
        }

        try
        {
            if (_connection is null && _pool.OnlyClearedConnectionsOpen())
            {
                throw ClearedWithRentersOut("checkpoint");
            }

            var result = CheckpointExtensions.RunCancellable(Connection(cancellationToken).Handle, mode, ConnectionBusyTimeout, cancellationToken);
            Record(mode, result, OnDemand);
            return result;
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>
    /// Waits at most <see cref="StepTimeout"/> for the lock, looking at <paramref name="cancellationToken"/> every few
    /// milliseconds, as <see cref="Lock"/> cannot be woken by a token.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    private bool TryEnter(CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled)
        {
            return _lock.TryEnter(StepTimeout);
        }

        var started = Stopwatch.GetTimestamp();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var left = StepTimeout - Stopwatch.GetElapsedTime(started);
            if (left <= TimeSpan.Zero)
            {
                return false;
            }

            if (_lock.TryEnter(left < CancellationPoll ? left : CancellationPoll))
            {
                return true;
            }
        }
    }

    /// <summary>
    /// Counts the pages a transaction committed by one of the data source's connections wrote to the WAL; every
    /// quarter of Wal Autocheckpoint pages it queues a catch-up (see the remarks), unless one is queued or running already.
    /// </summary>
    public void Committed(int pages)
    {
        if (_catchUpPages == 0
            || Interlocked.Add(ref _pages, pages) < _catchUpPages
            || Interlocked.Exchange(ref _catchUpQueued, 1) == 1)
        {
            return;
        }

        Volatile.Write(ref _pages, 0);
        Interlocked.Increment(ref _catchUps);
        try
        {
            ThreadPool.UnsafeQueueUserWorkItem(static checkpointer => checkpointer.CatchUp(), this, preferLocal: false);
        }
        catch (OutOfMemoryException)
        {
            Volatile.Write(ref _catchUpQueued, 0); // called after a COMMIT that succeeded: it must not fail it
        }
    }

    /// <summary>
    /// Reads the WAL status on the checkpointer's own connection, closed again as <see cref="Run(CheckpointMode, CancellationToken)"/>
    /// leaves it. While another checkpoint here keeps that connection past <see cref="StepTimeout"/> (a background one
    /// copying a large WAL back, say), or while the pool has only connections rented before its last Clear open (see
    /// <see cref="ConnectionPool.OnlyClearedConnectionsOpen"/>), the status comes from the <c>-wal</c> file's size alone,
    /// in the journal mode and page size that connection last found.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// The pool has only connections rented before its last Clear open, and the connection never opened; or the pool
    /// was cleared or the data source disposed while the connection opened.
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> ended a wait for the lock, or the connection's opening.</exception>
    public WalStatus GetStatus(CancellationToken cancellationToken = default)
    {
        if (!_lock.TryEnter(StepTimeout))
        {
            if (Volatile.Read(ref _walFile) is { } file)
            {
                return file.Status();
            }

            while (!_lock.TryEnter(CancellationPoll)) // the connection is still opening
            {
                cancellationToken.ThrowIfCancellationRequested();
            }
        }

        try
        {
            if (_connection is null && _pool.OnlyClearedConnectionsOpen())
            {
                return _walFile?.Status() ?? throw ClearedWithRentersOut("WAL status read");
            }

            return Status(cancellationToken);
        }
        finally
        {
            Leave();
        }
    }

    /// <summary>What an on-demand call that would open the connection while only cleared connections are open throws.</summary>
    private static ConnectionsBusyException ClearedWithRentersOut(string what)
        => new($"The data source's pool was cleared (Clear or ClearPool) while connections opened before were still in use, and only those are open now: a {what} would open a new connection to whatever file is at the path now (a replacement, maybe), which SQLite would read together with the -wal file they keep, copying that file's frames into it. Try again once they are closed, or once a connection has been opened since the Clear.");

    /// <summary>
    /// Before the connection opens: throws while the pool's connections have a database file that is no longer at the
    /// path (see <see cref="ConnectionPool.FileMoved"/>), as the connection would read what is there with the <c>-wal</c>
    /// file they keep and copy its pages into it; asks again every few milliseconds, up to <see cref="StepTimeout"/>,
    /// while one of them cannot answer (inside SQLite on another thread), and throws if it still could not.
    /// </summary>
    /// <exception cref="InvalidOperationException">The file moved.</exception>
    /// <exception cref="ConnectionsBusyException">That could not be told.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while it asked again.</exception>
    private void ThrowIfFileMoved(CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        while (true)
        {
            switch (_pool.FileMoved())
            {
                case false:
                    return;
                case true:
                    throw FileMovedError();
            }

            if (Stopwatch.GetElapsedTime(started) >= StepTimeout)
            {
                throw new ConnectionsBusyException(
                    FormattableString.Invariant($"A connection of the pool stayed inside SQLite on another thread for {StepTimeout.TotalMilliseconds} ms, so the checkpoint connection could not tell whether the database file at the path is still the one it has open (a replacement would be read with its -wal file): it opened nothing. Try again."));
            }

            cancellationToken.WaitHandle.WaitOne(CancellationPoll);
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    /// <summary>What checkpoints and status reads throw while the file the pool's connections have is no longer at the path.</summary>
    private InvalidOperationException FileMovedError()
        => new($"The database file '{_options.DatabaseFile}' was replaced or deleted while the pool's connections had it open: they go on with the file they opened, and the data source checkpoints and reports nothing until the pool is cleared (a checkpoint connection opened now would read what is at the path with the -wal file they keep, and copy its pages into it). Clear the pool (SaverDbConnection.ClearPool or the data source's Clear) so that the connections close; the checkpoints resume with the connections opened after that.");

    /// <summary>
    /// Throws while <paramref name="connection"/>, the checkpoint connection, and a pool connection opened since the last
    /// Clear have different files (see <see cref="ConnectionPool.ConnectionOnAnotherFile"/>): its checkpoints would not be
    /// of every file the pool writes.
    /// </summary>
    /// <exception cref="InvalidOperationException">They have.</exception>
    private void ThrowIfOnAnotherFile(PhysicalConnection connection)
    {
        if (_pool.ConnectionOnAnotherFile(connection.File) is { } poolFile)
        {
            throw new InvalidOperationException(
                $"The path '{_options.DataSource}' led to another database file as some of the data source's connections opened than as others did (a symbolic link on it repointed while they were open, say): the checkpoint connection has '{connection.File}', a pool connection '{poolFile}'. The data source checkpoints and reports neither until the pool is cleared, as its checkpoints would not be of every file the pool writes. Clear the pool (SaverDbConnection.ClearPool or the data source's Clear) so that the connections close; the checkpoints resume with the connections opened after that.");
        }
    }

    /// <summary>What a call that opens the connection throws when Clear or Dispose stopped its opening (see <see cref="StopOpening"/>).</summary>
    private static InvalidOperationException StoppedOpening()
        => new("The data source's pool was cleared, or the data source disposed, while its checkpoint connection opened: nothing was read or checkpointed.");

    /// <summary>
    /// Ends the connection's opening, if one runs (its waits for a lock, between attempts and in the initializer), so
    /// that Clear and Dispose, which take the lock it holds, do not wait for it: up to Busy Timeout for each of the
    /// PRAGMAs' attempts on a database locked elsewhere. Call before taking the lock.
    /// </summary>
    public void StopOpening()
    {
        try
        {
            Volatile.Read(ref _opening)?.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // It has opened, or failed to, since.
        }
    }

    /// <summary>
    /// The pool's last open connection is about to close. When the pool is drained (cleared or disposed, emptied by
    /// idle pruning, or without pooling closed by its last renter) runs the TRUNCATE checkpoint for Checkpoint On
    /// Close on the checkpointer's own connection if that is open, else on <paramref name="last"/> (none when the
    /// pool's last slot was freed by a connection that failed to open). No connection is opened for it, so a database
    /// deleted or replaced meanwhile is never created again or read with the old <c>-wal</c> file. Then
    /// closes the checkpointer's own connection, so that no file stays open while the pool has none open.
    /// </summary>
    public void LastClosing(PhysicalConnection? last, bool drained)
    {
        // A connection closed unreset (without pooling, say) may hold a renter's transaction, and its locks, which an
        // opening under the lock may be waiting for.
        last?.TryRollback();
        lock (_lock)
        {
            // On the checkpointer's connection if it is open: its cache is private, and SQLite refuses a checkpoint on a
            // connection of a shared cache while another connection of that cache has a transaction open.
            if (drained && _options.CheckpointOnClose && _options.MaintainsWal && (_connection ?? last) is { } on)
            {
                try
                {
                    // The pool's busy timeout would let the TRUNCATE wait for readers (holding writers back) that
                    // long; the connection closes next, so nothing is restored. Without pooling every Close drains the
                    // pool: there it is tried once, as each Close would stall, and every writer of the file with it.
                    var wait = _options.Pooling ? ConnectionBusyTimeout : 0;
                    raw.sqlite3_busy_timeout(on.Handle, wait);
                    CopyBack(on.Handle, PoolDrained, wait);
                    var result = CheckpointExtensions.RunWaiting(on.Handle, CheckpointMode.Truncate, wait, CancellationToken.None);
                    Record(CheckpointMode.Truncate, result, PoolDrained);
                    LastError = null; // a background checkpoint too
                }
                catch (Exception exception)
                {
                    LastError = exception; // closing goes on: the next open recovers the WAL as usual
                    _telemetry.CheckpointFailed(exception);
                }
            }

            Close(CloseReason.PoolEmpty);
        }
    }

    /// <summary>Closes the checkpointer's connection, releasing the files; it reopens when next needed.</summary>
    /// <param name="reason">Why, for the log.</param>
    public void Close(CloseReason reason)
    {
        lock (_lock)
        {
            if (_connection is { } connection)
            {
                _connection = null;
                connection.Dispose();
                _telemetry.Closed(connection.Id, reason);
            }
        }
    }

    public void Dispose()
    {
        _timer?.Dispose();
        StopOpening();
        lock (_lock)
        {
            _disposed = true;
            Close(CloseReason.Disposed);
        }
    }

    private WalStatus Status(CancellationToken cancellationToken)
    {
        var status = CheckpointExtensions.ReadStatus(Connection(cancellationToken).Handle);
        Volatile.Write(ref _walFile, _walFile! with { JournalMode = status.JournalMode });
        return status;
    }

    /// <summary>Closes the checkpointer's connection when the pool has none open, then leaves the lock the caller took.</summary>
    private void Leave()
    {
        try
        {
            CloseUnlessPoolInUse();
        }
        finally
        {
            _lock.Exit();
        }
    }

    /// <summary>Closes the checkpointer's connection when the pool has none open. Call under the lock.</summary>
    private void CloseUnlessPoolInUse()
    {
        if (!_pool.HasOpenConnections())
        {
            Close(CloseReason.PoolEmpty);
        }
    }

    /// <summary>The checkpoint connection's busy timeout in milliseconds: Busy Timeout, at most <see cref="StepTimeout"/>.</summary>
    private int ConnectionBusyTimeout => (int)Math.Min(_options.BusyTimeout.TotalMilliseconds, StepTimeout.TotalMilliseconds);

    /// <exception cref="ObjectDisposedException">The data source was disposed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while it opened.</exception>
    /// <exception cref="InvalidOperationException">
    /// Clear or Dispose stopped its opening (see <see cref="StopOpening"/>); or the file the pool's connections (or this
    /// one) have is no longer at the path, or the path leads to another file than theirs.
    /// </exception>
    /// <exception cref="ConnectionsBusyException">Whether the file moved could not be told (see <see cref="ThrowIfFileMoved"/>).</exception>
    private PhysicalConnection Connection(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, typeof(SaverDataSource));
        if (_connection is not null)
        {
            if (_options.DatabaseFile is not null)
            {
                if (ESqlite3.FileMoved(_connection.Handle) == true)
                {
                    throw FileMovedError(); // opened before the move, with the pool's connections: as if it opened after
                }

                ThrowIfOnAnotherFile(_connection); // the pool opened one since the path led elsewhere
            }

            return _connection;
        }

        ThrowIfFileMoved(cancellationToken);

        var opening = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Volatile.Write(ref _opening, opening);
        PhysicalConnection connection;
        try
        {
            connection = _factory.OpenForCheckpoints(opening.Token);
        }
        catch (OperationCanceledException) when (opening.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw StoppedOpening(); // by StopOpening: not the caller's token, nor one of the initializer's own
        }
        finally
        {
            Volatile.Write(ref _opening, null);
            opening.Dispose();
        }

        try
        {
            ThrowIfOnAnotherFile(connection);
            raw.sqlite3_busy_timeout(connection.Handle, ConnectionBusyTimeout);
            var walFile = CheckpointExtensions.WalFileOf(connection.Handle);
            var journalMode = CheckpointExtensions.ReadStatus(connection.Handle, walFile).JournalMode;
            Volatile.Write(ref _walFile, new WalFile(walFile.Path, walFile.PageSize, journalMode));
        }
        catch
        {
            connection.Dispose(); // kept only with its -wal file known (see Status)
            throw;
        }

        return _connection = connection;
    }

    /// <summary>
    /// One background step: skipped while the pool has no connection opened since its last Clear (a cleared pool must
    /// not reopen its files, which may have been replaced, even while connections rented before the Clear are out),
    /// after disposal, while backing off, or when another checkpoint here keeps the connection for longer than
    /// <see cref="StepTimeout"/>. It never throws: a timer callback's exception would end the process.
    /// </summary>
    private void Tick()
    {
        // One tick at a time: with a short interval, timer callbacks waiting for the lock would pile up.
        if (Interlocked.Exchange(ref _ticking, 1) == 1)
        {
            return;
        }

        try
        {
            if (_lock.TryEnter(StepTimeout))
            {
                try
                {
                    TickLocked();
                }
                finally
                {
                    _lock.Exit();
                }
            }
        }
        finally
        {
            Volatile.Write(ref _ticking, 0);
        }
    }

    /// <summary>The body of <see cref="Tick"/>, under the lock.</summary>
    private void TickLocked()
    {
        try
        {
            // Checked under the lock that Clear's Close and Dispose take, so neither can slip in between.
            // Only while connections opened since the last Clear are open: the file at the path may be a replacement
            // by now, which a connection opened here would read together with the old -wal file.
            if (_disposed || !_pool.HasCurrentConnections())
            {
                return;
            }

            // The connection is asked for once per tick: each time it checks that the file did not move.
            var handle = Connection().Handle;

            // A -wal file past the limit is truncated at every tick, backing off or not: the bound comes first.
            var overLimit = _options.JournalSizeLimit >= 0 && CheckpointExtensions.WalFileBytes(handle) > _options.JournalSizeLimit;
            if (!overLimit && _ticksToSkip > 0)
            {
                _ticksToSkip--;
                return;
            }

            var result = overLimit ? TruncateOverLimit(handle) : Run(handle, _options.CheckpointMode, Interval);
            BackgroundRuns++;
            LastError = null;
            _busyStreak = result.Busy ? _busyStreak + 1 : 0;
            _ticksToSkip = (1L << Math.Min(_busyStreak, 3)) - 1;
            if (_busyStreak >= 3)
            {
                _telemetry.CheckpointsStayBusy(_busyStreak);
            }

            if (overLimit && CheckpointExtensions.WalFileBytes(handle) is var walBytes && walBytes > _options.JournalSizeLimit)
            {
                _telemetry.WalOverLimit(walBytes, _options.JournalSizeLimit);
            }
        }
        catch (Exception exception)
        {
            LastError = exception;
            _telemetry.CheckpointFailed(exception);
        }
    }

    /// <summary>
    /// A PASSIVE checkpoint on a pool thread, skipped when another checkpoint here is running, when the pool has no
    /// connection opened since its last Clear (see <see cref="Tick"/>), or when disposed. It never throws: a failure
    /// is kept in <see cref="LastError"/> and logged.
    /// </summary>
    private void CatchUp()
    {
        try
        {
            if (!_lock.TryEnter())
            {
                return;
            }

            try
            {
                if (!_disposed && _pool.HasCurrentConnections()) // as for the ticks (see TickLocked)
                {
                    Run(Connection().Handle, CheckpointMode.Passive, CatchUpTrigger);
                    LastError = null;
                }
            }
            catch (Exception exception)
            {
                LastError = exception;
                _telemetry.CheckpointFailed(exception);
            }
            finally
            {
                _lock.Exit();
            }
        }
        finally
        {
            Volatile.Write(ref _catchUpQueued, 0);
        }
    }

    /// <summary>
    /// The TRUNCATE for a <c>-wal</c> file past Journal Size Limit. SQLite's busy handler sleeps 1, 2, 5 ... ms
    /// between tries, and writers in other processes, beginning again within microseconds of each commit, take the
    /// write lock first every time; so this tries again at once, without the busy handler, for up to
    /// <see cref="StepTimeout"/>, with this process's writers held at the write gate meanwhile. Call under the lock.
    /// </summary>
    private CheckpointResult TruncateOverLimit(sqlite3 handle)
    {
        CopyBack(handle, WalOverLimit);
        var entered = _gate?.Enter(StepTimeout, CancellationToken.None) ?? false;
        raw.sqlite3_busy_timeout(handle, 0);
        try
        {
            var started = Stopwatch.GetTimestamp();
            var spinner = default(SpinWait);
            CheckpointResult result;
            while ((result = CheckpointExtensions.Run(handle, CheckpointMode.Truncate)).Busy && Stopwatch.GetElapsedTime(started) < StepTimeout)
            {
                spinner.SpinOnce(sleep1Threshold: -1);
            }

            Record(CheckpointMode.Truncate, result, WalOverLimit);
            return result;
        }
        finally
        {
            raw.sqlite3_busy_timeout(handle, ConnectionBusyTimeout);
            if (entered)
            {
                _gate!.Exit();
            }
        }
    }

    /// <summary>
    /// A PASSIVE checkpoint before a TRUNCATE: SQLite's TRUNCATE takes the write lock before it copies the WAL back, so
    /// writers (of other processes too) would wait for the whole copy and sync; this one copies without the write lock,
    /// leaving the TRUNCATE the frames written since. It waits up to <paramref name="wait"/> milliseconds (a step by
    /// default) for another connection's checkpoint.
    /// </summary>
    private void CopyBack(sqlite3 handle, string trigger, int? wait = null)
        => Record(CheckpointMode.Passive, CheckpointExtensions.RunWaiting(handle, CheckpointMode.Passive, wait ?? ConnectionBusyTimeout, CancellationToken.None), trigger);

    /// <summary>Keeps a checkpoint's result as the last one and reports it to metrics and logs.</summary>
    private void Record(CheckpointMode mode, CheckpointResult result, string trigger)
    {
        _last = new Outcome(result, _time.GetUtcNow());
        _telemetry.Checkpointed(mode, result, trigger);
    }

    /// <summary>Runs a checkpoint on <paramref name="handle"/>, the checkpointer's own connection, and records what ran it. Call under the lock.</summary>
    private CheckpointResult Run(sqlite3 handle, CheckpointMode mode, string trigger)
    {
        var result = CheckpointExtensions.Run(handle, mode);
        Record(mode, result, trigger);
        return result;
    }

    private sealed record Outcome(CheckpointResult Result, DateTimeOffset Time);

    /// <summary>The connection's <c>-wal</c> file, and the page size and journal mode it last found.</summary>
    private sealed record WalFile(string? Path, long PageSize, string JournalMode)
    {
        /// <summary>The status from the file's size alone.</summary>
        public WalStatus Status() => CheckpointExtensions.StatusOfSize(JournalMode, Path, PageSize);
    }
}
