using System.Globalization;
using System.Runtime.ExceptionServices;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Interop;
using SqliteSaver.Data.Threading;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// The open physical connections of one data source. Rent takes the most recently returned idle connection, opens
/// a new one while fewer than Max Pool Size are open, or queues the caller first-come-first-served until one is
/// returned or Pool Timeout passes. Return resets the connection and hands it straight to the longest waiter.
/// Rented connections are held here too, so that one whose <see cref="SaverDbConnection"/> was garbage collected
/// unclosed can still be taken back (<see cref="ReclaimLeaked"/>).
/// </summary>
internal sealed class ConnectionPool : IDisposable
{
    private readonly SaverOptions _options;
    private readonly TimeProvider _time;
    private readonly PhysicalConnectionFactory _factory;
    private readonly Telemetry _telemetry;
    private readonly Action<PhysicalConnection?, bool> _onLastClosing;
    private readonly Lock _lock = new();
    private readonly List<PhysicalConnection> _idle = [];
    // Every open physical connection, idle or rented. It is never read: it keeps a rented connection's SQLite handles
    // reachable when its SaverDbConnection leaks, so their finalizers do not close them before ReclaimLeaked runs.
    private readonly HashSet<PhysicalConnection> _all = [];
    private readonly WaitQueue<PhysicalConnection?> _waiters;
    private readonly ITimer? _pruneTimer;
    private int _open; // slots taken: connections open, being opened, or closing (see _closing)
    private int _closing; // taken out of the pool and not yet closed; their slots are freed once they are, so that Max Pool Size holds
    private int _generation;
    private bool _disposed;
    private PhysicalConnection? _memoryAnchor;
    private bool _openedSinceClear;
    private bool _drainPending;
    private int _opening; // physical connections being opened for renters (see OpenInSlot)

    /// <param name="options">The data source's options.</param>
    /// <param name="time">The clock for idle pruning and for the metrics' durations.</param>
    /// <param name="factory">Opens physical connections.</param>
    /// <param name="telemetry">The data source's metrics, logs and counters.</param>
    /// <param name="onLastClosing">
    /// Called with the pool's last open connection just before it is closed, and whether the pool is drained: cleared
    /// or disposed, emptied by idle pruning, or without pooling closed by its last renter, with a connection opened
    /// since the last drain (for Checkpoint On Close). Also called, not drained, when the last one is closed otherwise;
    /// and with <see langword="null"/> when the pool's last slot is freed by a connection that failed to open.
    /// </param>
    public ConnectionPool(SaverOptions options, TimeProvider time, PhysicalConnectionFactory factory, Telemetry telemetry, Action<PhysicalConnection?, bool> onLastClosing)
    {
        _options = options;
        _time = time;
        _factory = factory;
        _telemetry = telemetry;
        _onLastClosing = onLastClosing;
        _waiters = new WaitQueue<PhysicalConnection?>(_lock);
        if (options.Pooling && options.ConnectionIdleLifetime > TimeSpan.Zero)
        {
            var period = TimeSpan.FromTicks(Math.Max(options.ConnectionIdleLifetime.Ticks / 2, TimeSpan.TicksPerSecond));
            _pruneTimer = time.CreateTimer(static state => ((ConnectionPool)state!).PruneIdle(), this, period, period);
        }
    }

    /// <summary>
    /// Physical connections open, being opened or closing (idle and rented alike), idle, the others (rented or
    /// closing: a closing one keeps its files open, and may run the final checkpoint on them), and callers queued for
    /// one, read together under the lock.
    /// </summary>
    public (int Open, int Idle, int InUse, int Waiting) Counts()
    {
        lock (_lock)
        {
            return (_open, _idle.Count, _open - _idle.Count, _waiters.Count);
        }
    }

    /// <summary>Callers holding a connection now: open connections that are neither idle nor closing.</summary>
    public int Renters()
    {
        lock (_lock)
        {
            return _open - _closing - _idle.Count;
        }
    }

    /// <summary>
    /// Whether a connection is open or being opened, other than those the pool is closing, whose last-closing step
    /// (see <see cref="_onLastClosing"/>) has run or will run.
    /// </summary>
    public bool HasOpenConnections()
    {
        lock (_lock)
        {
            return _open > _closing;
        }
    }

    /// <summary>Rents a connection, blocking while the pool is exhausted.</summary>
    /// <exception cref="TimeoutException">No connection came free within Pool Timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    /// <exception cref="ObjectDisposedException">The pool was disposed.</exception>
    public PhysicalConnection Rent(CancellationToken cancellationToken = default)
        => Synchronously.Result(RentCore(async: false, cancellationToken));

    /// <summary>Rents a connection, waiting without blocking a thread while the pool is exhausted.</summary>
    /// <exception cref="TimeoutException">No connection came free within Pool Timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    /// <exception cref="ObjectDisposedException">The pool was disposed.</exception>
    public ValueTask<PhysicalConnection> RentAsync(CancellationToken cancellationToken)
        => RentCore(async: true, cancellationToken);

    /// <summary>
    /// Takes back a rented connection: resets it and hands it to the longest waiter or keeps it idle; closes it
    /// instead when it cannot be reset, belongs to a cleared generation, or pooling is off.
    /// </summary>
    /// <param name="connection">The connection.</param>
    /// <param name="retire">Closes it whatever its state, for one taken back from a connection that leaked.</param>
    public void Return(PhysicalConnection connection, bool retire = false)
    {
        _telemetry.Record(SaverMetrics.UseTime, connection.RentedSince);
        var current = connection.Generation == Volatile.Read(ref _generation);
        string? whyNot = null;
        var reset = !retire && _options.Pooling && current && TryReset(connection, out whyNot);
        bool last, drained;
        CloseReason reason;
        lock (_lock)
        {
            if (reset && !_disposed && connection.Generation == _generation)
            {
                if (_waiters.TryGrant(connection))
                {
                    return; // still rented, now by the waiter
                }

                connection.IdleSince = _time.GetTimestamp();
                _idle.Add(connection);
                return;
            }

            _all.Remove(connection);
            _closing++;
            last = IsLast(out drained);
            _drainPending &= !drained;
            _openedSinceClear &= !drained;
            reason = retire ? CloseReason.Leaked
                : !_options.Pooling ? CloseReason.PoolingOff
                : _disposed ? CloseReason.Disposed
                : current && !reset ? CloseReason.NotReset
                : CloseReason.Cleared;
        }

        CloseTaken([connection], last, drained, reason, whyNot);
    }

    /// <summary>
    /// Whether a connection opened since the last <see cref="Clear"/> is open, idle or rented. Connections rented
    /// before it do not count: the file at the path may be a replacement by now, which a connection opened for them
    /// would read together with the old <c>-wal</c> file they keep open.
    /// </summary>
    public bool HasCurrentConnections()
    {
        lock (_lock)
        {
            return AnyCurrent();
        }
    }

    /// <summary>
    /// Whether connections rented before the last <see cref="Clear"/> are open and none opened since is, or is being
    /// opened (a renter's open would read what the checkpointer's would): a connection opened now would read the file
    /// at the path, a replacement maybe, with the old <c>-wal</c> file they keep open (see
    /// <see cref="HasCurrentConnections"/>). A slot counted for a connection not yet opening (a waiter handed a freed
    /// slot, say) is none of those: the pool may be busy, never cleared.
    /// </summary>
    public bool OnlyClearedConnectionsOpen()
    {
        lock (_lock)
        {
            return Volatile.Read(ref _opening) == 0 && !AnyCurrent() && _all.Any(connection => connection.Generation != _generation);
        }
    }

    /// <summary>
    /// Whether the database file the pool's connections opened since its last Clear have is no longer at the path
    /// (another file was moved over it, or it was deleted), as any of them says (see <see cref="ESqlite3.FileMoved"/>;
    /// one opened after the move has the new file and does not see it); false when none is open; null when one that
    /// cannot answer now (inside SQLite on another thread) may be the one that would say so. Under the lock, so that none of them is closed meanwhile. Not asked of an in-memory database,
    /// nor of a shared cache (false): SQLite would wait there for the cache's mutex, which another connection of it
    /// keeps while it runs (an application function of its, say, which may be renting a connection of this pool).
    /// </summary>
    public bool? FileMoved()
    {
        if (_options.SharedCache || _options.DatabaseFile is null)
        {
            return false;
        }

        lock (_lock)
        {
            var unanswered = false;
            foreach (var connection in _all)
            {
                if (connection.Generation != _generation)
                {
                    continue; // rented before the last Clear: the file at the path may have been replaced since, as the Clear allows
                }

                switch (ESqlite3.FileMoved(connection.Handle))
                {
                    case true:
                        return true;
                    case null:
                        unanswered = true;
                        break;
                }
            }

            return unanswered ? null : false;
        }
    }

    /// <summary>
    /// The database file of a connection opened since the last Clear that is not <paramref name="file"/> (see
    /// <see cref="PhysicalConnection.File"/>), if one is: the path led elsewhere when one of them opened, through a
    /// symbolic link repointed between the two openings, say. Two paths SQLite gave differently are one file when they
    /// lead to one with the links resolved as they are now (a folder renamed and linked back from its old name).
    /// </summary>
    public string? ConnectionOnAnotherFile(string file)
    {
        List<string>? others = null;
        lock (_lock)
        {
            foreach (var connection in _all)
            {
                if (connection.Generation == _generation && connection.File != file && others?.Contains(connection.File) != true)
                {
                    (others ??= []).Add(connection.File);
                }
            }
        }

        if (others is null)
        {
            return null;
        }

        var real = FilePath.Real(file);
        return others.Find(other => FilePath.Real(other) != real);
    }

    /// <summary>Whether a connection opened since the last Clear is open. Call under the lock.</summary>
    private bool AnyCurrent() => _idle.Count > 0 || _all.Any(connection => connection.Generation == _generation);

    /// <summary>
    /// Takes back the connection of a <see cref="SaverDbConnection"/> that was garbage collected while open (called
    /// from its finalizer). On a pool thread, it is closed, rolling back its transaction, its slot freed, and then its
    /// write gate left. It is not reused: its state is unknown, and something may still hold its SQLite connection.
    /// </summary>
    public void ReclaimLeaked(PhysicalConnection connection)
        => ThreadPool.UnsafeQueueUserWorkItem(
            static state =>
            {
                var (pool, leaked) = state;
                try
                {
                    try
                    {
                        pool.Return(leaked, retire: true); // closing rolls back and frees SQLite's write lock ...
                    }
                    finally
                    {
                        leaked.ReleaseGate(); // ... before the next writer in the process is let through
                    }
                }
                catch (Exception)
                {
                    // An exception on a pool thread would end the process; the slot is free and the file closed
                    // unless SQLite itself failed to close it.
                }
                finally
                {
                    pool._telemetry.ConnectionLeaked(leaked.Id);
                }
            },
            (this, connection),
            preferLocal: false);

    /// <summary>
    /// Closes every idle connection now and every rented one when it is returned, so that the database file is
    /// released; the pool stays usable and opens fresh connections on demand.
    /// </summary>
    public void Clear()
    {
        PhysicalConnection[] closing;
        PhysicalConnection? anchor;
        bool last, drained;
        lock (_lock)
        {
            _generation++;
            closing = [.. _idle];
            _idle.Clear();
            _all.ExceptWith(closing);
            _closing += closing.Length;
            anchor = _memoryAnchor;
            _memoryAnchor = null;
            var wanted = _drainPending || _openedSinceClear;
            last = _open == _closing;
            drained = wanted && last;
            _drainPending = wanted && !drained;
            _openedSinceClear = false;
        }

        var reason = _disposed ? CloseReason.Disposed : CloseReason.Cleared;
        CloseTaken(closing, last, drained, reason);
        if (anchor is not null)
        {
            CloseUncounted(anchor, reason);
        }
    }

    /// <summary>Clears the pool for good: waiters fail with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _waiters.FailAll(static () => new ObjectDisposedException(typeof(SaverDataSource).FullName));
        }

        _pruneTimer?.Dispose();

        Clear();
    }

    /// <summary><see cref="PhysicalConnection.TryReset"/>, taking anything it throws for "cannot be reset", so that the slot is never lost.</summary>
    private static bool TryReset(PhysicalConnection connection, out string? whyNot)
    {
        try
        {
            return connection.TryReset(out whyNot);
        }
        catch (Exception exception)
        {
            whyNot = $"resetting it threw {exception.GetType().Name}: {exception.Message}";
            return false;
        }
    }

    private TimeSpan WaitTimeout => _options.PoolTimeout == TimeSpan.Zero ? Timeout.InfiniteTimeSpan : _options.PoolTimeout;

    private PhysicalConnection? TryTake(bool synchronous, out WaitQueue<PhysicalConnection?>.Waiter? waiter)
    {
        waiter = null;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, typeof(SaverDataSource));
            if (_idle.Count > 0)
            {
                var connection = _idle[^1];
                _idle.RemoveAt(_idle.Count - 1);
                return connection;
            }

            if (_open < _options.MaxPoolSize)
            {
                _open++;
                return null;
            }

            waiter = _waiters.Enqueue(synchronous);
            return null;
        }
    }

    /// <summary>
    /// <see cref="Rent"/> and <see cref="RentAsync"/> in one body: with <paramref name="async"/> false every wait
    /// blocks and the returned task is already complete.
    /// </summary>
    private async ValueTask<PhysicalConnection> RentCore(bool async, CancellationToken cancellationToken)
    {
        var started = _telemetry.Start(SaverMetrics.WaitTime);
        var connection = TryTake(synchronous: !async, out var waiter);
        if (connection is null && waiter is not null)
        {
            bool granted;
            if (async)
            {
                (granted, connection) = await _waiters.WaitAsync(waiter, WaitTimeout, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                granted = _waiters.Wait(waiter, WaitTimeout, cancellationToken, out connection);
            }

            if (!granted)
            {
                throw PoolTimeout();
            }
        }

        connection ??= await OpenInSlot(async, cancellationToken).ConfigureAwait(false);
        _telemetry.Record(SaverMetrics.WaitTime, started);
        connection.RentedSince = _telemetry.Start(SaverMetrics.UseTime);
        return connection;
    }

    /// <summary>Opens a physical connection in a slot already counted; gives the slot back if opening fails.</summary>
    private async ValueTask<PhysicalConnection> OpenInSlot(bool async, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _opening);
        try
        {
            while (true)
            {
                var generation = await EnsureMemoryAnchor(async, cancellationToken).ConfigureAwait(false);
                var connection = async
                    ? await _factory.OpenAsync(generation, cancellationToken).ConfigureAwait(false)
                    : _factory.Open(generation);
                lock (_lock)
                {
                    // An in-memory database lives while a connection to it is open: a Clear that closed the anchor
                    // while this one opened may have left it a new, empty database that nothing else keeps.
                    if (!_options.IsMemory || !_options.Pooling || _disposed || _memoryAnchor?.Generation == generation)
                    {
                        // Opened across a Clear: it is closed on return, and the pending final checkpoint waits for it.
                        _openedSinceClear |= connection.Generation == _generation;
                        _drainPending |= connection.Generation != _generation;
                        _all.Add(connection);
                        return connection;
                    }
                }

                CloseUncounted(connection, CloseReason.Cleared); // open it again, in the generation of the anchor now
            }
        }
        catch
        {
            bool last, drained;
            lock (_lock)
            {
                ReleaseSlot();
                last = IsLast(out drained); // a drain stays pending: the checkpointer may have no connection to run it on
            }

            if (last)
            {
                _onLastClosing(null, drained);
            }

            throw;
        }
        finally
        {
            Interlocked.Decrement(ref _opening);
        }
    }

    /// <summary>
    /// An in-memory database lives only while a connection to it is open: the pool keeps one of its own open
    /// (outside Max Pool Size) until it is cleared, so the database outlives idle pruning and pool exhaustion.
    /// Returns the generation to open a connection in: the anchor's, so that a connection never opens a database
    /// (named by its generation) that nothing keeps alive.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the anchor opened.</exception>
    private async ValueTask<int> EnsureMemoryAnchor(bool async, CancellationToken cancellationToken)
    {
        while (true)
        {
            var generation = Volatile.Read(ref _generation);
            if (!_options.IsMemory || !_options.Pooling)
            {
                return generation;
            }

            if (Volatile.Read(ref _memoryAnchor) is { } existing)
            {
                return existing.Generation;
            }

            var anchor = async
                ? await _factory.OpenAsync(generation, cancellationToken).ConfigureAwait(false)
                : _factory.Open(generation);
            bool kept, disposed, cleared;
            lock (_lock)
            {
                disposed = _disposed;
                cleared = generation != _generation;
                kept = _memoryAnchor is null && !disposed && !cleared;
                _memoryAnchor = kept ? anchor : _memoryAnchor;
            }

            if (kept)
            {
                return generation;
            }

            // Disposed, another thread anchored first, or a Clear ended its generation: look again.
            CloseUncounted(anchor, disposed ? CloseReason.Disposed : cleared ? CloseReason.Cleared : CloseReason.Redundant);
            if (disposed)
            {
                return generation;
            }
        }
    }

    /// <summary>
    /// After a slot was freed (<see cref="ReleaseSlot"/>) or its connection counted as closing: whether no connection
    /// is left open but those closing, and whether that drains the pool (see <see cref="_onLastClosing"/>). A waiter
    /// may yet open one in the slot, but it may also give up first. Call under the lock.
    /// </summary>
    private bool IsLast(out bool drained)
    {
        var last = _open == _closing;
        drained = last && (_drainPending || (!_options.Pooling && _openedSinceClear));
        return last;
    }

    /// <summary>A slot freed: the longest waiter may open a connection in it, else the count drops. Call under the lock.</summary>
    private void ReleaseSlot()
    {
        if (_disposed || !_waiters.TryGrant(null))
        {
            _open--;
        }
    }

    private PoolTimeoutException PoolTimeout()
    {
        var inUse = Counts().InUse;
        _telemetry.PoolTimedOut(_options.PoolTimeout.TotalSeconds, inUse, _options.MaxPoolSize);
        return new PoolTimeoutException(string.Create(
            CultureInfo.InvariantCulture,
            $"No pooled connection to '{_options.DataSource}' came free within Pool Timeout={_options.PoolTimeout.TotalSeconds} s: {inUse} of Max Pool Size={_options.MaxPoolSize} connections are in use. Close or dispose connections when done, or raise Max Pool Size or Pool Timeout in the connection string."));
    }

    private void PruneIdle()
    {
        var expired = new List<PhysicalConnection>();
        bool last, drained;
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            while (_idle.Count > 0
                && _open - _closing > _options.MinPoolSize
                && _time.GetElapsedTime(_idle[0].IdleSince, now) >= _options.ConnectionIdleLifetime)
            {
                expired.Add(_idle[0]);
                _all.Remove(_idle[0]);
                _idle.RemoveAt(0);
                _closing++;
            }

            last = expired.Count > 0 && _open == _closing;
            drained = last && (_openedSinceClear || _drainPending);
            _drainPending &= !drained;
            _openedSinceClear &= !drained;
        }

        try
        {
            CloseTaken(expired, last, drained, CloseReason.Idle);
        }
        catch (Exception)
        {
            // An exception on the timer's thread would end the process; the slots are free and the files closed
            // unless SQLite itself failed to close them.
        }
    }

    /// <summary>
    /// Closes connections taken out of the pool and counted in <see cref="_closing"/>, freeing each one's slot once it
    /// is closed; when <paramref name="last"/>, the final one is the pool's last connection, and
    /// <see cref="_onLastClosing"/> sees it first (the others are closed by then). One that fails to close does not
    /// stop the others; the first failure is thrown at the end. <paramref name="whyNot"/> says, for the log, why a
    /// connection closed for <see cref="CloseReason.NotReset"/> could not be reset.
    /// </summary>
    private void CloseTaken(IReadOnlyList<PhysicalConnection> closing, bool last, bool drained, CloseReason reason, string? whyNot = null)
    {
        ExceptionDispatchInfo? failure = null;
        for (var i = 0; i < closing.Count; i++)
        {
            var final = last && i == closing.Count - 1;
            try
            {
                try
                {
                    if (final)
                    {
                        _onLastClosing(closing[i], drained);
                    }
                }
                finally
                {
                    closing[i].Dispose(); // its slot is freed next, so it must not stay open
                }

                _telemetry.Closed(closing[i].Id, reason, whyNot);
            }
            catch (Exception exception)
            {
                failure ??= ExceptionDispatchInfo.Capture(exception);
            }
            finally
            {
                FreeClosedSlot(lastSeen: final);
            }
        }

        failure?.Throw();
    }

    /// <summary>Closes, and logs why, a connection whose slot is not freed by it: a memory anchor (none), or one an open discards to open again in its slot.</summary>
    private void CloseUncounted(PhysicalConnection connection, CloseReason reason)
    {
        connection.Dispose();
        _telemetry.Closed(connection.Id, reason);
    }

    /// <summary>
    /// A connection counted in <see cref="_closing"/> is closed: its slot goes to the longest waiter, or the count
    /// drops. When that leaves the pool with none open and its closer did not see it coming (another connection,
    /// open when this one was taken out, closed first), <see cref="_onLastClosing"/> is told now, with no connection.
    /// </summary>
    private void FreeClosedSlot(bool lastSeen)
    {
        bool last, drained = false;
        lock (_lock)
        {
            _closing--;
            ReleaseSlot();
            last = !lastSeen && _open == 0 && IsLast(out drained); // a drain stays pending, as when an open fails
        }

        if (last)
        {
            _onLastClosing(null, drained);
        }
    }
}
