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
}
