using SqliteSaver.Data.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// Stops the statement SQLite runs on the connection for a call when the call's token is cancelled, until disposed.
/// Usually SQLite's interrupt, made from the cancelling thread. But SQLite keeps an interrupt pending while any
/// statement of the connection is active, so that with another reader of the renter open (on a row) that reader's
/// next step, and every statement begun until it closes, would fail with SQLITE_INTERRUPT too. Then the connection's
/// progress handler stops the call's statement instead, which ends only the statement that runs: the token it looks at
/// is set here, on the call's thread, which puts the handler in place if it is not (SQLite takes the connection's
/// mutex to set one, which a running statement holds; see <see cref="PhysicalConnection.StopOnProgress"/>).
/// </summary>
internal readonly struct StatementCancellation : IDisposable
{
    private readonly CancellationTokenRegistration _interrupt;
    private readonly PhysicalConnection? _progressHandlerOn;
    private readonly CancellationToken? _previous; // the token of the call this one runs inside, if any (see PhysicalConnection.StopOnProgress)

    /// <param name="physical">The connection the call runs on.</param>
    /// <param name="ownReader">The call is a step or the closing of a reader, which does not count as another.</param>
    /// <param name="cancellationToken">The call's token.</param>
    public StatementCancellation(PhysicalConnection physical, bool ownReader, CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled)
        {
            return;
        }

        if (physical.OtherReadersOpen(ownReader))
        {
            _previous = physical.StopOnProgress(cancellationToken);
            _progressHandlerOn = physical;
            return;
        }

        _interrupt = cancellationToken.Register(static handle => raw.sqlite3_interrupt((sqlite3)handle!), physical.Handle);
    }

    /// <summary>Ends the cancellation: waits for the interrupt if it runs now, so that none comes after it.</summary>
    public void Dispose()
    {
        _interrupt.Dispose();
        _progressHandlerOn?.EndStopOnProgress(_previous);
    }
}
