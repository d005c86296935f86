using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// The calls of a physical connection's renter running on it now: command executions, a reader's steps,
/// BeginTransaction. An asynchronous call keeps the connection while it waits (for the write gate, for a lock, for a
/// retry), and a synchronous one may run on another thread than the one closing the connection, so closing first
/// ends them (<see cref="EndAll"/>): the connection goes back to the pool only once nothing of its renter's runs on
/// it. Their token also lets <see cref="SaverDbCommand.Cancel"/> end a call's waits, which no interrupt reaches
/// (SQLite drops an interrupt made while no statement runs).
/// </summary>
internal sealed class RenterCalls : IDisposable
{
    private readonly object _ended = new(); // pulsed as the last call ends while EndAll waits
    private CancellationTokenSource _cancellation = new();
    private int _running;
    private bool _closeWaits;
    private bool _closed; // the current token was cancelled by EndAll, not by Cancel

    /// <summary>
    /// Ends the waits of the calls running now; <see cref="Begin"/> makes a new one for the next calls once it has
    /// been cancelled.
    /// </summary>
    public CancellationToken Token => Volatile.Read(ref _cancellation).Token;

    /// <summary>A call begins; a token cancelled for earlier calls is replaced when none runs.</summary>
    public void Begin()
    {
        if (Interlocked.Increment(ref _running) == 1 && _cancellation.IsCancellationRequested)
        {
            _closed = false;
            Interlocked.Exchange(ref _cancellation, new CancellationTokenSource()).Dispose(); // nothing uses it any more
        }
    }

    /// <summary>A call ends.</summary>
    public void End()
    {
        if (Interlocked.Decrement(ref _running) == 0 && Volatile.Read(ref _closeWaits))
        {
            lock (_ended)
            {
                Monitor.PulseAll(_ended);
            }
        }
    }

    /// <summary>Ends the waits of the calls running now, for <see cref="SaverDbCommand.Cancel"/>.</summary>
    public void Cancel() => Volatile.Read(ref _cancellation).Cancel();

    /// <summary>
    /// For Close: ends the calls running now (their waits end and their statements are interrupted; each rolls back
    /// what it began) and waits until the last has ended. Returns at once when none runs. A Close made from inside
    /// one of the calls (by a function of the application's that SQLite runs in a statement) would wait for itself.
    /// </summary>
    public void EndAll(sqlite3 handle)
    {
        if (Volatile.Read(ref _running) == 0)
        {
            return;
        }

        _closed = true;
        Cancel();
        raw.sqlite3_interrupt(handle); // a reader's step has no token
        lock (_ended)
        {
            _closeWaits = true;
            while (Volatile.Read(ref _running) > 0)
            {
                Monitor.Wait(_ended);
            }

            _closeWaits = false;
        }
    }

    public void Dispose() => _cancellation.Dispose();

    /// <summary>
    /// The token a call waits with: <see cref="Token"/>, linked with <paramref name="caller"/>'s when that can be
    /// cancelled (dispose the source returned once the call has ended).
    /// </summary>
    public CancellationTokenSource? Link(CancellationToken caller, out CancellationToken token)
    {
        if (!caller.CanBeCanceled)
        {
            token = Token;
            return null;
        }

        var linked = CancellationTokenSource.CreateLinkedTokenSource(caller, Token);
        token = linked.Token;
        return linked;
    }

    /// <summary>
    /// What a call throws for <paramref name="cancelled"/>, thrown by a wait or statement it ran with its token (see
    /// <see cref="Link"/>): the caller's cancellation carries the caller's token; after
    /// <see cref="SaverDbCommand.Cancel"/> SQLite's SQLITE_INTERRUPT, as for an interrupted statement; after Close an
    /// <see cref="InvalidOperationException"/>. <see langword="null"/> when the exception is the caller's own.
    /// </summary>
    public Exception? Ended(OperationCanceledException cancelled, CancellationToken caller)
    {
        if (caller.IsCancellationRequested)
        {
            return cancelled.CancellationToken == caller ? null : new OperationCanceledException(cancelled.Message, cancelled.InnerException, caller);
        }

        if (!Token.IsCancellationRequested)
        {
            return null;
        }

        return _closed
            ? new InvalidOperationException("The connection was closed while this call ran or waited to run; nothing of it was kept.", cancelled)
            : cancelled.InnerException is SqliteException { SqliteErrorCode: raw.SQLITE_INTERRUPT } interrupted
                ? interrupted
                : new SqliteException("SQLite Error 9: 'interrupted'.", raw.SQLITE_INTERRUPT);
    }
}
