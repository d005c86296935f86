using Shouldly;
using SqliteSaver.Data.Threading;

namespace SqliteSaver.Data.Tests.Threading;

/// <summary>
/// A waiter that gives up (timed out, cancelled) leaves the queue even when its thread is interrupted
/// (<see cref="Thread.Interrupt"/>) while it waits for the owner's lock to leave: no grant (a pooled connection, the
/// write gate) goes to a caller that has gone, and the caller does not wait on.
/// </summary>
public class WaitQueueTests
{
    [Test]
    public void A_sync_waiter_whose_thread_is_interrupted_as_it_leaves_on_timeout_is_taken_out_of_the_queue()
    {
        var (ownerLock, queue, waiter) = OneSyncWaiter();

        Exception? caught = null;
        bool? granted = null;
        var thread = new Thread(() =>
        {
            try
            {
                granted = queue.Wait(waiter, TimeSpan.FromMilliseconds(50), CancellationToken.None, out _);
            }
            catch (ThreadInterruptedException exception)
            {
                caught = exception;
            }
        });

        ownerLock.Enter(); // the waiter, timed out, must take the owner's lock to leave the queue
        try
        {
            thread.Start();
            Wait.Until(() => LockWaiters(ownerLock) > 0); // it times out and blocks on the lock
            thread.Interrupt();
        }
        finally
        {
            ownerLock.Exit();
        }

        thread.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        caught.ShouldNotBeNull(); // the caller left the wait with the interruption
        granted.ShouldBeNull();
        lock (ownerLock)
        {
            queue.Count.ShouldBe(0, "the caller that left is still queued");
            queue.TryGrant(42).ShouldBeFalse("a grant (a pooled connection, the write gate) went to a caller that left, and is lost");
        }
    }

    [Test]
    public void A_cancelled_sync_waiter_whose_thread_is_interrupted_as_it_leaves_does_not_go_on_waiting()
    {
        var (ownerLock, queue, waiter) = OneSyncWaiter();

        using var cancellation = new CancellationTokenSource();
        Exception? caught = null;
        var thread = new Thread(() =>
        {
            try
            {
                queue.Wait(waiter, Timeout.InfiniteTimeSpan, cancellation.Token, out _);
            }
            catch (Exception exception)
            {
                caught = exception;
            }
        })
        {
            IsBackground = true, // with the defect it waits for good
        };
        thread.Start();
        Wait.Until(() => thread.ThreadState.HasFlag(ThreadState.WaitSleepJoin));

        ownerLock.Enter(); // the cancelled waiter must take the owner's lock to leave the queue
        try
        {
            cancellation.Cancel();
            Wait.Until(() => LockWaiters(ownerLock) > 0); // it blocks on the lock, in the filter of its catch
            thread.Interrupt();
        }
        finally
        {
            ownerLock.Exit();
        }

        // Cancelled, then interrupted: the caller must leave (with either exception), not wait on for a grant.
        thread.Join(TimeSpan.FromSeconds(10)).ShouldBeTrue("the cancelled, interrupted caller still waits for a grant that may never come");
        caught.ShouldNotBeNull();
        lock (ownerLock)
        {
            queue.Count.ShouldBe(0);
        }
    }

    /// <summary>
    /// A sync waiter cancelled just as it is granted (the grant comes while it waits for the owner's lock to leave the
    /// queue) returns what it was granted instead of throwing: the grant (a pooled connection, the write gate) is out of
    /// the queue and would otherwise be lost.
    /// </summary>
    [Test]
    public void A_cancelled_sync_waiter_granted_before_it_could_leave_takes_the_grant()
    {
        var (caught, granted, value, _) = SyncWaiterGrantedAsItLeaves(interrupted: false);

        caught.ShouldBeNull("the waiter threw the cancellation, and the grant it was handed is lost");
        granted.ShouldBe(true);
        value.ShouldBe(42);
    }

    /// <summary>
    /// A sync waiter that times out, and is granted and interrupted while it waits for the owner's lock to leave the
    /// queue, returns what it was granted (the grant would otherwise be lost) and keeps the interruption for the
    /// thread's next wait.
    /// </summary>
    [Test]
    public void A_timed_out_sync_waiter_granted_and_interrupted_before_it_could_leave_takes_the_grant_and_keeps_the_interruption()
    {
        var (ownerLock, queue, waiter) = OneSyncWaiter();

        Exception? caught = null;
        bool? granted = null;
        bool? interruptionKept = null;
        var value = 0;
        var thread = new Thread(() =>
        {
            try
            {
                granted = queue.Wait(waiter, TimeSpan.FromMilliseconds(50), CancellationToken.None, out value);
            }
            catch (Exception exception)
            {
                caught = exception;
                return;
            }

            interruptionKept = InterruptionKept();
        })
        {
            IsBackground = true,
        };

        ownerLock.Enter(); // the waiter, timed out, must take the owner's lock to leave the queue
        try
        {
            thread.Start();
            Wait.Until(() => LockWaiters(ownerLock) > 0); // it times out and blocks on the lock
            queue.TryGrant(42).ShouldBeTrue(); // granted before it could leave
            thread.Interrupt();
        }
        finally
        {
            ownerLock.Exit();
        }

        thread.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        caught.ShouldBeNull("the waiter threw, and the grant it was handed is lost");
        granted.ShouldBe(true, "the waiter reported a timeout, and the grant it was handed is lost");
        value.ShouldBe(42);
        interruptionKept.ShouldBe(true, "the interruption that came while the waiter took the lock was swallowed");
    }

    /// <summary>
    /// A sync waiter whose thread is interrupted as it waits, and is granted while it waits for the owner's lock to
    /// leave the queue, returns what it was granted (the grant is out of the queue and would otherwise be lost), and
    /// the interruption is delivered again at the thread's next wait. Before, it was swallowed (a hunt). The thread
    /// interrupts itself before it waits, so that the interruption lands in the wait and nowhere else.
    /// </summary>
    [Test]
    public void An_interrupted_sync_waiter_granted_before_it_could_leave_takes_the_grant_and_keeps_the_interruption()
    {
        var (caught, granted, value, interruptionKept) = SyncWaiterGrantedAsItLeaves(interrupted: true);

        caught.ShouldBeNull("the waiter threw the interruption, and the grant it was handed is lost");
        granted.ShouldBe(true);
        value.ShouldBe(42);
        interruptionKept.ShouldBe(true, "the interruption that ended the wait was swallowed as the waiter took the grant");
    }

    /// <summary>
    /// An async waiter that times out, and is granted while it waits for the owner's lock to leave the queue, has what
    /// it was granted: reporting a timeout would lose the grant, which is out of the queue.
    /// </summary>
    [Test]
    public async Task A_timed_out_async_waiter_granted_before_it_could_leave_takes_the_grant()
    {
        var result = await AsyncWaiterGrantedAsItLeaves((queue, waiter) => queue.WaitAsync(waiter, TimeSpan.FromMilliseconds(50), CancellationToken.None));

        result.ShouldBe((true, 42), "the waiter reported a timeout, and the grant it was handed is lost");
    }

    /// <summary>
    /// An async waiter cancelled just as it is granted (the grant comes while it waits for the owner's lock to leave the
    /// queue) has what it was granted instead of throwing the cancellation, which would lose the grant.
    /// </summary>
    [Test]
    public async Task A_cancelled_async_waiter_granted_before_it_could_leave_takes_the_grant()
    {
        using var cancellation = new CancellationTokenSource();
        var result = await AsyncWaiterGrantedAsItLeaves((queue, waiter) =>
        {
            cancellation.CancelAfter(TimeSpan.FromMilliseconds(50)); // on a timer thread, not this one, which holds the lock
            return queue.WaitAsync(waiter, Timeout.InfiniteTimeSpan, cancellation.Token);
        });

        result.ShouldBe((true, 42), "the waiter threw the cancellation, and the grant it was handed is lost");
    }

    /// <summary>
    /// Runs a sync wait of one waiter on a thread of its own while holding the owner's lock, which the waiter must take
    /// to leave the queue once its wait ends: <paramref name="interrupted"/>, by an interruption the thread makes itself
    /// just before it waits (so that it lands in the wait), otherwise by its token, cancelled once it has started. Grants
    /// it 42 once it blocks there. Returns what the wait threw, or returned and gave, and, after an interruption,
    /// whether the thread's next wait was interrupted.
    /// </summary>
    private static (Exception? Caught, bool? Granted, int Value, bool? InterruptionKept) SyncWaiterGrantedAsItLeaves(bool interrupted)
    {
        var (ownerLock, queue, waiter) = OneSyncWaiter();
        using var cancellation = new CancellationTokenSource();
        Exception? caught = null;
        bool? granted = null;
        bool? interruptionKept = null;
        var value = 0;
        var thread = new Thread(() =>
        {
            try
            {
                if (interrupted)
                {
                    Thread.CurrentThread.Interrupt(); // thrown by the wait's first block
                }

                granted = queue.Wait(waiter, Timeout.InfiniteTimeSpan, cancellation.Token, out value);
                interruptionKept = interrupted ? InterruptionKept() : null;
            }
            catch (Exception exception)
            {
                caught = exception;
            }
        })
        {
            IsBackground = true,
        };

        ownerLock.Enter(); // the waiter must take the owner's lock to leave the queue
        try
        {
            thread.Start();
            if (!interrupted)
            {
                cancellation.Cancel();
            }

            Wait.Until(() => LockWaiters(ownerLock) > 0); // it blocks on the lock, in the filter of its catch
            queue.TryGrant(42).ShouldBeTrue(); // granted before it could leave
        }
        finally
        {
            ownerLock.Exit();
        }

        thread.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        return (caught, granted, value, interruptionKept);
    }

    /// <summary>
    /// Starts <paramref name="wait"/> for one asynchronous waiter while holding the owner's lock, which the waiter must
    /// take to leave the queue once its wait ends; grants it 42 once it blocks there, and returns the wait's result.
    /// </summary>
    private static async Task<(bool Granted, int Value)> AsyncWaiterGrantedAsItLeaves(
        Func<WaitQueue<int>, WaitQueue<int>.Waiter, ValueTask<(bool Granted, int Value)>> wait)
    {
        var ownerLock = new Lock();
        var queue = new WaitQueue<int>(ownerLock);
        Task<(bool Granted, int Value)> waiting;
        ownerLock.Enter();
        try
        {
            waiting = wait(queue, queue.Enqueue(synchronous: false)).AsTask();
            Wait.Until(() => LockWaiters(ownerLock) > 0); // its wait ends and it blocks on the lock, in the filter of its catch
            queue.TryGrant(42).ShouldBeTrue(); // granted before it could leave
        }
        finally
        {
            ownerLock.Exit();
        }

        return await waiting.WaitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// Failing every waiter (a data source's Dispose) empties the queue: no waiter is counted after (in the data source's
    /// Statistics), and no later grant goes to a failed waiter, which would lose it.
    /// </summary>
    [Test]
    public void Failing_all_waiters_leaves_the_queue_empty()
    {
        var (ownerLock, queue, waiter) = OneSyncWaiter();
        lock (ownerLock)
        {
            queue.FailAll(static () => new ObjectDisposedException("pool"));

            queue.Count.ShouldBe(0);
            queue.TryGrant(42).ShouldBeFalse("a grant went to a waiter already failed, and is lost");
        }

        Should.Throw<ObjectDisposedException>(() => queue.Wait(waiter, TimeSpan.FromSeconds(30), CancellationToken.None, out _));
    }

    /// <summary>
    /// Failing every waiter gives each one an exception of its own, sync and async alike: one instance thrown on several
    /// threads at once would mix their stack traces.
    /// </summary>
    [Test]
    public async Task Failing_all_waiters_gives_each_an_exception_of_its_own()
    {
        var (ownerLock, queue, syncWaiter) = OneSyncWaiter();
        WaitQueue<int>.Waiter asyncWaiter;
        lock (ownerLock)
        {
            asyncWaiter = queue.Enqueue(synchronous: false);
            queue.FailAll(static () => new ObjectDisposedException("pool"));
        }

        var syncFailure = Should.Throw<ObjectDisposedException>(() => queue.Wait(syncWaiter, TimeSpan.FromSeconds(30), CancellationToken.None, out _));
        var asyncFailure = await Should.ThrowAsync<ObjectDisposedException>(
            queue.WaitAsync(asyncWaiter, TimeSpan.FromSeconds(30), CancellationToken.None).AsTask());

        asyncFailure.ShouldNotBeSameAs(syncFailure, "two waiters were failed with one exception instance");
    }

    /// <summary>A queue whose owner's lock is <c>ownerLock</c>, with one synchronous waiter queued.</summary>
    private static (Lock OwnerLock, WaitQueue<int> Queue, WaitQueue<int>.Waiter Waiter) OneSyncWaiter()
    {
        var ownerLock = new Lock();
        var queue = new WaitQueue<int>(ownerLock);
        lock (ownerLock)
        {
            return (ownerLock, queue, queue.Enqueue(synchronous: true));
        }
    }

    /// <summary>
    /// Whether the calling thread has an interruption pending: its next wait (bounded at 10 s) ends at once with
    /// <see cref="ThreadInterruptedException"/>.
    /// </summary>
    internal static bool InterruptionKept()
    {
        using var never = new ManualResetEventSlim();
        try
        {
            _ = never.Wait(TimeSpan.FromSeconds(10));
            return false;
        }
        catch (ThreadInterruptedException)
        {
            return true;
        }
    }

    /// <summary>Threads blocked on <paramref name="ownerLock"/>: <see cref="Lock"/>'s state counts them in steps of 128.</summary>
    internal static uint LockWaiters(Lock ownerLock)
    {
#pragma warning disable CS9216 // read by reflection, never locked as an object
        object boxed = ownerLock;
#pragma warning restore CS9216
        return (uint)typeof(Lock).GetField("_state", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(boxed)! / 128;
    }
}
