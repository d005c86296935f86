using Shouldly;
using SqliteSaver.Data.Threading;

namespace SqliteSaver.Data.Tests.Threading;

public class WaitQueueTests
{
    [Test]
    public void A_sync_waiter_whose_thread_is_interrupted_as_it_leaves_on_timeout_is_taken_out_of_the_queue()
    {
        var ownerLock = new Lock();
        var queue = new WaitQueue<int>(ownerLock);
        WaitQueue<int>.Waiter waiter;
        lock (ownerLock)
        {
            waiter = queue.Enqueue(synchronous: true);
        }

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
            thread.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        }
        finally
        {
            ownerLock.Exit();
        }

        caught.ShouldNotBeNull(); // the caller left the wait with the interruption
        granted.ShouldBeNull();
        lock (ownerLock)
        {
            queue.Count.ShouldBe(0, "the caller that left is still queued");
            queue.TryGrant(42).ShouldBeFalse("a grant (a pooled connection, the write gate) went to a caller that left, and is lost");
        }
    }

    /// <summary>Threads blocked on <paramref name="ownerLock"/>: <see cref="Lock"/>'s state counts them in steps of 128.</summary>
    private static uint LockWaiters(Lock ownerLock)
    {
#pragma warning disable CS9216 // read by reflection, never locked as an object
        object boxed = ownerLock;
#pragma warning restore CS9216
        return (uint)typeof(Lock).GetField("_state", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(boxed)! / 128;
    }
}
