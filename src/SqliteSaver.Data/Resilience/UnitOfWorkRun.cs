namespace SqliteSaver.Data.Resilience;

/// <summary>
/// What the attempts of one RunInTransaction call share through its retry strategy: whether the next begins a
/// DEFERRED transaction, and whether another may run at all. The library's retry policy never runs one after an
/// attempt that committed something itself and failed, or that RunInTransaction refused for ending its transaction
/// itself, but a strategy of the application's may (a Polly pipeline that handles every exception): such an attempt
/// is refused here, before its unit of work runs, so that nothing committed is applied twice. (None runs after one
/// that succeeded: see <see cref="RunsNothingAfterSuccess"/>.)
/// </summary>
internal sealed class UnitOfWorkRun(bool deferred)
{
    private Exception? _endedBy; // the error of an attempt whose unit of work ended its transaction itself: no attempt may run any more

    /// <summary>Whether the next attempt begins a DEFERRED transaction.</summary>
    public bool Deferred { get; set; } = deferred;

    /// <summary>
    /// Marks the run as over: an attempt's unit of work committed its transaction itself, or part of it, and then
    /// failed with <paramref name="error"/>, or it ended its transaction itself in another way that RunInTransaction
    /// refuses (see <see cref="SaverDbConnection"/>'s NotRunAgain and ThrowIfEndedByWork).
    /// </summary>
    public void EndedByWork(Exception error) => _endedBy = error;

    /// <summary>Refuses an attempt after the run is over (see <see cref="UnitOfWorkRun"/>).</summary>
    /// <exception cref="InvalidOperationException">The run is over.</exception>
    public void ThrowIfEnded()
    {
        if (_endedBy is { } error)
        {
            throw new InvalidOperationException(
                $"RunInTransaction's retry strategy asked for another attempt at the unit of work after an attempt that had ended its own transaction (Commit, Rollback, or a COMMIT sent as SQL) and then failed. It is not run again: what it committed would be applied twice, or it would end its transaction the same way. A retry strategy for RunInTransaction should handle only transient errors (SaverRetryStrategy.IsTransient); the library decides what is safe to run again. The attempt's error (the inner exception): {error.Message}",
                error);
        }
    }
}
