namespace SqliteSaver.Data.Threading;

/// <summary>
/// A first-come-first-served queue of callers waiting for a <typeparamref name="T"/> (a pooled connection, a turn
/// at the write gate). The owner guards its own state and this queue with one lock: <see cref="Enqueue"/>,
/// <see cref="TryGrant"/> and <see cref="Count"/> are called under it; the waits take it themselves to leave the
/// queue on timeout or cancellation, so a grant is never lost to a caller that has given up.
/// </summary>
internal sealed class WaitQueue<T>(Lock ownerLock)
{
    private readonly LinkedList<Waiter> _waiters = new();

    /// <summary>Callers queued. Call under the owner's lock.</summary>
    public int Count => _waiters.Count;

    /// <summary>The longest waiter, if any. Call under the owner's lock.</summary>
    public Waiter? Head => _waiters.First?.Value;

    /// <summary>Queues a caller. Call under the owner's lock, then wait outside it.</summary>
    /// <param name="synchronous">
    /// Whether the caller blocks in <see cref="Wait"/>: its grant then wakes it directly from the granting thread.
    /// An asynchronous caller's continuation runs on the thread pool instead, never under the owner's lock.
    /// </param>
    /// <param name="queuedAt">When the caller first queued (<see cref="System.Diagnostics.Stopwatch"/> ticks), kept for the owner.</param>
    /// <param name="first">Queues the caller at the front, for one that was queued already and keeps its place.</param>
    public Waiter Enqueue(bool synchronous, long queuedAt = 0, bool first = false)
    {
        var waiter = new Waiter(synchronous ? TaskCreationOptions.None : TaskCreationOptions.RunContinuationsAsynchronously)
        {
            QueuedAt = queuedAt,
        };
        waiter.Node = first ? _waiters.AddFirst(waiter) : _waiters.AddLast(waiter);
        return waiter;
    }

    /// <summary>Hands <paramref name="value"/> to the longest waiter, if any. Call under the owner's lock.</summary>
    public bool TryGrant(T value)
    {
        var first = _waiters.First;
        if (first is null)
        {
            return false;
        }

        _waiters.RemoveFirst();
        first.Value.TrySetResult(value);
        return true;
    }

    /// <summary>
    /// Fails every waiter with an exception of its own from <paramref name="exception"/> (one instance thrown on several
    /// threads at once would mix their stack traces). Call under the owner's lock.
    /// </summary>
    public void FailAll(Func<Exception> exception)
    {
        foreach (var waiter in _waiters)
        {
            waiter.TrySetException(exception());
        }

        _waiters.Clear();
    }

    /// <summary>Blocks until granted; returns <see langword="false"/> when <paramref name="timeout"/> passed first.</summary>
    /// <param name="waiter">The caller's place in the queue, from <see cref="Enqueue"/>.</param>
    /// <param name="timeout">How long to wait; <see cref="Timeout.InfiniteTimeSpan"/> for no limit.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <param name="value">What was granted.</param>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled first.</exception>
    public bool Wait(Waiter waiter, TimeSpan timeout, CancellationToken cancellationToken, out T value)
    {
        bool granted;
        try
        {
            granted = waiter.Task.Wait(timeout, cancellationToken);
        }
        catch (OperationCanceledException) when (Abandon(waiter))
        {
            throw;
        }
        catch (OperationCanceledException)
        {
            granted = true;
        }
        catch (AggregateException) when (waiter.Task.IsFaulted)
        {
            granted = true; // failed by FailAll: GetResult below rethrows the exception itself
        }
        catch (Exception) when (Abandon(waiter))
        {
            throw; // anything else (an interrupted thread) leaves the queue too, so no grant goes to a caller that left
        }
        catch (Exception exception)
        {
            granted = true; // granted just as the wait ended: the value is ours, or it would be lost
            if (exception is ThreadInterruptedException)
            {
                Thread.CurrentThread.Interrupt(); // delivered again, at the thread's next wait, as Abandon does
            }
        }

        if (!granted && Abandon(waiter, throwInterruption: true))
        {
            value = default!;
            return false;
        }

        value = waiter.Task.GetAwaiter().GetResult();
        return true;
    }

    /// <summary>Waits without blocking a thread; the result's <c>Granted</c> is <see langword="false"/> when <paramref name="timeout"/> passed first.</summary>
    /// <param name="waiter">The caller's place in the queue, from <see cref="Enqueue"/>.</param>
    /// <param name="timeout">How long to wait; <see cref="Timeout.InfiniteTimeSpan"/> for no limit.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled first.</exception>
    public async ValueTask<(bool Granted, T Value)> WaitAsync(Waiter waiter, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await waiter.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException) when (Abandon(waiter))
        {
            return (false, default!);
        }
        catch (OperationCanceledException) when (Abandon(waiter))
        {
            throw;
        }
        catch (Exception) when (waiter.Task.IsCompleted || !Abandon(waiter))
        {
            // Granted, or failed by FailAll (a Dispose), just as the wait ended: the waiter is out of the queue and its
            // task completes, so the await below gives the value, which is ours, or throws the failure. Anything else
            // (not a timeout or a cancellation) has left the queue in the filter, so no grant goes to a caller that left.
        }

        return (true, await waiter.Task.ConfigureAwait(false));
    }

    /// <summary>
    /// Takes a waiter that gave up out of the queue; <see langword="false"/> when it was granted first and must use its
    /// value. An interruption of the thread while it waits for the owner's lock does not keep it from leaving: it is then
    /// thrown with <paramref name="throwInterruption"/> (never in an exception filter, which would swallow it), and
    /// otherwise delivered again, at the thread's next wait.
    /// </summary>
    /// <exception cref="ThreadInterruptedException">The thread was interrupted, and the waiter has left.</exception>
    private bool Abandon(Waiter waiter, bool throwInterruption = false)
    {
        var interrupted = Uninterruptible.Enter(ownerLock);
        bool left;
        try
        {
            left = waiter.Node?.List is not null;
            if (left)
            {
                _waiters.Remove(waiter.Node!);
            }
        }
        finally
        {
            ownerLock.Exit();
        }

        if (interrupted)
        {
            if (left && throwInterruption)
            {
                throw new ThreadInterruptedException();
            }

            Thread.CurrentThread.Interrupt();
        }

        return left;
    }

    /// <summary>One queued caller.</summary>
    internal sealed class Waiter(TaskCreationOptions options) : TaskCompletionSource<T>(options)
    {
        public LinkedListNode<Waiter>? Node { get; set; }

        /// <summary>When the caller first queued, as given to <see cref="Enqueue"/>.</summary>
        public long QueuedAt { get; init; }
    }
}
