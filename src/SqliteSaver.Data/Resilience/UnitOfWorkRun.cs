namespace SqliteSaver.Data.Resilience;

/// <summary>
/// What the attempts of one RunInTransaction call share through its retry strategy: whether the next begins a
/// DEFERRED transaction, and whether another may run at all. The library's retry policy never runs one after an
/// attempt that succeeded or that committed something itself, but a strategy of the application's may (a Polly
/// pipeline that handles every exception, or results too): such an attempt is refused here, before its unit of work
/// runs, so that nothing committed is applied twice.
/// </summary>
internal sealed class UnitOfWorkRun(bool deferred)
{
    private string? _ended; // why no attempt may run any more
    private Exception? _endedBy;

    /// <summary>Whether the next attempt begins a DEFERRED transaction.</summary>
    public bool Deferred { get; set; } = deferred;

    /// <summary>Marks the run as over: an attempt succeeded, and what it did stands.</summary>
    public void Succeeded() => _ended = "an attempt had succeeded (a strategy that handles results too, say): its commit stands, and";

    /// <summary>
    /// Marks the run as over: an attempt's unit of work committed its transaction itself, or part of it, and then
    /// failed with <paramref name="error"/>.
    /// </summary>
    public void EndedByWork(Exception error)
    {
        _ended = $"an attempt's unit of work committed itself (Commit, or a COMMIT sent as SQL) and then failed ({error.Message}):";
        _endedBy = error;
    }

    /// <summary>Refuses an attempt after the run is over (see <see cref="UnitOfWorkRun"/>).</summary>
    /// <exception cref="InvalidOperationException">The run is over.</exception>
    public void ThrowIfEnded()
    {
        if (_ended is not null)
        {
            throw new InvalidOperationException(
                $"RunInTransaction's retry strategy asked for another attempt at the unit of work after {_ended} it is not run again, since what it committed would be applied twice. A strategy for RunInTransaction should handle only transient errors (SaverRetryStrategy.IsTransient) and no results; the library decides what is safe to run again.",
                _endedBy);
        }
    }
}
