using Shouldly;
using SqliteSaver.Data.Resilience;

namespace SqliteSaver.Data.Tests.Resilience;

public class WriteGateTests
{
    [Test]
    public void Writers_pass_first_come_first_served()
    {
        var gate = new WriteGate();
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
        var order = new System.Collections.Concurrent.ConcurrentQueue<int>();
        var writers = new List<Thread>();
        for (var i = 0; i < 6; i++)
        {
            var id = i;
            var writer = new Thread(() =>
            {
                gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
                order.Enqueue(id);
                gate.Exit();
            });
            writer.Start();
            writers.Add(writer);
            Wait.Until(() => gate.WaitingCount == id + 1);
        }

        gate.Exit();
        writers.ForEach(w => w.Join());

        order.ShouldBe([0, 1, 2, 3, 4, 5]);
        gate.IsHeld.ShouldBeFalse();
    }

    [Test]
    public async Task Sync_and_async_writers_share_one_queue_and_a_timeout_leaves_it()
    {
        var gate = new WriteGate();
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();

        gate.Enter(TimeSpan.FromMilliseconds(50), CancellationToken.None).ShouldBeFalse();
        (await gate.EnterAsync(TimeSpan.FromMilliseconds(50), CancellationToken.None)).ShouldBeFalse();
        gate.WaitingCount.ShouldBe(0);

        var queued = gate.EnterAsync(Timeout.InfiniteTimeSpan, CancellationToken.None).AsTask();
        queued.IsCompleted.ShouldBeFalse();
        gate.Exit();
        (await queued.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBeTrue();
        gate.IsHeld.ShouldBeTrue();
        gate.Exit();
        gate.IsHeld.ShouldBeFalse();
    }

    [Test]
    public void A_waiter_past_the_starvation_threshold_is_handed_the_gate_and_newcomers_queue_behind_it()
    {
        var gate = new WriteGate(starvationThreshold: TimeSpan.Zero);
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
        var waiter = Task.Factory.StartNew(() => gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None), TaskCreationOptions.LongRunning);
        Wait.Until(() => gate.WaitingCount == 1);

        gate.Exit();

        gate.IsHeld.ShouldBeTrue(); // handed over at once, before the waiter has even run
        gate.Enter(TimeSpan.Zero, CancellationToken.None).ShouldBeFalse();
        waiter.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        waiter.Result.ShouldBeTrue();
        gate.Exit();
        gate.IsHeld.ShouldBeFalse();
    }

    [Test]
    public void Before_the_threshold_a_newcomer_may_pass_a_woken_waiter_which_keeps_its_place_and_is_never_lost()
    {
        var gate = new WriteGate(starvationThreshold: TimeSpan.FromHours(1));
        var barged = 0;
        for (var round = 0; round < 200; round++)
        {
            gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
            var waiter = Task.Factory.StartNew(() => gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None), TaskCreationOptions.LongRunning);
            Wait.Until(() => gate.WaitingCount == 1);

            gate.Exit(); // frees the gate and wakes the waiter to try again
            if (gate.Enter(TimeSpan.Zero, CancellationToken.None))
            {
                barged++;
                waiter.IsCompleted.ShouldBeFalse();
                Wait.Until(() => gate.WaitingCount == 1); // back in the queue, not lost
                gate.Exit();
            }

            waiter.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
            waiter.Result.ShouldBeTrue();
            gate.Exit();
            gate.IsHeld.ShouldBeFalse();
            gate.WaitingCount.ShouldBe(0);
        }

        barged.ShouldBeGreaterThan(0); // the running thread took the free gate at least once ahead of the woken one
    }

    [Test]
    public void A_waiter_passed_by_a_newcomer_keeps_its_waiting_time_and_is_handed_the_gate_when_that_reaches_the_threshold()
    {
        var threshold = TimeSpan.FromMilliseconds(100);
        var gate = new WriteGate(threshold);
        var handedOver = 0;
        for (var round = 1; handedOver < 3; round++) // three times, as the woken waiter may win a free gate too
        {
            round.ShouldBeLessThan(100, "the running thread seldom took the free gate ahead of the woken waiter");
            gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
            var waiter = Task.Factory.StartNew(() => gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None), TaskCreationOptions.LongRunning);
            Wait.Until(() => gate.WaitingCount == 1);
            var waited = System.Diagnostics.Stopwatch.StartNew(); // the waiter has waited at least this long
            Wait.Until(() => waited.Elapsed >= threshold / 2);

            gate.Exit(); // not starving yet: frees the gate and wakes the waiter to try again
            var barged = gate.Enter(TimeSpan.Zero, CancellationToken.None);
            if (barged)
            {
                Wait.Until(() => gate.WaitingCount == 1); // back at the front of the queue
                Wait.Until(() => waited.Elapsed >= threshold); // a wait counted from its return would be half that

                gate.Exit();

                gate.IsHeld.ShouldBeTrue(); // handed over, so this thread cannot take it back
                gate.Enter(TimeSpan.Zero, CancellationToken.None).ShouldBeFalse();
                handedOver++;
            }

            waiter.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
            waiter.Result.ShouldBeTrue();
            gate.Exit();
            gate.IsHeld.ShouldBeFalse();
        }
    }

    /// <summary>
    /// Guards that a woken waiter a newcomer passed goes back to the front of the queue, ahead of a writer queued after
    /// it (writers pass in order; only a newcomer at a free gate may go first): queued again at the back, it would lose
    /// its turn to every writer that queued while it waited.
    /// </summary>
    [Test]
    public async Task A_woken_waiter_passed_by_a_newcomer_goes_back_ahead_of_a_writer_queued_after_it()
    {
        var gate = new WriteGate(starvationThreshold: TimeSpan.FromHours(1));
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
        var writers = QueueTwoWriters(gate);
        await WhileThreadPoolIsHeld(() =>
        {
            gate.Exit(); // frees the gate and wakes the first waiter, which cannot run yet
            gate.Enter(TimeSpan.Zero, CancellationToken.None).ShouldBeTrue(); // a newcomer takes it first
        });
        Wait.Until(() => gate.WaitingCount == 2); // the first waiter has tried, found the gate taken and queued again
        gate.Exit(); // wakes the longest waiter: the first, not the second queued after it

        await EnteredInOrder(gate, writers);
    }

    /// <summary>
    /// Guards the one case where a newcomer may not take a free gate: the longest waiter, woken to try for it, has
    /// waited the starvation threshold before it ran. It is in no queue to be handed the gate, so a newcomer taking
    /// it there would pass a starving waiter, which README promises no newcomer does once it has waited 4 ms.
    /// </summary>
    [Test]
    public async Task A_newcomer_does_not_take_a_free_gate_from_a_woken_waiter_that_has_waited_the_threshold_before_running()
    {
        var threshold = TimeSpan.FromSeconds(1);
        var gate = new WriteGate(threshold);
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
        var waiter = gate.EnterAsync(Timeout.InfiniteTimeSpan, CancellationToken.None).AsTask();
        Wait.Until(() => gate.WaitingCount == 1);
        var waited = System.Diagnostics.Stopwatch.StartNew(); // the waiter has waited at least this long
        var newcomerEntered = true;
        await WhileThreadPoolIsHeld(() =>
        {
            gate.Exit(); // not starving yet: frees the gate and wakes the waiter, which cannot run yet
            gate.IsHeld.ShouldBeFalse("the waiter had not waited the threshold, so it was woken, not handed the gate");
            Wait.Until(() => waited.Elapsed >= threshold);

            newcomerEntered = gate.Enter(TimeSpan.Zero, CancellationToken.None);
        });

        newcomerEntered.ShouldBeFalse();
        (await waiter.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBeTrue();
        gate.IsHeld.ShouldBeTrue();
        gate.Exit();
        gate.IsHeld.ShouldBeFalse();
        gate.WaitingCount.ShouldBe(0);
    }

    /// <summary>
    /// Guards Exit's exception to handing the gate to a starving waiter: a waiter woken before it, and so queued before
    /// it, that has not run yet still goes first.
    /// </summary>
    [Test]
    public async Task A_woken_waiter_that_has_not_run_yet_still_goes_before_a_starving_waiter_queued_after_it()
    {
        var threshold = TimeSpan.FromSeconds(1);
        var gate = new WriteGate(threshold);
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
        var writers = QueueTwoWriters(gate);
        var secondWaited = System.Diagnostics.Stopwatch.StartNew(); // the second has waited at least this long
        await WhileThreadPoolIsHeld(() =>
        {
            gate.Exit(); // frees the gate and wakes the first waiter, which cannot run yet
            gate.Enter(TimeSpan.Zero, CancellationToken.None).ShouldBeTrue(); // a newcomer takes it first
            Wait.Until(() => secondWaited.Elapsed >= threshold);

            gate.Exit(); // the second waiter starves, but the first, woken, queued before it
        });
        await EnteredInOrder(gate, writers);
    }

    /// <summary>
    /// Guards that Exit wakes no waiter while one it woke before has not tried yet: woken at once, the waiter queued
    /// after it could take the free gate first, ahead of its turn.
    /// </summary>
    [Test]
    public async Task A_waiter_is_not_woken_while_one_woken_before_it_has_not_tried_yet()
    {
        var gate = new WriteGate(starvationThreshold: TimeSpan.FromHours(1));
        var gateLock = GateLock(gate);
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
        var writers = QueueTwoWriters(gate);
        gateLock.Enter(); // keeps the woken first waiter from trying until the scene is set
        try
        {
            gate.Exit(); // frees the gate and wakes the first waiter
            gate.Enter(TimeSpan.Zero, CancellationToken.None).ShouldBeTrue(); // a newcomer takes it first
            gate.Exit(); // frees it again: the first waiter, woken, has not tried yet

            gate.WaitingCount.ShouldBe(1, "the second waiter was woken too, while the first had not tried yet");
        }
        finally
        {
            gateLock.Exit();
        }

        await EnteredInOrder(gate, writers);
    }

    /// <summary>
    /// An asynchronous writer's code after EnterAsync runs on a thread of its own, not inside the Exit of the writer
    /// that leaves the gate to it (under the gate's lock, keeping that writer and every other from going on).
    /// </summary>
    [Test]
    public async Task An_async_writer_goes_on_off_the_thread_of_the_writer_leaving_the_gate()
    {
        var gate = new WriteGate();
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
        var enteredOn = gate.EnterAsync(Timeout.InfiniteTimeSpan, CancellationToken.None).AsTask().ContinueWith(
            entered =>
            {
                entered.Result.ShouldBeTrue();
                return Environment.CurrentManagedThreadId;
            },
            TaskContinuationOptions.ExecuteSynchronously);
        Wait.Until(() => gate.WaitingCount == 1);

        var exiting = new Thread(gate.Exit);
        exiting.Start();
        exiting.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();

        (await enteredOn.WaitAsync(TimeSpan.FromSeconds(30))).ShouldNotBe(exiting.ManagedThreadId, "the writer went on inside the Exit that left it the gate");
        gate.IsHeld.ShouldBeTrue();
        gate.Exit();
        gate.IsHeld.ShouldBeFalse();
    }

    [Test]
    public void A_waiter_whose_thread_is_interrupted_leaves_the_queue_and_the_gate_stays_usable()
    {
        var gate = new WriteGate(starvationThreshold: TimeSpan.Zero);
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
        Exception? caught = null;
        var waiter = new Thread(() =>
        {
            try
            {
                gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None);
            }
            catch (ThreadInterruptedException exception)
            {
                caught = exception;
            }
        });
        waiter.Start();
        Wait.Until(() => gate.WaitingCount == 1);

        waiter.Interrupt();
        waiter.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();

        caught.ShouldNotBeNull();
        gate.WaitingCount.ShouldBe(0);
        gate.Exit(); // with nobody left to hand it to, the gate is free
        gate.IsHeld.ShouldBeFalse();
        gate.Enter(TimeSpan.Zero, CancellationToken.None).ShouldBeTrue();
    }

    /// <summary>
    /// A waiter woken by Exit to try for the free gate, whose thread is interrupted while it waits for the gate's lock,
    /// leaves with the interruption and hands its wake-up to the next waiter, which takes the gate: the gate does not
    /// stay free with a waiter that no one wakes.
    /// </summary>
    [Test]
    public void A_woken_waiter_interrupted_while_it_takes_the_gate_lock_does_not_leave_the_gate_waking_nobody()
    {
        var gate = new WriteGate(starvationThreshold: TimeSpan.FromHours(1));
        var gateLock = GateLock(gate);
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
        Exception? caught = null;
        var first = new Thread(() =>
        {
            try
            {
                gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None);
            }
            catch (ThreadInterruptedException exception)
            {
                caught = exception;
            }
        });
        first.Start();
        Wait.Until(() => gate.WaitingCount == 1);
        var second = Task.Factory.StartNew(() => gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None), TaskCreationOptions.LongRunning);
        Wait.Until(() => gate.WaitingCount == 2);

        gateLock.Enter();
        try
        {
            gate.Exit(); // frees the gate and wakes the first waiter, which must take the gate's lock (held here) to try again
            Wait.Until(() => Threading.WaitQueueTests.LockWaiters(gateLock) > 0); // the first waiter blocks on it
            first.Interrupt();
        }
        finally
        {
            gateLock.Exit();
        }

        first.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        caught.ShouldNotBeNull(); // the first waiter left without the gate, with the interruption

        // The wake-up it had goes on to the second waiter, which takes the free gate.
        second.Wait(TimeSpan.FromSeconds(10)).ShouldBeTrue("the second waiter was never woken: the gate still waits for the first, which left");
        second.Result.ShouldBeTrue();
        gate.Exit();
        gate.IsHeld.ShouldBeFalse();
        gate.WaitingCount.ShouldBe(0);
    }

    /// <summary>
    /// Guards that a writer's timeout counts from when it first queued, not from each return to the queue: a woken
    /// writer that finds the gate taken by a newcomer after its time is up gives up (rather than failing on a negative
    /// wait), and one passed again and again does not wait on for as long as newcomers keep passing it.
    /// </summary>
    [Test]
    public void A_writer_passed_by_newcomers_gives_up_once_its_timeout_has_passed_since_it_first_queued()
    {
        var timeout = TimeSpan.FromMilliseconds(500);
        var gate = new WriteGate(starvationThreshold: TimeSpan.FromHours(1));
        var gateLock = GateLock(gate);
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
        bool? entered = null;
        Exception? caught = null;
        var waiter = new Thread(() =>
        {
            try
            {
                entered = gate.Enter(timeout, CancellationToken.None);
            }
            catch (Exception exception)
            {
                caught = exception;
            }
        })
        {
            IsBackground = true, // with the defect it waits on while the test passes it
        };
        waiter.Start();
        Wait.Until(() => gate.WaitingCount == 1);
        var waited = System.Diagnostics.Stopwatch.StartNew(); // the waiter has waited at least this long
        var passes = 0;
        while (waiter.IsAlive)
        {
            waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10), $"the writer still waits {waited.Elapsed.TotalSeconds:0.#} s after it queued with a timeout of {timeout.TotalSeconds} s, passed {passes} times");
            gateLock.Enter();
            try
            {
                if (gate.WaitingCount == 1)
                {
                    gate.Exit(); // frees the gate and wakes the waiter, which must take the gate's lock (held here) to try again
                    Wait.Until(() => Threading.WaitQueueTests.LockWaiters(gateLock) > 0);
                    if (passes == 0)
                    {
                        Wait.Until(() => waited.Elapsed >= timeout); // its time is up before it finds the gate taken
                    }

                    gate.Enter(TimeSpan.Zero, CancellationToken.None).ShouldBeTrue(); // a newcomer takes the free gate first
                    passes++;
                }
            }
            finally
            {
                gateLock.Exit();
            }

            Wait.Until(() => !waiter.IsAlive || gate.WaitingCount == 1); // it has given up, or queued again
        }

        waiter.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        caught.ShouldBeNull();
        entered.ShouldBe(false);
        gate.WaitingCount.ShouldBe(0);
        gate.Exit();
        gate.IsHeld.ShouldBeFalse();
    }

    /// <summary>
    /// A thread interrupted while Exit waits for the gate's lock still frees the gate (a gate left held would stop every
    /// writer), and the interruption is delivered again at its next wait rather than swallowed.
    /// </summary>
    [Test]
    public void Exit_interrupted_while_it_takes_the_gate_lock_frees_the_gate_and_keeps_the_interruption()
    {
        var gate = new WriteGate();
        var gateLock = GateLock(gate);
        gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None).ShouldBeTrue();
        Exception? caught = null;
        bool? interruptionKept = null;
        var exiting = new Thread(() =>
        {
            try
            {
                gate.Exit();
            }
            catch (Exception exception)
            {
                caught = exception;
                return;
            }

            interruptionKept = Threading.WaitQueueTests.InterruptionKept();
        })
        {
            IsBackground = true,
        };

        gateLock.Enter();
        try
        {
            exiting.Start();
            Wait.Until(() => Threading.WaitQueueTests.LockWaiters(gateLock) > 0); // Exit blocks on the gate's lock, held here
            exiting.Interrupt();
        }
        finally
        {
            gateLock.Exit();
        }

        exiting.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        caught.ShouldBeNull();
        gate.IsHeld.ShouldBeFalse();
        interruptionKept.ShouldBe(true, "the interruption that came while Exit took the gate's lock was swallowed");
    }

    [Test]
    public void A_CommandTimeout_past_the_longest_wait_means_no_limit_rather_than_an_error()
    {
        using var folder = new TempFolder();
        using var dataSource = SaverDataSource.Create(folder.ConnectionString());
        using var holder = dataSource.OpenConnection();
        var transaction = holder.BeginTransaction(); // holds the write gate
        using var connection = dataSource.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "CREATE TABLE t (x)";
        command.CommandTimeout = int.MaxValue;
        var write = Task.Factory.StartNew(command.ExecuteNonQuery, TaskCreationOptions.LongRunning);
        Wait.Until(() => dataSource.Executor.Gate!.WaitingCount == 1); // waiting, not failed

        transaction.Commit();

        write.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        ConnectionTests.Scalar(holder, "SELECT count(*) FROM sqlite_master WHERE name = 't'").ShouldBe(1L);
    }

    /// <summary>
    /// Queues two writers at the held <paramref name="gate"/>: first an asynchronous one, whose continuation runs on the
    /// thread pool once it is woken, then a thread. Each notes its name as it enters, then leaves.
    /// </summary>
    private static (Task First, Thread Second, System.Collections.Concurrent.ConcurrentQueue<string> Order) QueueTwoWriters(WriteGate gate)
    {
        var order = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var first = gate.EnterAsync(Timeout.InfiniteTimeSpan, CancellationToken.None).AsTask().ContinueWith(
            entered =>
            {
                order.Enqueue(entered.Result ? "first" : "first timed out");
                gate.Exit();
            },
            TaskContinuationOptions.ExecuteSynchronously);
        var second = new Thread(() =>
        {
            order.Enqueue(gate.Enter(Timeout.InfiniteTimeSpan, CancellationToken.None) ? "second" : "second timed out");
            gate.Exit();
        });
        second.Start();
        Wait.Until(() => gate.WaitingCount == 2);
        return (first, second, order);
    }

    /// <summary>Waits for the writers <see cref="QueueTwoWriters"/> queued: they entered in the order they queued, and the gate is free.</summary>
    private static async Task EnteredInOrder(WriteGate gate, (Task First, Thread Second, System.Collections.Concurrent.ConcurrentQueue<string> Order) writers)
    {
        await writers.First.WaitAsync(TimeSpan.FromSeconds(30));
        writers.Second.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        writers.Order.ShouldBe(["first", "second"]);
        gate.IsHeld.ShouldBeFalse();
    }

    /// <summary>
    /// Runs <paramref name="whileHeld"/> while 256 work items queued before it keep every thread-pool thread waiting,
    /// then lets them go and waits for them. The thread pool runs queued work in order: a woken waiter's continuation,
    /// queued in <paramref name="whileHeld"/>, runs only once these have, after <paramref name="whileHeld"/> returns.
    /// </summary>
    private static async Task WhileThreadPoolIsHeld(Action whileHeld)
    {
        using var release = new ManualResetEventSlim();
        var blockers = Enumerable.Range(0, 256).Select(_ => Task.Run(release.Wait)).ToArray();
        try
        {
            whileHeld();
        }
        finally
        {
            release.Set();
        }

        await Task.WhenAll(blockers).WaitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>The gate's private lock, which a test holds to keep a waiter from trying again until it has set the scene.</summary>
    private static Lock GateLock(WriteGate gate)
        => (Lock)typeof(WriteGate).GetField("_lock", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(gate)!;
}
