using System.Diagnostics;

namespace SqliteSaver.Data.Threading;

/// <summary>
/// Ends work written once for both paths (<c>async ValueTask</c> methods taking <c>bool async</c>): run with
/// <c>async: false</c>, every wait inside blocks, so the task is already complete and its result can be taken.
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
}
