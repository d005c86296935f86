using SqliteSaver.Data.Pooling;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// For one attempt that a retry strategy gave a token of its own (a Polly timeout's, say): cancelling that token
/// interrupts the statement SQLite runs and ends SQLite's waits for a lock in its busy handler, as the caller's token
/// does in an asynchronous call. Disposing it puts the connection's busy handler back as the call had it. Nothing
/// changes when the token is the caller's (the built-in strategy's case).
/// </summary>
internal ref struct AttemptCancellation
{
    private readonly PhysicalConnection _physical;
    private readonly CancellationToken _caller;
    private readonly StatementCancellation _interrupt;
    private readonly CancellationTokenSource? _either;
    private readonly bool _callerWaits;
    private readonly bool _attemptWaits;

    /// <exception cref="Microsoft.Data.Sqlite.SqliteException">SQLite could not read the busy timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="attempt"/>, the attempt's own token, was cancelled already.</exception>
    /// <param name="physical">The connection the attempt runs on.</param>
    /// <param name="commandText">The command's text (see <see cref="Executor.MakeBusyWaitsCancellable"/>).</param>
    /// <param name="stopOnProgress">Whether the connection's progress handler may stop the command (see <see cref="Executor.StopsOnProgress"/>).</param>
    /// <param name="attempt">The attempt's token.</param>
    /// <param name="caller">The call's token.</param>
    public AttemptCancellation(PhysicalConnection physical, string commandText, bool stopOnProgress, CancellationToken attempt, CancellationToken caller)
    {
        _physical = physical;
        _caller = caller;
        if (attempt == caller || !attempt.CanBeCanceled)
        {
            return;
        }

        // SQLite drops an interrupt made while no statement runs: a statement started after the token fired would run on.
        attempt.ThrowIfCancellationRequested();
        _callerWaits = physical.BusyWaitsCancellable;
        _either = CancellationTokenSource.CreateLinkedTokenSource(caller, attempt);

        // Either token: the token a progress handler stops on for this attempt replaces the caller's until it ends.
        _interrupt = new StatementCancellation(physical, ownReader: false, interrupt: true, stopOnProgress, _either.Token);
        try
        {
            _attemptWaits = Executor.MakeBusyWaitsCancellable(physical, commandText, _either.Token);
        }
        catch
        {
            _interrupt.Dispose();
            _either.Dispose();
            throw;
        }
    }

    public readonly void Dispose()
    {
        try
        {
            if (_attemptWaits && _callerWaits)
            {
                _physical.MakeBusyWaitsCancellable(_caller); // as the call had them
            }
            else if (_attemptWaits)
            {
                _physical.EndCancellableBusyWaits();
            }
        }
        finally
        {
            _interrupt.Dispose();
            _either?.Dispose();
        }
    }
}
