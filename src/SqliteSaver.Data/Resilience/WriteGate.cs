using System.Diagnostics;
using SqliteSaver.Data.Threading;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// The in-process queue in front of SQLite's write lock: writers on one database pass it one at a time, in order,
/// so threads wait in line instead of fighting through SQLite's busy handler (which sleeps 1, 2, 5, ... 100 ms and
/// lets newcomers win). Readers never pass it. Across processes SQLite's own locks, busy_timeout and the retry
/// policy take over.
/// </summary>
/// <remarks>
/// Waiters are served first-come-first-served, but a writer that arrives while the gate is free may take it ahead of
/// them until the longest waiter has waited <see cref="DefaultStarvationThreshold"/>; from then on the gate is handed
/// straight to the longest waiter. Handing the gate to a sleeping thread on every release leaves it idle until the
/// operating system runs that thread, which with busy cores takes milliseconds (a lock convoy); a writer already
/// running uses it at once. On each release the longest waiter is woken to try again; if a newcomer has taken the
/// gate meanwhile it goes back to the front of the queue, keeping its place and its waiting time; until it has run,
/// no waiter queued after it is handed the gate, and once it has waited the threshold no newcomer takes the gate
/// from it. These are the normal and starvation modes of Go's <c>sync.Mutex</c>, which switches at 1 ms; here a turn
/// is a whole write transaction, so the threshold is longer.
/// </remarks>
internal sealed class WriteGate
{
    /// <summary>How long the longest waiter may be passed by writers that arrive later, by default.</summary>
    public static readonly TimeSpan DefaultStarvationThreshold = TimeSpan.FromMilliseconds(4);

    private readonly Lock _lock = new();
    private readonly WaitQueue<bool> _waiters;
    private readonly TimeSpan _starvationThreshold;
    private bool _held;
    private bool _wokenPending;
    private long _wokenQueuedAt; // when the woken waiter first queued, while _wokenPending

    /// <param name="starvationThreshold">How long the longest waiter may be passed; <see cref="DefaultStarvationThreshold"/> when null.</param>
    public WriteGate(TimeSpan? starvationThreshold = null)
    {
        _waiters = new WaitQueue<bool>(_lock);
        _starvationThreshold = starvationThreshold ?? DefaultStarvationThreshold;
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
        => Synchronously.Result(EnterCore(timeout, async: false, cancellationToken));

    /// <summary>Enters, waiting without blocking a thread; <see langword="false"/> when <paramref name="timeout"/> passed first.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    public ValueTask<bool> EnterAsync(TimeSpan timeout, CancellationToken cancellationToken)
        => EnterCore(timeout, async: true, cancellationToken);

    /// <summary>
    /// Leaves. The gate goes straight to a waiter that has waited the starvation threshold, unless a waiter woken
    /// before it, and so queued before it, has not tried yet; otherwise it is freed and the longest waiter woken to try
    /// again (unless one woken before has not tried yet).
    /// </summary>
    public void Exit()
    {
        // Taken through an interruption, which is delivered again afterwards: a gate not freed would stop every writer.
        var interrupted = Uninterruptible.Enter(_lock);
        try
        {
            if (_waiters.Head is { } head && Starving(head.QueuedAt) && !(_wokenPending && _wokenQueuedAt < head.QueuedAt))
            {
                _waiters.TryGrant(true);
                return;
            }

            _held = false;
            WakeLongestWaiter();
        }
        finally
        {
            _lock.Exit();
            if (interrupted)
            {
                Thread.CurrentThread.Interrupt();
            }
        }
    }

    /// <summary>
    /// <see cref="Enter"/> and <see cref="EnterAsync"/> in one body: with <paramref name="async"/> false every wait
    /// blocks and the returned task is already complete. A woken waiter that finds the gate taken queues again at the front.
    /// </summary>
    private async ValueTask<bool> EnterCore(TimeSpan timeout, bool async, CancellationToken cancellationToken)
    {
        var queuedAt = 0L;
        while (true)
        {
            WaitQueue<bool>.Waiter waiter;
            var interrupted = Uninterruptible.Enter(_lock);
            try
            {
                var woken = queuedAt != 0;
                _wokenPending &= !woken;
                if (interrupted)
                {
                    // It leaves without trying: a waiter woken to try wakes the next in its place, as Exit would have.
                    if (woken && !_held)
                    {
                        WakeLongestWaiter();
                    }

                    throw new ThreadInterruptedException();
                }

                if (!_held && !(_wokenPending && Starving(_wokenQueuedAt)))
                {
                    // A woken waiter always may: it cleared _wokenPending above. A newcomer may take a free gate even
                    // from a starving waiter in the queue: the waiter is handed the gate when this writer leaves it,
                    // one write later. Not from a starving waiter woken to take it, which is in no queue to be handed
                    // it until it runs.
                    _held = true;
                    return true;
                }

                queuedAt = woken ? queuedAt : Stopwatch.GetTimestamp();
                waiter = _waiters.Enqueue(synchronous: !async, queuedAt, first: woken);
            }
            finally
            {
                _lock.Exit();
            }

            var remaining = Remaining(timeout, queuedAt);
            bool granted, handedOver;
            if (async)
            {
                (granted, handedOver) = await _waiters.WaitAsync(waiter, remaining, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                granted = _waiters.Wait(waiter, remaining, cancellationToken, out handedOver);
            }

            if (!granted)
            {
                return false;
            }

            if (handedOver)
            {
                return true;
            }
        }
    }

    /// <summary>Wakes the longest waiter to try for the free gate, unless one woken before has not tried yet. Call under the lock.</summary>
    private void WakeLongestWaiter()
    {
        if (!_wokenPending && _waiters.Head is { } next && _waiters.TryGrant(false))
        {
            _wokenPending = true;
            _wokenQueuedAt = next.QueuedAt;
        }
    }

    /// <summary>Whether a waiter first queued at <paramref name="queuedAt"/> has waited long enough that newcomers must queue behind it.</summary>
    private bool Starving(long queuedAt) => Stopwatch.GetElapsedTime(queuedAt) >= _starvationThreshold;

    private static TimeSpan Remaining(TimeSpan timeout, long queuedAt)
        => timeout == Timeout.InfiniteTimeSpan
            ? timeout
            : TimeSpan.FromTicks(Math.Max(0, (timeout - Stopwatch.GetElapsedTime(queuedAt)).Ticks));
}
