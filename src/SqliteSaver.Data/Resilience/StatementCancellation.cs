using SqliteSaver.Data.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// Stops the statements SQLite runs on the connection for a call once the call's token is cancelled, until disposed.
/// The connection's progress handler looks at the token, set here on the call's thread, and interrupts the statement
/// that runs (see <see cref="PhysicalConnection.OnProgress"/>): so a cancellation that lands before a long statement
/// begins stops it too, where SQLite drops an interrupt made while none of the connection's statements is active
/// (before the call's first, or between two of a batch). SQLite's interrupt, made from the cancelling thread, stops a
/// step SQLite takes in one go (a sort, <c>count(*)</c> of a table), which the handler does not see; but SQLite keeps
/// an interrupt pending while any statement of the connection is active, so that with another reader of the renter
/// open (on a row) that reader's next step, and every statement begun until it closes, would fail with
/// SQLITE_INTERRUPT too, as would the statement of a call this one runs inside: then the handler alone stops the
/// call, stopping the statement itself (see <see cref="PhysicalConnection.OthersActive"/>). Not a command that runs
/// outside the library's transactions (see <see cref="Executor.StopsOnProgress"/>), even inside another call: SQLite
/// also calls the handler as a statement returns, when a BEGIN has begun its transaction or a COMMIT has ended it,
/// and a stop then would report them failed.
/// </summary>
internal readonly struct StatementCancellation : IDisposable
{
    private readonly CancellationTokenRegistration _interrupt;
    private readonly PhysicalConnection? _physical;
    private readonly (CancellationToken? Token, bool Interrupts) _previous; // of the call this one runs inside, if any (see PhysicalConnection.StopOnProgress)

    /// <param name="physical">The connection the call runs on.</param>
    /// <param name="ownReader">The call is a step or the closing of a reader, which does not count as another.</param>
    /// <param name="interrupt">
    /// Whether the token interrupts SQLite when no other reader is open: not for a token that only the command's
    /// <see cref="SaverDbCommand.Cancel"/> and the connection's Close cancel, which interrupt SQLite themselves.
    /// </param>
    /// <param name="stopOnProgress">Whether the connection's progress handler stops the call's statements.</param>
    /// <param name="cancellationToken">The call's token.</param>
    public StatementCancellation(PhysicalConnection physical, bool ownReader, bool interrupt, bool stopOnProgress, CancellationToken cancellationToken)
    {
        if (!stopOnProgress)
        {
            _previous = physical.StopOnProgress(null, interrupts: false); // nor on the token of a call this one runs inside
            _physical = physical;
        }

        if (!cancellationToken.CanBeCanceled)
        {
            return;
        }

        var alone = !physical.OthersActive(ownReader);
        if (stopOnProgress)
        {
            _previous = physical.StopOnProgress(cancellationToken, interrupts: alone);
            _physical = physical;
        }

        if (interrupt && alone)
        {
            _interrupt = cancellationToken.Register(static handle => raw.sqlite3_interrupt((sqlite3)handle!), physical.Handle);
        }
    }

    /// <summary>Ends the cancellation: waits for the interrupt if it runs now, so that none comes after it.</summary>
    public void Dispose()
    {
        _interrupt.Dispose();
        _physical?.EndStopOnProgress(_previous);
    }
}
