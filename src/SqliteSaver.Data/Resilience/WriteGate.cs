using SqliteSaver.Data.Threading;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// The in-process queue in front of SQLite's write lock: writers on one database pass it one at a time,
/// first-come-first-served, so threads wait in order instead of fighting through SQLite's busy handler (which
/// sleeps 1, 2, 5, ... 100 ms and lets newcomers win). Readers never pass it. Across processes SQLite's own locks,
/// busy_timeout and the retry policy take over.
/// </summary>
internal sealed class WriteGate
{
    private readonly Lock _lock = new();
    private readonly WaitQueue<bool> _waiters;
    private bool _held;

    public WriteGate()
    {
        _waiters = new WaitQueue<bool>(_lock);
    }

    /// <summary>Writers queued behind the current one.</summary>
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

    /// <summary>Whether a writer is inside.</summary>
    public bool IsHeld
    {
        get
        {
            lock (_lock)
            {
                return _held;
            }
        }
    }

    /// <summary>Enters, blocking while another writer is inside; <see langword="false"/> when <paramref name="timeout"/> passed first.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public bool Enter(TimeSpan timeout, CancellationToken cancellationToken)
        => TryEnterOrQueue(synchronous: true, out var waiter) || _waiters.Wait(waiter!, timeout, cancellationToken, out _);

    /// <summary>Enters, waiting without blocking a thread; <see langword="false"/> when <paramref name="timeout"/> passed first.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public ValueTask<bool> EnterAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (TryEnterOrQueue(synchronous: false, out var waiter))
        {
            return ValueTask.FromResult(true);
        }

        return Queued(waiter!, timeout, cancellationToken);

        async ValueTask<bool> Queued(WaitQueue<bool>.Waiter waiter, TimeSpan timeout, CancellationToken cancellationToken)
            => (await _waiters.WaitAsync(waiter, timeout, cancellationToken).ConfigureAwait(false)).Granted;
    }

    /// <summary>Leaves, handing the gate straight to the longest waiter.</summary>
    public void Exit()
    {
        lock (_lock)
        {
            if (!_waiters.TryGrant(true))
            {
                _held = false;
            }
        }
    }

    private bool TryEnterOrQueue(bool synchronous, out WaitQueue<bool>.Waiter? waiter)
    {
        lock (_lock)
        {
            if (!_held)
            {
                _held = true;
                waiter = null;
                return true;
            }

            waiter = _waiters.Enqueue(synchronous);
            return false;
        }
    }
}
