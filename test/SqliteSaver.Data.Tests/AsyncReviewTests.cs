using System.Collections.Concurrent;
using Shouldly;

namespace SqliteSaver.Data.Tests;

/// <summary>
/// Async review: deadlocks under a single-threaded SynchronizationContext, cancellation at each wait, thread-pool
/// starvation of synchronous calls, and the exceptions they throw.
/// </summary>
public class AsyncReviewTests : DatabaseTest
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A synchronous Open on a UI-style thread (a single-threaded SynchronizationContext) with an async connection
    /// initializer that awaits as UI code does (no ConfigureAwait(false)): Open blocks the context's only thread on
    /// the initializer's task, whose continuation is posted to that thread, so it never completes.
    /// </summary>
    [Test]
    public void A_synchronous_Open_on_a_single_threaded_SynchronizationContext_completes_with_an_async_initializer()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0"))
            .UseConnectionInitializer(async (connection, cancellationToken) =>
            {
                await Task.Yield(); // resumes on the caller's SynchronizationContext, as UI code does
                connection.CreateFunction("answer", () => 42L);
            })
            .Build();

        var answer = OnSingleThreadedContext(() =>
        {
            using var connection = dataSource.OpenConnection();
            return Task.FromResult(ConnectionTests.Scalar(connection, "SELECT answer()"));
        });

        answer.ShouldBe(42L);
    }

    /// <summary>
    /// SaverDataSource.CheckpointAsync, awaited (not blocked on) on a UI-style thread, opens the data source's checkpoint
    /// connection synchronously and blocks the context's only thread on the async connection initializer, which the
    /// README says the checkpoint connection runs too: an awaited async API deadlocks.
    /// </summary>
    [Test]
    public void An_awaited_data_source_CheckpointAsync_on_a_single_threaded_SynchronizationContext_completes_with_an_async_initializer()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0"))
            .UseConnectionInitializer(async (connection, cancellationToken) =>
            {
                await Task.Yield(); // resumes on the caller's SynchronizationContext, as UI code does
                connection.CreateFunction("answer", () => 42L);
            })
            .Build();

        var busy = OnSingleThreadedContext(async () =>
        {
            var result = await dataSource.CheckpointAsync(CheckpointMode.Passive);
            return result.Busy;
        });

        busy.ShouldBeFalse();
    }

    /// <summary>
    /// Runs <paramref name="work"/> on a single-threaded SynchronizationContext and returns its result. If it has not
    /// completed within <see cref="Generous"/>, the work posted to the context (which its blocked thread cannot run) is
    /// run on this thread until the work completes, so that the test ends and cleans up, and the test fails.
    /// </summary>
    private static T OnSingleThreadedContext<T>(Func<Task<T>> work)
    {
        var context = new SingleThreadedContext();
        var result = context.Start(work);
        if (result.Wait(Generous))
        {
            return result.Result;
        }

        context.RunPendingHere(result, Generous);
        Assert.Fail($"Deadlocked: the work on the single-threaded SynchronizationContext did not complete within {Generous.TotalSeconds} s; it completed only once what it had posted to that context was run on another thread.");
        return default!;
    }

    /// <summary>A SynchronizationContext that runs everything posted to it on one thread of its own, as a UI thread does.</summary>
    private sealed class SingleThreadedContext : SynchronizationContext
    {
        private readonly BlockingCollection<(SendOrPostCallback Callback, object? State)> _queue = [];

        public override void Post(SendOrPostCallback d, object? state) => _queue.Add((d, state));

        public override void Send(SendOrPostCallback d, object? state) => throw new NotSupportedException();

        /// <summary>Runs what was posted and is still queued on the calling thread, until <paramref name="done"/> completes.</summary>
        public void RunPendingHere(Task done, TimeSpan bound)
        {
            var deadline = DateTime.UtcNow + bound;
            while (!done.IsCompleted && DateTime.UtcNow < deadline)
            {
                if (_queue.TryTake(out var item, TimeSpan.FromMilliseconds(100)))
                {
                    item.Callback(item.State);
                }
            }
        }

        public Task<T> Start<T>(Func<Task<T>> work)
        {
            var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                SetSynchronizationContext(this);
                Post(
                    async _ =>
                    {
                        try
                        {
                            result.SetResult(await work());
                        }
                        catch (Exception exception)
                        {
                            result.SetException(exception);
                        }
                        finally
                        {
                            _queue.CompleteAdding();
                        }
                    },
                    null);
                try
                {
                    foreach (var (callback, state) in _queue.GetConsumingEnumerable())
                    {
                        callback(state);
                    }
                }
                catch (InvalidOperationException)
                {
                    // completed while another thread took the last item
                }
            })
            { IsBackground = true }; // a deadlocked one must not keep the test run alive
            thread.Start();
            return result.Task;
        }
    }
}
