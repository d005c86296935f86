namespace SqliteSaver.Data.Tests;

/// <summary>Waits for a condition with a generous bound, instead of sleeping and hoping.</summary>
internal static class Wait
{
    public static void Until(Func<bool> condition, int timeoutSeconds = 30)
    {
        if (!SpinWait.SpinUntil(condition, TimeSpan.FromSeconds(timeoutSeconds)))
        {
            throw new TimeoutException($"The condition was not met within {timeoutSeconds} s.");
        }
    }
}
