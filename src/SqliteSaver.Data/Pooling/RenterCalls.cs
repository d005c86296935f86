using System.Diagnostics;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Resilience;
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
    private readonly object _ended = new(); // pulsed as the last call ends while EndAll waits, and for WaitForClose
    private CancellationTokenSource _cancellation = new();
    private CancellationTokenSource? _closedBy; // the source EndAll cancelled (one cancelled before stays Cancel's)
    private CancellationTokenSource[]? _givenUpOn; // the sources of calls a Close gave up on, until EndAll sees none run
    private CancellationTokenSource? _ending; // the source of the calls EndAll ends now, for a call that joins them
    private int _running;
    private int _closeWaits;
    private int _closeWatchers; // threads in WaitForClose

    /// <summary>
    /// The renters' calls running on this thread now, outermost first, up to <see cref="t_depth"/>: a synchronous call,
    /// a statement of an asynchronous one, a reader's step or closing (see <see cref="EnterOnThisThread"/>), and those
    /// nested in them (a function SQLite runs in one connection's step may step a reader of another). Per thread, so
    /// that calls of one renter on two threads at once do not take each other's thread for theirs.
    /// </summary>
    [ThreadStatic]
    private static RenterCalls?[]? t_runningHere;

    [ThreadStatic]
    private static int t_depth;

    /// <summary>How often <see cref="EndAll"/> interrupts again while calls still run (see there).</summary>
    private static readonly TimeSpan InterruptAgainEvery = TimeSpan.FromMilliseconds(50);

    /// <summary>How often <see cref="WaitForClose"/> checks its condition without a pulse.</summary>
    private static readonly TimeSpan RecheckEvery = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// A call begins. Returns the source of the token it waits with, which Close cancels, and Cancel through the
    /// command that keeps it: one cancelled already is first replaced, so that a call begun after a Cancel is not
    /// ended by it (the replaced one is not disposed: the call it was cancelled for may still be ending with it).
    /// Two calls replacing it at once (a renter's, and a call of the renter before, refused by
    /// <see cref="SaverDbConnection.BeginCall"/>) agree on one replacement, the one Close then cancels.
    /// </summary>
    public CancellationTokenSource Begin()
    {
        Interlocked.Increment(ref _running);
        var cancellation = Volatile.Read(ref _cancellation);
        while (cancellation.IsCancellationRequested)
        {
            var replacement = new CancellationTokenSource();
            var current = Interlocked.CompareExchange(ref _cancellation, replacement, cancellation);
            if (ReferenceEquals(current, cancellation))
            {
                return replacement;
            }

            replacement.Dispose();
            cancellation = current;
        }

        return cancellation;
    }

    /// <summary>
    /// Whether a call of these runs on this thread now: code the call runs here (a retry strategy's callback, a function
    /// SQLite runs in a statement) is inside it, and a Close made there would wait for itself (see
    /// <see cref="SaverDbConnection.Close"/>), a call made there for the call (see <see cref="SaverDbConnection.EarlierAsyncExecution"/>).
    /// </summary>
    public bool RunningOnThisThread
    {
        get
        {
            var running = t_runningHere;
            for (var i = t_depth - 1; i >= 0; i--)
            {
                if (ReferenceEquals(running![i], this))
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>Marks a call of these as running on this thread until <see cref="ExitOnThisThread"/>, which the same thread calls.</summary>
    public void EnterOnThisThread()
    {
        if (t_runningHere is not { } running || t_depth == running.Length)
        {
            Array.Resize(ref t_runningHere, Math.Max(4, t_depth * 2)); // once per thread, but for deep nesting
            running = t_runningHere;
        }

        running[t_depth++] = this;
    }

    /// <summary>Ends the latest <see cref="EnterOnThisThread"/> of this thread.</summary>
    public static void ExitOnThisThread() => t_runningHere![--t_depth] = null;

    /// <summary>A call ends.</summary>
    public void End()
    {
        if (Interlocked.Decrement(ref _running) == 0 && Volatile.Read(ref _closeWaits) == 1)
        {
            lock (_ended)
            {
                Monitor.PulseAll(_ended);
            }
        }
    }

    /// <summary>
    /// For Close: ends the calls running now (their waits end and their statements are interrupted; each rolls back
    /// what it began) and waits until the last has ended, at most <paramref name="bound"/>; <see langword="false"/>
    /// when one still runs then. Returns at once when none runs. A synchronous statement waiting in SQLite's busy
    /// handler ends only at Busy Timeout; a Close made from inside one of the calls would wait for itself until the
    /// bound (<see cref="SaverDbConnection.Close"/> refuses those it sees). SQLite drops an interrupt made while no
    /// statement runs: a statement that begins after the interrupts (the next of a batch, or one whose call checked
    /// its token just before them) would run to its end. So while calls still run, it interrupts again every 50 ms;
    /// a reader's closing that joined them (see <see cref="TryJoinEnding"/>) is one of them, ended as they are.
    /// </summary>
    public bool EndAll(sqlite3 handle, TimeSpan bound)
    {
        if (Volatile.Read(ref _running) == 0)
        {
            Volatile.Write(ref _givenUpOn, null);
            return true;
        }

        var cancellation = Volatile.Read(ref _cancellation);
        Volatile.Write(ref _ending, cancellation);
        if (!cancellation.IsCancellationRequested)
        {
            // The token's callbacks run on a thread of their own. Run here, they would run the code after the caller's
            // await of a call ended now inside this Close, which that code might open again (see SaverDbConnection.Open);
            // on the thread pool (CancelAsync) they would wait for a free thread, which a busy pool (sync over async)
            // may not give within this wait's bound, and a synchronous wait ends only with them. Calls that begin from
            // now on (on the connection this Close hands back, say) take a source of their own: this one is marked
            // cancelled only once that thread runs.
            Volatile.Write(ref _closedBy, cancellation);
            var fresh = new CancellationTokenSource();
            if (Interlocked.CompareExchange(ref _cancellation, fresh, cancellation) != cancellation)
            {
                fresh.Dispose();
            }

            new Thread(CancelCalls) { IsBackground = true, Name = "SqliteSaver.Data Close" }.Start((cancellation, handle));
        }

        raw.sqlite3_interrupt(handle); // a reader's step has no token
        lock (_ended)
        {
            // A full fence between this write and the read of _running below, as End has between its decrement and
            // its read: one of the two sees the other's, so the last End cannot miss this wait.
            Interlocked.Exchange(ref _closeWaits, 1);
            try
            {
                Monitor.PulseAll(_ended); // a WaitForClose may join now (see TryJoinEnding)
                var started = Stopwatch.GetTimestamp();
                while (Volatile.Read(ref _running) > 0)
                {
                    var remaining = bound - Stopwatch.GetElapsedTime(started);
                    if (remaining <= TimeSpan.Zero)
                    {
                        GiveUpOn(cancellation);
                        return false;
                    }

                    if (!Monitor.Wait(_ended, remaining < InterruptAgainEvery ? remaining : InterruptAgainEvery)
                        && Volatile.Read(ref _running) > 0)
                    {
                        raw.sqlite3_interrupt(handle);
                    }
                }
            }
            finally
            {
                _closeWaits = 0;
                _ending = null; // the calls have ended, or Close gives up on them (see CancelCalls)
            }
        }

        Volatile.Write(ref _givenUpOn, null);
        return true;
    }

    /// <summary>
    /// For <see cref="EndAll"/> giving up on the calls of <paramref name="cancellation"/>: a later Close, which cancels
    /// the source of the calls begun since, ends them too, and they must still take it for a Close's end (see
    /// <see cref="ClosedDuring"/>), not for Cancel's. Nothing when Cancel had cancelled the source before.
    /// </summary>
    private void GiveUpOn(CancellationTokenSource cancellation)
    {
        if (ReferenceEquals(Volatile.Read(ref _closedBy), cancellation))
        {
            Volatile.Write(ref _givenUpOn, [.. Volatile.Read(ref _givenUpOn) ?? [], cancellation]);
        }
    }

    /// <summary>Cancels the calls' token for <see cref="EndAll"/>, on the thread it starts for it.</summary>
    /// <remarks>
    /// A statement that began between Close's interrupt and this cancellation (it found the token not yet cancelled)
    /// missed the interrupt, which SQLite drops while no statement runs: it is interrupted again here, while that Close
    /// still waits for the calls, and so still holds the connection.
    /// </remarks>
    private void CancelCalls(object? state)
    {
        var (cancellation, handle) = ((CancellationTokenSource, sqlite3))state!;
        try
        {
            cancellation.Cancel();
        }
        catch (Exception)
        {
            // An exception here would end the process. The callbacks are the library's, and the code after awaits they
            // run puts its exceptions in its own tasks; the source is disposed only once Close has seen the calls end.
        }

        lock (_ended)
        {
            if (ReferenceEquals(_ending, cancellation) && Volatile.Read(ref _running) > 0)
            {
                raw.sqlite3_interrupt(handle);
            }
        }
    }

    /// <summary>Whether a Close waits for the calls now (see <see cref="EndAll"/>).</summary>
    public bool CloseWaits => Volatile.Read(ref _closeWaits) == 1;

    /// <summary>
    /// Begins a call that joins those a Close is waiting for (see <see cref="EndAll"/>), only while it waits: a reader's
    /// closing, which that Close would otherwise reach only after they have ended, run perhaps inside one of them.
    /// Returns the source of the calls that Close ends, which it cancels; <see langword="null"/> when no Close waits.
    /// </summary>
    public CancellationTokenSource? TryJoinEnding()
    {
        lock (_ended)
        {
            if (_closeWaits == 0)
            {
                return null;
            }

            Interlocked.Increment(ref _running); // EndAll, waiting, sees it when it looks again
            return Volatile.Read(ref _ending);
        }
    }

    /// <summary>
    /// Blocks until <paramref name="condition"/> holds, at most <paramref name="bound"/>, for a reader's closing or a
    /// transaction's Dispose that waits for a Close of the renter on another thread to go on (see
    /// <see cref="PooledDataReader.Close"/>, <see cref="SaverDbTransaction.Dispose(bool)"/>). The condition is checked at
    /// once, again as such a Close begins to wait for the calls (see <see cref="EndAll"/>) and as it ends (see
    /// <see cref="CloseEnded"/>), and every 10 ms: it may also turn on what a Close does before it ends, or on another
    /// physical connection, which a Close of the same connection on a third thread has taken since.
    /// </summary>
    public void WaitForClose(Func<bool> condition, TimeSpan bound)
    {
        lock (_ended)
        {
            // A full fence between this write and the condition's reads, as CloseEnded has between its caller's writes
            // and its read of the count: either the condition sees that Close ended, or CloseEnded wakes this wait.
            Interlocked.Increment(ref _closeWatchers);
            try
            {
                var started = Stopwatch.GetTimestamp();
                while (!condition())
                {
                    var remaining = bound - Stopwatch.GetElapsedTime(started);
                    if (remaining <= TimeSpan.Zero)
                    {
                        return;
                    }

                    Monitor.Wait(_ended, remaining < RecheckEvery ? remaining : RecheckEvery);
                }
            }
            finally
            {
                Interlocked.Decrement(ref _closeWatchers);
            }
        }
    }

    /// <summary>
    /// For a Close of the renter, as it ends (having handed the connection back, or given up and kept it): wakes the
    /// waits of <see cref="WaitForClose"/>. Costs a look at a counter when none waits.
    /// </summary>
    public void CloseEnded()
    {
        if (Volatile.Read(ref _closeWatchers) > 0)
        {
            lock (_ended)
            {
                Monitor.PulseAll(_ended);
            }
        }
    }

    public void Dispose() => _cancellation.Dispose();

    /// <summary>
    /// Whether Close came while <paramref name="call"/> ran, for a call that must then undo what it began (a BEGIN)
    /// though nothing of it failed (SQLite drops an interrupt made while no statement runs).
    /// </summary>
    public bool ClosedDuring(CancellationTokenSource call)
        => ReferenceEquals(call, Volatile.Read(ref _closedBy)) || GivenUpOn(call);

    /// <summary>Whether a Close gave up on <paramref name="call"/> (see <see cref="GiveUpOn"/>) since the last Close that ended its calls.</summary>
    private bool GivenUpOn(CancellationTokenSource call)
        => Volatile.Read(ref _givenUpOn) is { } givenUpOn && Array.IndexOf(givenUpOn, call) >= 0;

    /// <summary>
    /// Whether a Close ends <paramref name="call"/>, as <see cref="ClosedDuring"/>, but not one a Close gave up on
    /// (which kept the connection open), unless a later Close is ending the calls now (from before its interrupt, as
    /// <see cref="_closedBy"/> counts for the others; see <see cref="EndAll"/>).
    /// </summary>
    private bool EndedByClose(CancellationTokenSource call)
        => GivenUpOn(call) ? Volatile.Read(ref _ending) is not null : ReferenceEquals(call, Volatile.Read(ref _closedBy));

    /// <summary>
    /// The token a call waits with: <paramref name="call"/>'s (from <see cref="Begin"/>), linked with
    /// <paramref name="caller"/>'s when that can be cancelled (dispose the source returned once the call has ended).
    /// </summary>
    public static CancellationTokenSource? Link(CancellationTokenSource call, CancellationToken caller, out CancellationToken token)
    {
        if (!caller.CanBeCanceled)
        {
            token = call.Token;
            return null;
        }

        var linked = CancellationTokenSource.CreateLinkedTokenSource(caller, call.Token);
        token = linked.Token;
        return linked;
    }

    /// <summary>
    /// What a call throws for <paramref name="cancelled"/>, thrown by a wait or statement it ran with its token (see
    /// <see cref="Link"/>): the caller's cancellation carries the caller's token; after
    /// <see cref="SaverDbCommand.Cancel"/> SQLite's SQLITE_INTERRUPT, as for an interrupted statement; after Close an
    /// <see cref="InvalidOperationException"/>. <see langword="null"/> when the exception is the caller's own.
    /// </summary>
    public Exception? Ended(OperationCanceledException cancelled, CancellationTokenSource call, CancellationToken caller, bool statementByStatement = false)
    {
        if (caller.IsCancellationRequested)
        {
            return cancelled.CancellationToken == caller ? null : new OperationCanceledException(cancelled.Message, cancelled.InnerException, caller);
        }

        if (!call.IsCancellationRequested)
        {
            return null;
        }

        return ClosedDuring(call)
            ? EndedByCloseError(call, cancelled, statementByStatement)
            : cancelled.InnerException is SqliteException { SqliteErrorCode: raw.SQLITE_INTERRUPT } interrupted
                ? interrupted
                : CancelledByCancel();
    }

    /// <summary>
    /// What a call <see cref="SaverDbCommand.Cancel"/> ended throws where no statement's own SQLITE_INTERRUPT carries it
    /// (a wait, or a statement whose interrupt came after its row): SQLite's SQLITE_INTERRUPT, as for an interrupted
    /// statement.
    /// </summary>
    public static SqliteException CancelledByCancel() => new("SQLite Error 9: 'interrupted'.", raw.SQLITE_INTERRUPT);

    /// <summary>
    /// What a call throws for <paramref name="failure"/>, an error of one of its statements: once Close has ended
    /// <paramref name="call"/>, whatever the error (Close's interrupt surfaces as SQLITE_INTERRUPT, or as another code
    /// from a statement run inside the one it stopped, an application function's query, say), the
    /// <see cref="InvalidOperationException"/> of a call ended by Close, with the error as its cause, unless the
    /// caller's token was cancelled. Another code than SQLITE_INTERRUPT counts only while a Close ends the call, not
    /// once the Close gave up on it and left the connection open (see <see cref="EndedByClose"/>): the statement then
    /// failed on its own. Otherwise, for a statement's SQLITE_INTERRUPT when <paramref name="token"/> (the
    /// one the call waits with) was cancelled, <see cref="Ended"/>: Cancel's interrupt stopped the statement. Close
    /// interrupts before the callbacks of the call's token have run (see <see cref="EndAll"/>), and so before a token
    /// linked to it is cancelled. <see langword="null"/> otherwise, to rethrow it.
    /// </summary>
    public Exception? Interrupted(
        SqliteException failure, CancellationTokenSource call, CancellationToken token, CancellationToken caller, bool statementByStatement = false)
        => (failure.SqliteErrorCode == raw.SQLITE_INTERRUPT ? ClosedDuring(call) : EndedByClose(call)) && !caller.IsCancellationRequested
            ? EndedByCloseError(call, failure, statementByStatement)
            : Executor.IsInterruption(failure, token)
                ? Ended(new OperationCanceledException(failure.Message, failure, token), call, caller, statementByStatement)
                : null;

    /// <summary>
    /// What <paramref name="call"/>, which a Close ended (see <see cref="ClosedDuring"/>), throws: <see cref="ClosedDuringCall"/>,
    /// or, when that Close gave up on it and left the connection open and no later Close ends the calls now,
    /// <see cref="GivenUpCall"/>.
    /// </summary>
    public InvalidOperationException EndedByCloseError(CancellationTokenSource call, Exception? cause, bool statementByStatement = false)
        => GivenUpOn(call) && Volatile.Read(ref _ending) is null ? GivenUpCall(cause, statementByStatement) : ClosedDuringCall(cause, statementByStatement);

    private const string InterruptedWrite = "If the interrupt stopped a write in a transaction, SQLite rolled that whole transaction back, as after Cancel.";

    /// <summary>
    /// What a call a Close ended throws once that Close has given up waiting for the connection's calls (see
    /// <see cref="EndAll"/>), which left the connection open; <paramref name="statementByStatement"/> as for
    /// <see cref="ClosedDuringCall"/>.
    /// </summary>
    public static InvalidOperationException GivenUpCall(Exception? cause, bool statementByStatement = false)
        => new(
            statementByStatement
                ? "A Close of this connection on another thread ended this call, then gave up waiting for the connection's calls to end and left the connection open. The call ran its batch as written, one statement after another (some of them cannot run in a transaction): of the statements that had ended, those committed were kept and those in a transaction still open are in it; the one running was undone, and the rest did not run. " + InterruptedWrite
                : "A Close of this connection on another thread ended this call as it ran or waited to run, then gave up waiting for the connection's calls to end and left the connection open; nothing of this call was kept. " + InterruptedWrite,
            cause);

    /// <summary>
    /// What a call ended by Close throws. <paramref name="statementByStatement"/>: the call ran a batch as written, one
    /// statement after another (see <see cref="CommandKind.Unprotected"/>), so the statements that had ended and
    /// committed were kept.
    /// </summary>
    public static InvalidOperationException ClosedDuringCall(Exception? cause, bool statementByStatement = false)
        => new(
            statementByStatement
                ? "The connection was closed while this call ran. It ran its batch as written, one statement after another (some of them cannot run in a transaction): of the statements that had ended, those committed were kept, and those in a transaction still open were rolled back with it; the one running was undone, and the rest did not run."
                : "The connection was closed while this call ran or waited to run; nothing of it was kept.",
            cause);
}
