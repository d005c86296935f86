using System.Globalization;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Threading;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// The open physical connections of one data source. Rent takes the most recently returned idle connection, opens
/// a new one while fewer than Max Pool Size are open, or queues the caller first-come-first-served until one is
/// returned or Pool Timeout passes. Return resets the connection and hands it straight to the longest waiter.
/// </summary>
internal sealed class ConnectionPool : IDisposable
{
    private readonly SaverOptions _options;
    private readonly TimeProvider _time;
    private readonly SaverRetryStrategy _strategy;
    private readonly Action<PhysicalConnection> _onDrained;
    private readonly Lock _lock = new();
    private readonly List<PhysicalConnection> _idle = [];
    private readonly WaitQueue<PhysicalConnection?> _waiters;
    private readonly ITimer? _pruneTimer;
    private int _open;
    private int _generation;
    private bool _disposed;
    private PhysicalConnection? _memoryAnchor;
    private bool _openedSinceClear;
    private bool _drainPending;

    /// <param name="options">The data source's options.</param>
    /// <param name="time">The clock for idle pruning.</param>
    /// <param name="strategy">Retries applying PRAGMAs to a new connection.</param>
    /// <param name="onDrained">
    /// Called with a cleared pool's last open connection just before it is closed (for Checkpoint On Close).
    /// </param>
    public ConnectionPool(SaverOptions options, TimeProvider time, SaverRetryStrategy strategy, Action<PhysicalConnection> onDrained)
    {
        _options = options;
        _time = time;
        _strategy = strategy;
        _onDrained = onDrained;
        _waiters = new WaitQueue<PhysicalConnection?>(_lock);
        if (options.Pooling && options.ConnectionIdleLifetime > TimeSpan.Zero)
        {
            var period = TimeSpan.FromTicks(Math.Max(options.ConnectionIdleLifetime.Ticks / 2, TimeSpan.TicksPerSecond));
            _pruneTimer = time.CreateTimer(static state => ((ConnectionPool)state!).PruneIdle(), this, period, period);
        }
    }

    /// <summary>Physical connections open or being opened, idle and rented alike.</summary>
    public int OpenCount
    {
        get
        {
            lock (_lock)
            {
                return _open;
            }
        }
    }

    /// <summary>Physical connections open and not rented.</summary>
    public int IdleCount
    {
        get
        {
            lock (_lock)
            {
                return _idle.Count;
            }
        }
    }

    /// <summary>Callers queued for a connection.</summary>
    public int WaitingCount
    {
        get
        {
            lock (_lock)
            {
                return _waiters.Count;
            }
        }
    }

    /// <summary>Rents a connection, blocking while the pool is exhausted.</summary>
    /// <exception cref="TimeoutException">No connection came free within Pool Timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    /// <exception cref="ObjectDisposedException">The pool was disposed.</exception>
    public PhysicalConnection Rent(CancellationToken cancellationToken = default)
    {
        var idle = TryTake(synchronous: true, out var waiter);
        if (idle is not null)
        {
            return idle;
        }

        if (waiter is null)
        {
            return OpenInSlot();
        }

        if (!_waiters.Wait(waiter, WaitTimeout, cancellationToken, out var granted))
        {
            throw PoolTimeout();
        }

        return granted ?? OpenInSlot();
    }

    /// <summary>Rents a connection, waiting without blocking a thread while the pool is exhausted.</summary>
    /// <exception cref="TimeoutException">No connection came free within Pool Timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    /// <exception cref="ObjectDisposedException">The pool was disposed.</exception>
    public async ValueTask<PhysicalConnection> RentAsync(CancellationToken cancellationToken)
    {
        var idle = TryTake(synchronous: false, out var waiter);
        if (idle is not null)
        {
            return idle;
        }

        if (waiter is null)
        {
            return OpenInSlot();
        }

        var (ok, granted) = await _waiters.WaitAsync(waiter, WaitTimeout, cancellationToken).ConfigureAwait(false);
        if (!ok)
        {
            throw PoolTimeout();
        }

        return granted ?? OpenInSlot();
    }

    /// <summary>
    /// Takes back a rented connection: resets it and hands it to the longest waiter or keeps it idle; closes it
    /// instead when it cannot be reset, belongs to a cleared generation, or pooling is off.
    /// </summary>
    public void Return(PhysicalConnection connection)
    {
        var keep = _options.Pooling && connection.Generation == Volatile.Read(ref _generation) && connection.TryReset();
        bool drained;
        lock (_lock)
        {
            if (keep && !_disposed && connection.Generation == _generation)
            {
                if (!_waiters.TryGrant(connection))
                {
                    connection.IdleSince = _time.GetTimestamp();
                    _idle.Add(connection);
                }

                return;
            }

            ReleaseSlot();
            drained = _drainPending && _open == 0;
            _drainPending &= !drained;
        }

        if (drained)
        {
            _onDrained(connection);
        }

        connection.Dispose();
    }

    /// <summary>
    /// Closes every idle connection now and every rented one when it is returned, so that the database file is
    /// released; the pool stays usable and opens fresh connections on demand.
    /// </summary>
    public void Clear()
    {
        PhysicalConnection[] closing;
        PhysicalConnection? anchor;
        bool drained;
        lock (_lock)
        {
            _generation++;
            closing = [.. _idle];
            _idle.Clear();
            _open -= closing.Length;
            anchor = _memoryAnchor;
            _memoryAnchor = null;
            var wanted = _drainPending || _openedSinceClear;
            drained = wanted && _open == 0;
            _drainPending = wanted && !drained;
            _openedSinceClear = false;
        }

        for (var i = 0; i < closing.Length; i++)
        {
            if (drained && i == closing.Length - 1)
            {
                _onDrained(closing[i]); // the others are closed already, so it is the last connection
            }

            closing[i].Dispose();
        }

        anchor?.Dispose();
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
            _waiters.FailAll(static () => new ObjectDisposedException(nameof(SaverDataSource)));
        }

        _pruneTimer?.Dispose();

        Clear();
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

    /// <summary>Opens a physical connection in a slot already counted; gives the slot back if opening fails.</summary>
    private PhysicalConnection OpenInSlot()
    {
        try
        {
            EnsureMemoryAnchor();
            var connection = PhysicalConnection.Open(_options, _strategy, Volatile.Read(ref _generation));
            lock (_lock)
            {
                // Opened across a Clear: it is closed on return, and the pending final checkpoint waits for it.
                _openedSinceClear |= connection.Generation == _generation;
                _drainPending |= connection.Generation != _generation;
            }

            return connection;
        }
        catch
        {
            lock (_lock)
            {
                ReleaseSlot();
            }

            throw;
        }
    }

    /// <summary>
    /// An in-memory database lives only while a connection to it is open: the pool keeps one of its own open
    /// (outside Max Pool Size) until it is cleared, so the database outlives idle pruning and pool exhaustion.
    /// </summary>
    private void EnsureMemoryAnchor()
    {
        if (!_options.IsMemory || !_options.Pooling || Volatile.Read(ref _memoryAnchor) is not null)
        {
            return;
        }

        var anchor = PhysicalConnection.Open(_options, _strategy, Volatile.Read(ref _generation));
        lock (_lock)
        {
            if (_memoryAnchor is null && !_disposed)
            {
                _memoryAnchor = anchor;
                return;
            }
        }

        anchor.Dispose();
    }

    /// <summary>A slot freed: the longest waiter may open a connection in it, else the count drops. Call under the lock.</summary>
    private void ReleaseSlot()
    {
        if (_disposed || !_waiters.TryGrant(null))
        {
            _open--;
        }
    }

    private TimeoutException PoolTimeout()
    {
        int inUse;
        lock (_lock)
        {
            inUse = _open - _idle.Count;
        }

        return new TimeoutException(string.Create(
            CultureInfo.InvariantCulture,
            $"No pooled connection to '{_options.DataSource}' came free within Pool Timeout={_options.PoolTimeout.TotalSeconds} s: {inUse} of Max Pool Size={_options.MaxPoolSize} connections are in use. Close or dispose connections when done, or raise Max Pool Size or Pool Timeout in the connection string."));
    }

    private void PruneIdle()
    {
        var expired = new List<PhysicalConnection>();
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            while (_idle.Count > 0
                && _open > _options.MinPoolSize
                && _time.GetElapsedTime(_idle[0].IdleSince, now) >= _options.ConnectionIdleLifetime)
            {
                expired.Add(_idle[0]);
                _idle.RemoveAt(0);
                _open--;
            }
        }

        foreach (var connection in expired)
        {
            connection.Dispose();
        }
    }
}
