namespace SqliteSaver.Data.Threading;

/// <summary>
/// Taking a lock that code needs to leave shared state consistent (a queue it is leaving, a gate it is freeing) even
/// when <see cref="Thread.Interrupt"/> lands while it waits for the lock: a <see cref="ThreadInterruptedException"/>
/// thrown there would leave a caller that has gone in a queue, or a gate held by no one.
/// </summary>
internal static class Uninterruptible
{
    /// <summary>
    /// Enters <paramref name="lockToEnter"/>, waiting on through interruptions. Returns whether one came: the caller
    /// throws it, or delivers it again with <see cref="Thread.Interrupt"/>, once its state is consistent.
    /// </summary>
    public static bool Enter(Lock lockToEnter)
    {
        var interrupted = false;
        while (true)
        {
            try
            {
                lockToEnter.Enter();
                return interrupted;
            }
            catch (ThreadInterruptedException)
            {
                interrupted = true;
            }
        }
    }
}
