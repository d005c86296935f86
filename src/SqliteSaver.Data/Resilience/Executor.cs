using System.Data;
using System.Diagnostics;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Interop;
using SqliteSaver.Data.Pooling;
using SqliteSaver.Data.Threading;
using SQLitePCL;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// Runs commands and begins transactions for one data source so that SQLITE_BUSY never applies a write twice:
/// writes outside a transaction pass the write gate and run inside a transaction of their own, which is rolled back
/// whole before the retry strategy runs it again; reads and single standalone statements are retried as they are;
/// statements inside the caller's transaction are never retried, since only the whole unit of work can be.
/// </summary>
internal sealed class Executor(SaverRetryStrategy strategy, WriteGate? gate, Telemetry telemetry)
{
    /// <summary>SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY's extended code for a read transaction too old to write in.</summary>
    public const int BusySnapshot = 517;

    private readonly CommandClassifier _classifier = new();

    public SaverRetryStrategy Strategy => strategy;

    public WriteGate? Gate => gate;

    /// <summary>
    /// Runs <paramref name="run"/> on <paramref name="command"/>. With <paramref name="keepOpen"/> a write's
    /// transaction and gate stay held (for a reader, whose statements run as it is read) until
    /// <see cref="Finish"/>; the result says whether that happened. <paramref name="deadline"/>, the command's
    /// CommandTimeout started as the command did (before it waited for the connection's earlier executions), bounds its
    /// waits for the write lock in all (see <see cref="CommandDeadline"/>); a statement in the caller's transaction
    /// waits under Busy Timeout alone.
    /// <paramref name="cancellationToken"/> (the call's, see <see cref="RenterCalls"/>) ends its waits on the gate,
    /// between attempts and for another process's write lock, and interrupts its statements. With
    /// <paramref name="transaction"/> (the renter's, if any) nothing runs once SQLite has ended that transaction itself:
    /// <paramref name="operation"/> names the call in the error.
    /// </summary>
    /// <exception cref="InvalidOperationException">SQLite has ended <paramref name="transaction"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public (T Result, bool Open) Execute<T>(
        PhysicalConnection physical,
        OwnedSqliteCommand command,
        CommandDeadline deadline,
        Func<SqliteCommand, CommandBehavior, T> run,
        CommandBehavior behavior,
        bool keepOpen,
        SaverDbTransaction? transaction,
        string operation,
        CancellationToken cancellationToken)
    {
        physical.Calls.EnterOnThisThread(); // the strategy's callbacks run here too (see RenterCalls.RunningOnThisThread)
        try
        {
            return Synchronously.Result(ExecuteCore(physical, command, deadline, run, behavior, keepOpen, transaction, operation, async: false, cancellationToken));
        }
        finally
        {
            RenterCalls.ExitOnThisThread();
        }
    }

    /// <summary>
    /// The asynchronous form of <see cref="Execute"/>: waits on the gate, for the write lock and between attempts
    /// without blocking a thread. Cancellation also interrupts a statement SQLite is running, and ends SQLite's own
    /// waits for a lock (see <see cref="PhysicalConnection.MakeBusyWaitsCancellable"/>), except for a command whose
    /// text names busy_timeout.
    /// </summary>
    /// <exception cref="InvalidOperationException">SQLite has ended <paramref name="transaction"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public ValueTask<(T Result, bool Open)> ExecuteAsync<T>(
        PhysicalConnection physical,
        OwnedSqliteCommand command,
        CommandDeadline deadline,
        Func<SqliteCommand, CommandBehavior, T> run,
        CommandBehavior behavior,
        bool keepOpen,
        SaverDbTransaction? transaction,
        string operation,
        CancellationToken cancellationToken)
        => ExecuteCore(physical, command, deadline, run, behavior, keepOpen, transaction, operation, async: true, cancellationToken);

    /// <summary>
    /// Commits a write left open by <see cref="Execute"/> (rolling it back if the commit fails), or with
    /// <paramref name="commit"/> false rolls it back, and leaves the gate, unless SQLite could not roll back (see
    /// <see cref="PhysicalConnection.RollbackFailure"/>).
    /// </summary>
    /// <exception cref="SqliteException">
    /// SQLite rolled the write's transaction back itself before the commit (after another statement on the connection
    /// failed with a full disk, an I/O error or an interrupt): nothing of the write is kept.
    /// </exception>
    public static void Finish(PhysicalConnection physical, bool commit = true)
    {
        try
        {
            if (commit)
            {
                if (!physical.InTransaction)
                {
                    throw new SqliteException(
                        "The write this reader ran was not committed: SQLite rolled back the transaction the library began for it, after another statement on the connection failed while the reader was open (a full disk, an I/O error, an interrupt). Nothing it wrote is kept; it can be run again.",
                        raw.SQLITE_ABORT,
                        raw.SQLITE_ABORT_ROLLBACK);
                }

                physical.Commit();
            }
        }
        finally
        {
            physical.WriteOpenForReader = false;
            physical.TryRollback();
            physical.ReleaseGateUnlessTransactionKept();
        }
    }

    /// <summary>What a command's SQL does, found by preparing its statements the first time the text is seen.</summary>
    public CommandKind Classify(PhysicalConnection physical, string text) => _classifier.Classify(physical.Handle, text);

    /// <summary>See <see cref="CommandClassifier.ResultWrites"/>.</summary>
    public bool ResultWrites(PhysicalConnection physical, string text, int result) => _classifier.ResultWrites(physical.Handle, text, result);

    /// <summary>
    /// <see cref="CommandClassifier.Classify(sqlite3, string, out SqliteException?, out bool, bool)"/>, kept on the
    /// cache's command once final, so that a command run again is not looked up by its text. A write kept so is
    /// classified again on a connection that has temporary tables or triggers (a temporary view alone cannot change
    /// it): the temp schema is each connection's own, and a temporary table there may hide the table the text writes
    /// elsewhere (or the temporary trigger that made it write the database may be another connection's), so that here
    /// it writes only the temp database (see <see cref="CommandKind.TempWrite"/>), which needs neither the write gate
    /// nor the write lock. The cache's command keeps what was found there until that temp schema changes.
    /// </summary>
    private CommandKind Classify(PhysicalConnection physical, OwnedSqliteCommand command, out SqliteException? invalid)
    {
        invalid = null;
        if (command.Kind is { } kind
            && (kind != CommandKind.Write || !physical.HasTempTablesOrTriggers() || command.KindTempSchema == physical.TempSchemaVersion()))
        {
            return kind;
        }

        var keptWrite = command.Kind == CommandKind.Write; // then the connection has temporary tables or triggers, found above
        kind = _classifier.Classify(physical.Handle, command.CommandText, out invalid, out var final);
        var tempSchema = -1L;
        if (kind == CommandKind.Write && final && (keptWrite || physical.HasTempTablesOrTriggers()))
        {
            tempSchema = physical.TempSchemaVersion();
            kind = _classifier.Classify(physical.Handle, command.CommandText, out invalid, out final, cached: false);
        }

        command.Kind = final ? kind : null;
        command.KindTempSchema = tempSchema;
        return kind;
    }

    /// <summary>
    /// Begins a transaction. An IMMEDIATE one first passes the write gate, and with <paramref name="retry"/> its
    /// <c>BEGIN IMMEDIATE</c> is retried by the strategy while the write lock is busy; it waits for the lock at most
    /// until <paramref name="deadline"/> in all, as a command waits its CommandTimeout. A synchronous call's token
    /// (the call's, see <see cref="RenterCalls"/>, or a retry strategy's for an attempt of a unit of work) ends the
    /// waits, blocking as they are.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public void Begin(PhysicalConnection physical, bool deferred, bool retry, CommandDeadline deadline, CancellationToken cancellationToken)
    {
        physical.Calls.EnterOnThisThread(); // as in Execute
        try
        {
            Synchronously.Wait(BeginCore(physical, deferred, retry, deadline, async: false, cancellationToken));
        }
        finally
        {
            RenterCalls.ExitOnThisThread();
        }
    }

    /// <summary>The asynchronous form of <see cref="Begin"/>, cancellable while it waits.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public ValueTask BeginAsync(PhysicalConnection physical, bool deferred, bool retry, CommandDeadline deadline, CancellationToken cancellationToken)
        => BeginCore(physical, deferred, retry, deadline, async: true, cancellationToken);

    /// <summary>
    /// <paramref name="result"/>, unless the command attached a file into the pool's in-memory database (see
    /// <see cref="PhysicalConnection.MemdbAttachedSinceNoted"/>): then it is disposed (a reader, say, so that the
    /// database can be detached) and the attachment refused.
    /// </summary>
    /// <exception cref="InvalidOperationException">The command attached such a file.</exception>
    private static T RefusingMemdbAttachments<T>(PhysicalConnection physical, T result)
    {
        if (physical.MemdbAttachedSinceNoted() is not { } schema)
        {
            return result;
        }

        (result as IDisposable)?.Dispose();
        throw physical.RefuseMemdbAttachment(schema, "A command");
    }

    /// <summary>
    /// <see cref="Execute"/> and <see cref="ExecuteAsync"/> in one body: with <paramref name="async"/> false every
    /// wait blocks and the returned task is already complete.
    /// </summary>
    private async ValueTask<(T Result, bool Open)> ExecuteCore<T>(
        PhysicalConnection physical,
        OwnedSqliteCommand command,
        CommandDeadline deadline,
        Func<SqliteCommand, CommandBehavior, T> run,
        CommandBehavior behavior,
        bool keepOpen,
        SaverDbTransaction? transaction,
        string operation,
        bool async,
        CancellationToken cancellationToken)
    {
        command.RunsStatementByStatement = false; // until its statements run so (not as an earlier execution ran them)
        cancellationToken.ThrowIfCancellationRequested();

        var text = command.CommandText;
        var cancellableWaits = false;
        try
        {
            physical.RetryFailedRollback(leaveGate: true);

            // Read once: SQLite takes the connection's mutex to answer, and nothing runs before the command does.
            var inTransaction = physical.InTransaction;
            if (transaction is not null && !inTransaction)
            {
                throw transaction.EndedBySqlite(operation);
            }

            // Inside the try: reading the busy timeout may be interrupted by the token already.
            cancellableWaits = async && MakeBusyWaitsCancellable(physical, text, cancellationToken);
            physical.NotePragmas(command);
            var kind = Classify(physical, command, out var invalid);
            if (invalid is not null)
            {
                throw invalid; // as it would without the library, before running anything, rather than after waiting for a lock
            }

            if (physical.MemdbAttachedSinceNoted() is { } attachedEarlier)
            {
                // A reader's later statement attached it, after its execution was looked at: refused before anything uses it.
                throw physical.RefuseMemdbAttachment(attachedEarlier, "A command run since the connection was opened (a reader's statement after its first result, say)");
            }

            if (kind is CommandKind.Standalone or CommandKind.Unprotected && CommandClassifier.Attaches(text))
            {
                physical.NoteAttach();
            }

            if (physical.WriteOpenForReader && kind != CommandKind.Read)
            {
                throw WriteOpenForReader();
            }

            // A synchronous call's token is its own (see RenterCalls), cancelled only by Cancel and Close, which
            // interrupt SQLite themselves: no registration on every call for it. Ended before anything here rolls back.
            var stopOnProgress = StopsOnProgress(kind);
            using var interrupt = new StatementCancellation(physical, ownReader: false, async, stopOnProgress, cancellationToken);

            if (inTransaction || physical.HeldGate is not null)
            {
                // The caller's transaction: SQLite is out of autocommit, or the connection holds the gate for an
                // execution this command is nested in (a retry strategy's callback, before that execution's BEGIN).
                // Run as it is, unretried, never queuing for the gate it holds nor leaving it. (A command after a
                // COMMIT sent as SQL in the caller's transaction object was refused above.)
                // ATTACH cannot run inside a transaction, but can outside one: in a command nested before an
                // execution's BEGIN, or in a batch that ends the transaction (such as "COMMIT; ATTACH ...").
                physical.MayHoldTempObjects = true;
                physical.MayHoldAttachments |= !inTransaction || kind == CommandKind.Unprotected;
                physical.SavepointCommandsInTransaction += kind is CommandKind.Standalone or CommandKind.Unprotected && CommandClassifier.SetsSavepoint(text) ? 1 : 0;
                command.RunsStatementByStatement = kind == CommandKind.Unprotected;
                var result = RunInCallersTransaction(physical, command, run, behavior, kind, cancellationToken);
                return (inTransaction && kind != CommandKind.Unprotected ? result : RefusingMemdbAttachments(physical, result), false);
            }

            physical.MayHoldTempObjects |= kind != CommandKind.Read;
            physical.MayHoldAttachments |= kind is CommandKind.Standalone or CommandKind.Unprotected;
            switch (kind)
            {
                case CommandKind.Read or CommandKind.Standalone:
                    var statement = new StatementAttempt<T>(physical, command, run, behavior, deadline, stopOnProgress, cancellationToken);
                    var ran = async
                        ? await strategy.ExecuteAsync(static (s, token) => ValueTask.FromResult(s.Run(token)), statement, cancellationToken).ConfigureAwait(false)
                        : strategy.Execute(static (s, token) => s.Run(token), statement, cancellationToken);
                    return (kind == CommandKind.Read ? ran : RefusingMemdbAttachments(physical, ran), false);
                case CommandKind.Unprotected:
                    command.RunsStatementByStatement = true;
                    cancellationToken.ThrowIfCancellationRequested(); // SQLite drops an interrupt made while no statement runs
                    return (RefusingMemdbAttachments(physical, RunStatements(physical, run, command, behavior)), false);
            }

            var temp = kind == CommandKind.TempWrite;
            if (!temp)
            {
                await EnterGate(physical, deadline, async, cancellationToken).ConfigureAwait(false);
            }

            var attempt = new WriteAttempt<T>(physical, command, run, behavior, keepOpen, temp, deadline, cancellationToken);
            try
            {
                var result = async
                    ? await strategy.ExecuteAsync(static (a, token) => a.RunAsync(token), attempt, cancellationToken).ConfigureAwait(false)
                    : strategy.Execute(static (a, token) => a.Run(token), attempt, cancellationToken);
                if (!keepOpen)
                {
                    // A strategy that turns a failure into a result (a fallback) may return after a rollback SQLite refused.
                    physical.ReleaseGateUnlessTransactionKept();
                }

                physical.WriteOpenForReader = keepOpen;
                return (result, keepOpen);
            }
            catch
            {
                physical.ReleaseGateUnlessTransactionKept();

                throw;
            }
        }
        catch (SqliteException error) when (IsInterruption(error, cancellationToken))
        {
            throw Cancelled(error, cancellationToken);
        }
        catch (CommandTimeoutException timedOut)
        {
            telemetry.LockWaitTimedOut(timedOut);
            throw;
        }
        finally
        {
            if (cancellableWaits)
            {
                physical.EndCancellableBusyWaits();
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="command"/>'s statements, marking this thread as running a call of the renter for code SQLite
    /// runs in them (see <see cref="RenterCalls.RunningOnThisThread"/>): an asynchronous call runs them on whichever
    /// thread it has at the time; and the connection as having a statement active, for a call such code makes on it
    /// (see <see cref="PhysicalConnection.OthersActive"/>).
    /// </summary>
    private static T RunStatements<T>(PhysicalConnection physical, Func<SqliteCommand, CommandBehavior, T> run, SqliteCommand command, CommandBehavior behavior)
    {
        physical.Calls.EnterOnThisThread();
        physical.Activated();
        try
        {
            return run(command, behavior);
        }
        finally
        {
            physical.Deactivated();
            RenterCalls.ExitOnThisThread();
        }
    }

    /// <summary>
    /// Runs a statement of the caller's transaction as it is. In a synchronous unit of work the attempt's token (see
    /// <see cref="PhysicalConnection.UnitOfWorkAttempt"/>) interrupts it and ends its waits for a lock, as
    /// <see cref="StatementAttempt{T}"/> has it. A busy error is noted for the unit of work (see
    /// <see cref="PhysicalConnection.BusyInTransaction"/>). A write the progress handler stopped ends the transaction
    /// (see <see cref="PhysicalConnection.RollBackIfStoppedByProgressHandler"/>).
    /// </summary>
    private static T RunInCallersTransaction<T>(
        PhysicalConnection physical,
        SqliteCommand command,
        Func<SqliteCommand, CommandBehavior, T> run,
        CommandBehavior behavior,
        CommandKind kind,
        CancellationToken caller)
    {
        var attempt = physical.UnitOfWorkAttempt;
        caller.ThrowIfCancellationRequested(); // SQLite drops an interrupt made while no statement runs
        var writes = kind is CommandKind.Write or CommandKind.TempWrite;
        physical.StoppedByProgressHandler = false;
        try
        {
            using var cancellation = new AttemptCancellation(physical, command.CommandText, StopsOnProgress(kind), attempt, caller);
            return RunStatements(physical, run, command, behavior);
        }
        catch (SqliteException error) when (error.SqliteErrorCode == raw.SQLITE_INTERRUPT && writes)
        {
            physical.RollBackIfStoppedByProgressHandler();
            if (IsInterruption(error, attempt))
            {
                throw Cancelled(error, attempt);
            }

            throw;
        }
        catch (SqliteException error) when (IsInterruption(error, attempt))
        {
            throw Cancelled(error, attempt);
        }
        catch (SqliteException error) when (IsLockedByOwnStatement(physical, error))
        {
            throw LockedByOwnStatement(error); // not a busy error: RunInTransaction would run the unit of work again
        }
        catch (SqliteException error) when (SaverRetryStrategy.IsTransient(error))
        {
            physical.BusyInTransaction = error;
            throw;
        }
        finally
        {
            physical.StoppedByProgressHandler = false; // this call's note, not to be taken for a statement it runs inside
        }
    }

    /// <summary>
    /// Runs a later step of a reader (the next statement of its command, for NextResultAsync; a row or a statement,
    /// in a synchronous unit of work whose attempt has a token) with cancellation as <see cref="ExecuteAsync"/> has it:
    /// the token interrupts the statement and ends SQLite's waits for a lock.
    /// </summary>
    /// <exception cref="OperationCanceledException">
    /// <paramref name="cancellationToken"/> was cancelled, also as the step ended: its interrupt may then have come
    /// after the statement's row, and SQLite keeps it pending while the statement is active, so that the connection's
    /// other statements would fail with it; the step counts as cancelled (the reader closes as a cancelled one).
    /// </exception>
    /// <remarks>
    /// <paramref name="stop"/>, when given, is the token <see cref="SaverDbCommand.Cancel"/> cancels without
    /// interrupting SQLite, as the step runs beside another active statement of the renter (see
    /// <see cref="SaverDbCommand.StepStop"/>): the progress handler stops the step on either token, and one Cancel
    /// stopped so fails with SQLITE_INTERRUPT, as one that Cancel interrupts does.
    /// </remarks>
    public static T RunForReader<T>(
        PhysicalConnection physical, string commandText, bool statementByStatement, Func<T> step, CancellationToken cancellationToken, CancellationToken stop = default)
    {
        cancellationToken.ThrowIfCancellationRequested(); // SQLite drops an interrupt made while no statement runs
        using var either = stop.CanBeCanceled && cancellationToken.CanBeCanceled ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, stop) : null;
        var stopOn = either?.Token ?? (stop.CanBeCanceled ? stop : cancellationToken);
        var interrupt = new StatementCancellation(physical, ownReader: true, interrupt: true, stopOnProgress: !statementByStatement, stopOn);
        var cancellableWaits = false;
        try
        {
            cancellableWaits = MakeBusyWaitsCancellable(physical, commandText, cancellationToken);
            var result = step();
            interrupt.Dispose(); // waits for the interrupt if it runs now; none after it
            cancellationToken.ThrowIfCancellationRequested();
            return result;
        }
        catch (SqliteException error) when (IsInterruption(error, cancellationToken))
        {
            throw Cancelled(error, cancellationToken);
        }
        finally
        {
            interrupt.Dispose();
            if (cancellableWaits)
            {
                physical.EndCancellableBusyWaits();
            }
        }
    }

    /// <summary>
    /// After an attempt whose own token (a retry strategy's, a Polly timeout's, not the caller's) was cancelled as its
    /// statement made the reader's first row: the interrupt may have come after the row, and SQLite keeps it pending
    /// while the statement is active, so that the connection's other statements would fail with it. Closes the reader
    /// without running its statements not reached, and throws the attempt's cancellation inside the attempt, so that
    /// the strategy reports it as its own (a Polly timeout's <c>TimeoutRejectedException</c>), as when the interrupt
    /// stops the statement. The command looks at the caller's token and <see cref="SaverDbCommand.Cancel"/>'s once the
    /// strategy returns; a result that is no reader is complete, its statements reset, so that SQLite drops the
    /// interrupt as the next statement begins.
    /// </summary>
    /// <exception cref="OperationCanceledException">That token was cancelled.</exception>
    private static void ThrowIfReaderCancelled<T>(PhysicalConnection physical, string commandText, T result, CancellationToken attempt, CancellationToken caller)
    {
        if (attempt == caller || !attempt.IsCancellationRequested || result is not SqliteDataReader reader)
        {
            return;
        }

        CloseDiscarding(physical, reader, commandText, attempt);
        throw new OperationCanceledException(attempt);
    }

    /// <summary>
    /// Closes a SQLite reader, which would run the statements it has not reached, without running them: a progress
    /// handler ends each at once (closing ignores their errors), and their waits for a lock end with
    /// <paramref name="cancelled"/>. A statement that needs a lock another connection holds fails at once, as SQLite's
    /// busy handler is switched off (the progress handler cannot end a wait for a lock); where the busy timeout is not
    /// known without reading it (a command of the rental set it and nothing has read it since, the renter took
    /// <see cref="SaverDbConnection.InnerConnection"/>, or no call has read it yet on a connection without pooling),
    /// which an interrupt still pending would refuse, the wait ends only with <paramref name="cancelled"/>.
    /// </summary>
    internal static void CloseDiscarding(PhysicalConnection physical, SqliteDataReader reader, string commandText, CancellationToken cancelled)
    {
        var suspended = physical.TrySuspendBusyWaitsWithoutReading();
        var waits = !suspended && MakeBusyWaitsCancellableUnlessRefused(physical, commandText, cancelled);
        raw.sqlite3_progress_handler(physical.Handle, 1, static _ => 1, null);
        try
        {
            reader.Close();
        }
        finally
        {
            physical.RestoreProgressHandler(); // a call's this closing runs inside, if any
            if (suspended)
            {
                physical.ResumeBusyWaits();
            }
            else if (waits)
            {
                physical.EndCancellableBusyWaits();
            }
        }
    }

    /// <summary>
    /// <see cref="MakeBusyWaitsCancellable"/> for <see cref="CloseDiscarding"/>: not when the busy timeout must be read
    /// and an interrupt still pending (a Close's, or the cancelled token's) refuses the read.
    /// </summary>
    private static bool MakeBusyWaitsCancellableUnlessRefused(PhysicalConnection physical, string commandText, CancellationToken cancelled)
    {
        try
        {
            return MakeBusyWaitsCancellable(physical, commandText, cancelled);
        }
        catch (SqliteException)
        {
            return false;
        }
    }

    /// <summary>
    /// <see cref="PhysicalConnection.MakeBusyWaitsCancellable"/>, unless the command's text names busy_timeout: SQLite
    /// reports 0 while the library's handler is in place.
    /// </summary>
    internal static bool MakeBusyWaitsCancellable(PhysicalConnection physical, string text, CancellationToken cancellationToken)
        => !PhysicalConnection.NamesBusyTimeout(text) && physical.MakeBusyWaitsCancellable(cancellationToken);

    /// <summary><see cref="Begin"/> and <see cref="BeginAsync"/> in one body (see <see cref="ExecuteCore"/>).</summary>
    private async ValueTask BeginCore(PhysicalConnection physical, bool deferred, bool retry, CommandDeadline deadline, bool async, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (deferred)
        {
            SqliteException.ThrowExceptionForRC(physical.TryBegin(deferred: true), physical.Handle);
            return;
        }

        try
        {
            await EnterGate(physical, deadline, async, cancellationToken).ConfigureAwait(false); // holds the gate only once it returns
            var begin = new BeginAttempt(physical, deadline);
            switch (retry, async)
            {
                case (true, true):
                    await strategy.ExecuteAsync(static (b, token) => BeginImmediateAsync(b.Physical, b.Deadline, token), begin, cancellationToken).ConfigureAwait(false);
                    break;
                case (true, false):
                    strategy.Execute(static (b, token) => BeginImmediate(b.Physical, b.Deadline, token), begin, cancellationToken);
                    break;
                case (false, true):
                    await BeginImmediateAsync(physical, deadline, cancellationToken).ConfigureAwait(false);
                    break;
                default:
                    BeginImmediate(physical, deadline, cancellationToken); // a strategy's, for a unit of work's attempt
                    break;
            }
        }
        catch (CommandTimeoutException timedOut) when (!cancellationToken.IsCancellationRequested) // cancelled (by a Close, say): not a timeout
        {
            physical.ReleaseGate();
            telemetry.LockWaitTimedOut(timedOut); // as in ExecuteCore
            throw;
        }
        catch
        {
            physical.ReleaseGate();
            throw;
        }
    }

    /// <summary>The error for a write or a transaction begun while a reader's own write is open on the connection.</summary>
    public static InvalidOperationException WriteOpenForReader()
        => new("A reader of a write (such as INSERT ... RETURNING) is still open on this connection, and its write commits only when the reader closes. Until then only queries run on this connection: a write, a PRAGMA, a transaction or a COMMIT or ROLLBACK would join that write, or end it halfway. Close the reader first.");

    /// <summary>
    /// Whether the connection's progress handler may stop a command of <paramref name="kind"/> (see
    /// <see cref="StatementCancellation"/>): not one that runs outside the library's transactions (BEGIN, COMMIT,
    /// SAVEPOINT, VACUUM, a PRAGMA ...), which the handler, as SQLite calls it also as a statement returns, could report
    /// as failed after it began or committed a transaction; nor then on the token of a call it runs inside.
    /// </summary>
    internal static bool StopsOnProgress(CommandKind kind) => kind is not (CommandKind.Standalone or CommandKind.Unprotected);

    /// <summary>
    /// Whether an error is the token's doing: SQLite interrupted the statement, or its busy handler stopped waiting
    /// for a lock (see <see cref="PhysicalConnection.MakeBusyWaitsCancellable"/>).
    /// </summary>
    internal static bool IsInterruption(SqliteException error, CancellationToken cancellationToken)
        => error.SqliteErrorCode is raw.SQLITE_INTERRUPT or raw.SQLITE_BUSY && cancellationToken.IsCancellationRequested;

    private static OperationCanceledException Cancelled(SqliteException error, CancellationToken cancellationToken)
        => new("The command was stopped while SQLite ran it: the cancellation token of its call was cancelled (the caller's, a retry strategy's for the attempt, or the library's own for Cancel or Close, whose errors the caller gets instead).", error, cancellationToken);

    private static bool BeginImmediate(PhysicalConnection physical, CommandDeadline deadline, CancellationToken cancellationToken)
        => Synchronously.Result(BeginImmediateCore(physical, deadline, async: false, cancellationToken));

    private static ValueTask<bool> BeginImmediateAsync(PhysicalConnection physical, CommandDeadline deadline, CancellationToken cancellationToken)
        => BeginImmediateCore(physical, deadline, async: true, cancellationToken);

    /// <summary>
    /// <c>BEGIN IMMEDIATE</c>, waiting up to the connection's busy timeout for the write lock another process holds, in
    /// polls at most 2 ms apart, and never past <paramref name="deadline"/>. SQLite's own busy handler sleeps 1, 2, 5,
    /// 10 ... 100 ms between tries, so a writer that has waited a while loses the lock to other processes' writers,
    /// which take it again within microseconds of each commit (worst waits of seconds); and it sleeps inside the call,
    /// where an asynchronous caller's cancellation cannot reach it. When the busy timeout is spent the attempt fails
    /// with SQLITE_BUSY, as it would in SQLite.
    /// </summary>
    /// <exception cref="CommandTimeoutException">The deadline passed first, while the lock was still held.</exception>
    /// <exception cref="InvalidOperationException">
    /// SQLITE_BUSY_SNAPSHOT: a statement still open on this connection (a reader not read to its end) holds a snapshot
    /// older than the database, which no wait can cure while it stays open.
    /// </exception>
    private static async ValueTask<bool> BeginImmediateCore(PhysicalConnection physical, CommandDeadline deadline, bool async, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var busyTimeout = physical.SuspendBusyWaits();
        try
        {
            for (var tries = 0; ; tries++)
            {
                var rc = physical.TryBegin(deferred: false);
                if (rc == raw.SQLITE_BUSY && raw.sqlite3_extended_errcode(physical.Handle) == BusySnapshot)
                {
                    throw new InvalidOperationException(
                        "A reader still open on this connection holds a snapshot of the database from before another connection's last write, so this connection cannot write until it is closed (SQLITE_BUSY_SNAPSHOT). Read the reader to its end or dispose it before writing, or write on another connection.",
                        new SqliteException("SQLite Error 5: 'database is locked'.", raw.SQLITE_BUSY, BusySnapshot));
                }

                if (rc != raw.SQLITE_BUSY)
                {
                    SqliteException.ThrowExceptionForRC(rc, physical.Handle);
                    return true;
                }

                deadline.ThrowIfPassed(); // before the busy timeout's error, which a strategy would try again
                if (Stopwatch.GetElapsedTime(started).TotalMilliseconds >= busyTimeout)
                {
                    SqliteException.ThrowExceptionForRC(rc, physical.Handle);
                }

                if (async)
                {
                    await Task.Delay(LockPollDelay(tries), cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    cancellationToken.ThrowIfCancellationRequested(); // a strategy's token (a synchronous call has no other)
                    Thread.Sleep(LockPollDelay(tries)); // 0 yields the processor
                }
            }
        }
        finally
        {
            physical.ResumeBusyWaits();
        }
    }

    /// <summary>Whether <paramref name="error"/> is the SQLITE_LOCKED of <see cref="LockedByOwnStatement"/>.</summary>
    private static bool IsLockedByOwnStatement(PhysicalConnection physical, SqliteException error)
        => error is { SqliteErrorCode: raw.SQLITE_LOCKED, SqliteExtendedErrorCode: raw.SQLITE_LOCKED }
            && (physical.OthersActive(ownReader: false) || ESqlite3.AnyStatementRunning(physical.Handle));

    /// <summary>
    /// What a write throws for SQLITE_LOCKED (its primary code alone: not a shared cache's lock,
    /// SQLITE_LOCKED_SHAREDCACHE) while another statement of the connection's renter is active (an open reader, the
    /// library's or one opened on <see cref="SaverDbConnection.InnerConnection"/>; the write's own were reset as it
    /// failed): that statement holds the table the write changes ("database table is locked", a <c>DROP TABLE</c> of
    /// the table a reader reads), and no wait can cure it while it stays open. Not a <see cref="SqliteException"/>,
    /// which a strategy would try again with backoff, holding the write gate all along (outside a transaction), or for
    /// which RunInTransaction would run its unit of work again (in the caller's), as for SQLITE_BUSY_SNAPSHOT (see
    /// <see cref="BeginImmediateCore"/>).
    /// </summary>
    private static InvalidOperationException LockedByOwnStatement(SqliteException locked)
        => new(
            $"{locked.Message} A statement still open on this connection (a reader not read to its end, say) uses what this write changes, so it cannot run until that statement is closed; waiting cannot help, so it was not tried again. Read the reader to its end or dispose it before writing.",
            locked);

    /// <summary>No delay for the first tries, then 1 ms, then 2 ms.</summary>
    private static int LockPollDelay(int tries) => tries < 4 ? 0 : tries < 20 ? 1 : 2;

    private async ValueTask EnterGate(PhysicalConnection physical, CommandDeadline deadline, bool async, CancellationToken cancellationToken)
    {
        if (gate is null || physical.HeldGate is not null)
        {
            return;
        }

        var timeout = deadline.Remaining;
        var started = telemetry.Start(SaverMetrics.WriteGateWaitTime);
        var entered = async
            ? await gate.EnterAsync(timeout, cancellationToken).ConfigureAwait(false)
            : gate.Enter(timeout, cancellationToken);
        if (!entered)
        {
            throw deadline.QueueTimedOut();
        }

        physical.HeldGate = gate;
        telemetry.Record(SaverMetrics.WriteGateWaitTime, started);
    }

    /// <summary>What an attempt at <c>BEGIN IMMEDIATE</c> needs (see <see cref="BeginCore"/>).</summary>
    private readonly record struct BeginAttempt(PhysicalConnection Physical, CommandDeadline Deadline) : IBoundedAttempt;

    /// <summary>
    /// One attempt at a read or a standalone statement, unless the command's deadline has passed. A token of the
    /// attempt's own (a strategy's) interrupts the statement and ends SQLite's waits for a lock (see
    /// <see cref="AttemptCancellation"/>). An error the attempt's token caused (see <see cref="IsInterruption"/>) becomes
    /// <see cref="OperationCanceledException"/> here, inside the attempt, so that the retry strategy does not count
    /// SQLite's cancelled wait as a transient error.
    /// </summary>
    private readonly struct StatementAttempt<T>(
        PhysicalConnection physical,
        SqliteCommand command,
        Func<SqliteCommand, CommandBehavior, T> run,
        CommandBehavior behavior,
        CommandDeadline deadline,
        bool stopOnProgress,
        CancellationToken caller) : IBoundedAttempt
    {
        public CommandDeadline Deadline => deadline;

        /// <exception cref="CommandTimeoutException">The deadline passed during earlier attempts.</exception>
        public T Run(CancellationToken cancellationToken)
        {
            deadline.ThrowIfPassed();
            cancellationToken.ThrowIfCancellationRequested(); // SQLite drops an interrupt made while no statement runs
            try
            {
                T result;
                using (new AttemptCancellation(physical, command.CommandText, stopOnProgress, cancellationToken, caller))
                {
                    result = RunStatements(physical, run, command, behavior);
                }

                ThrowIfReaderCancelled(physical, command.CommandText, result, cancellationToken, caller);
                return result;
            }
            catch (SqliteException error) when (IsInterruption(error, cancellationToken))
            {
                throw Cancelled(error, cancellationToken);
            }
        }
    }

    /// <summary>
    /// One attempt at a write outside a transaction: BEGIN IMMEDIATE (BEGIN for one that writes only to the temp
    /// database, see <see cref="CommandKind.TempWrite"/>), run, COMMIT; anything that fails is rolled back whole. A
    /// token of the attempt's own ends its waits as for <see cref="StatementAttempt{T}"/>: a rollback-journal COMMIT
    /// waits for readers in SQLite's busy handler.
    /// </summary>
    private sealed class WriteAttempt<T>(
        PhysicalConnection physical,
        SqliteCommand command,
        Func<SqliteCommand, CommandBehavior, T> run,
        CommandBehavior behavior,
        bool keepOpen,
        bool temp,
        CommandDeadline deadline,
        CancellationToken caller) : IBoundedAttempt
    {
        private bool _attempted;

        public CommandDeadline Deadline => deadline;

        /// <exception cref="CommandTimeoutException">The deadline passed during earlier attempts (a rollback-journal COMMIT waits for readers in each).</exception>
        public T Run(CancellationToken cancellationToken)
        {
            ThrowIfDeadlinePassed();
            physical.RetryFailedRollback(leaveGate: false); // an earlier attempt's, before this one begins
            if (temp)
            {
                SqliteException.ThrowExceptionForRC(physical.TryBegin(deferred: true), physical.Handle);
            }
            else
            {
                BeginImmediate(physical, deadline, cancellationToken);
            }

            return RunBegun(cancellationToken);
        }

        public async ValueTask<T> RunAsync(CancellationToken cancellationToken)
        {
            if (temp)
            {
                return Run(cancellationToken); // nothing to wait for
            }

            ThrowIfDeadlinePassed();
            physical.RetryFailedRollback(leaveGate: false);
            await BeginImmediateAsync(physical, deadline, cancellationToken).ConfigureAwait(false);
            return RunBegun(cancellationToken);
        }

        /// <summary>
        /// Before an attempt after the first: the first one runs however little of the deadline the wait at the write
        /// gate left (the gate's own timeout has its error).
        /// </summary>
        private void ThrowIfDeadlinePassed()
        {
            if (_attempted)
            {
                deadline.ThrowIfPassed();
            }

            _attempted = true;
        }

        private T RunBegun(CancellationToken cancellationToken)
        {
            try
            {
                // Cancelled after the gate was entered, the token's interrupt came while no statement ran: SQLite dropped it.
                cancellationToken.ThrowIfCancellationRequested();
                T result;
                using (new AttemptCancellation(physical, command.CommandText, stopOnProgress: true, cancellationToken, caller))
                {
                    result = RunStatements(physical, run, command, behavior);
                    if (!keepOpen)
                    {
                        physical.Commit(); // its waits for readers (in rollback-journal mode) end with the attempt's token too
                        physical.ReleaseGate(); // now, not once the strategy returns: one that handles results retries on (see RunsNothingAfterSuccess)
                    }
                }

                ThrowIfReaderCancelled(physical, command.CommandText, result, cancellationToken, caller); // then rolled back below
                return result;
            }
            catch (SqliteException error) when (IsInterruption(error, cancellationToken))
            {
                physical.TryRollback();
                throw Cancelled(error, cancellationToken); // inside the attempt, as StatementAttempt does
            }
            catch (Exception error)
            {
                if (physical.TryRollback())
                {
                    if (error is SqliteException locked && IsLockedByOwnStatement(physical, locked))
                    {
                        throw LockedByOwnStatement(locked);
                    }

                    throw;
                }

                // Not a SqliteException, so the built-in strategy does not retry it: a retry would run inside the
                // transaction SQLite kept open (for a strategy that does retry it, Run tries the rollback again first).
                throw new InvalidOperationException(
                    $"The write failed ({error.Message}) and SQLite could not roll its transaction back ({physical.RollbackFailure!.Message}). No command runs on this connection until a rollback succeeds: close it, which rolls the transaction back or discards the connection.",
                    error);
            }
        }
    }
}
