using System.Collections.Concurrent;

namespace SqliteSaver.Data.Tests;

/// <summary>A SynchronizationContext that runs everything posted to it on one thread of its own, as a UI thread does.</summary>
internal sealed class SingleThreadedContext : SynchronizationContext
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

    /// <summary>Runs <paramref name="work"/> on a new background thread that serves this context, until the work completes.</summary>
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
