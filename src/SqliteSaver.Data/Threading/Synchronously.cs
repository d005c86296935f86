using System.Diagnostics;

namespace SqliteSaver.Data.Threading;

/// <summary>
/// Ends work written once for both paths (<c>async ValueTask</c> methods taking <c>bool async</c>): run with
/// <c>async: false</c>, every wait inside blocks, so the task is already complete and its result can be taken. Also
/// starts asynchronous application code that a synchronous call blocks on (see <see cref="WithoutContext"/>).
/// </summary>
internal static class Synchronously
{
    public static T Result<T>(ValueTask<T> work)
    {
        Debug.Assert(work.IsCompleted, "Work run synchronously completes synchronously.");
        return work.GetAwaiter().GetResult();
    }

    public static void Wait(ValueTask work)
    {
        Debug.Assert(work.IsCompleted, "Work run synchronously completes synchronously.");
        work.GetAwaiter().GetResult();
    }

    /// <summary>
    /// Runs code that starts the application's asynchronous code (a connection initializer, a Polly pipeline's
    /// callbacks) for a synchronous call to block on, with no SynchronizationContext and on the default TaskScheduler:
    /// its awaits then continue on the thread pool, not on a single-threaded context (a UI thread's) or scheduler that
    /// the blocked caller holds, which would deadlock. Inside a task on another scheduler it runs on a pool thread.
    /// </summary>
    public static TResult WithoutContext<TState, TResult>(Func<TState, TResult> start, TState state)
    {
        if (TaskScheduler.Current != TaskScheduler.Default)
        {
            return Task.Factory.StartNew(
                () => start(state),
                CancellationToken.None,
                TaskCreationOptions.DenyChildAttach,
                TaskScheduler.Default).GetAwaiter().GetResult();
        }

        var context = SynchronizationContext.Current;
        if (context is null)
        {
            return start(state);
        }

        SynchronizationContext.SetSynchronizationContext(null);
        try
        {
            return start(state);
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(context);
        }
    }
}
