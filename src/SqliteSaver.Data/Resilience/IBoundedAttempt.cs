namespace SqliteSaver.Data.Resilience;

/// <summary>
/// An attempt of a command with a CommandTimeout: the built-in <see cref="RetryPolicy"/> waits no longer between
/// attempts than what is left of it, since the next attempt would only find it spent.
/// </summary>
internal interface IBoundedAttempt
{
    /// <summary>When the command's CommandTimeout runs out.</summary>
    CommandDeadline Deadline { get; }
}
