using System.Collections;
using System.Collections.ObjectModel;
using System.Data;
using System.Data.Common;
using System.Runtime.CompilerServices;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Interop;
using SqliteSaver.Data.Resilience;
using SQLitePCL;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// A reader that forwards to the SQLite reader and finishes what was left open for it when it closes: a write
/// that runs as it is read (an <c>INSERT ... RETURNING</c> outside a transaction) runs its remaining statements and
/// is committed, or rolled back whole if any of its statements failed, and its write gate left; with
/// <see cref="CommandBehavior.CloseConnection"/> the <see cref="SaverDbConnection"/> is closed, returning its physical
/// connection to the pool, rather than the physical connection itself. It holds its connection, so a reader still in
/// use keeps the connection from being garbage collected, and so from having its physical connection taken back as
/// leaked while the reader steps on it.
/// </summary>
/// <param name="inner">The Microsoft.Data.Sqlite reader.</param>
/// <param name="command">The command that opened the reader, whose <see cref="SaverDbCommand.Cancel"/> interrupts the reader's steps.</param>
/// <param name="connection">The connection the reader was opened on.</param>
/// <param name="physical">The physical connection the reader steps on.</param>
/// <param name="commandText">The command's SQL, whose statements the reader runs.</param>
/// <param name="closeConnection">Whether to close <paramref name="connection"/> with the reader, for <see cref="CommandBehavior.CloseConnection"/>.</param>
/// <param name="openWrite">Whether a write transaction and the write gate were left open for the reader.</param>
/// <param name="statementByStatement">Whether the command runs its statements one by one, as written (see <see cref="OwnedSqliteCommand.RunsStatementByStatement"/>).</param>
/// <param name="transaction">The caller's transaction the command ran in, if any.</param>
internal sealed class PooledDataReader(
    SqliteDataReader inner,
    SaverDbCommand command,
    SaverDbConnection connection,
    PhysicalConnection physical,
    string commandText,
    bool closeConnection,
    bool openWrite,
    bool statementByStatement,
    SaverDbTransaction? transaction)
    : DbDataReader, IDbColumnSchemaGenerator
{
    private bool _closed;
    private int _closing; // 1 once a Close has taken on closing the SQLite reader (see Finish)
    private bool _writeFailed;
    private int _result; // which of the command's statements that return columns the reader is on, counted from 0
    private bool _closedByConnection; // closed by its connection's Close (see CloseForConnection)
    private bool _writeEnded; // its write outside a transaction committed or rolled back as it closed (see FinishWrite)
    private bool _writeCommitted; // that write committed
    private bool _endedByClose; // a Close of its connection ended a step or read of it (see EndedByClose)
    private CancellationToken _cancelled; // cancelled as a step of the reader ended (see MarkCancelled)
    private bool[]? _byValue; // per result set (see ByValue)
    private bool _onRow; // Read returned true, in this result set
    private bool _stepFailed; // a Read or NextResult of it threw

    // The caller's transaction's commands that may set savepoints as SQL text, counted as the reader opened (see MayRunAfterSavepointSetAsSql).
    private readonly long _savepointCommandsAtOpen = physical.SavepointCommandsInTransaction;

    // Opened in a transaction begun as SQL (a BEGIN sent as a command), by a batch not run as written (see FinishAfterTransactionBegunAsSqlEnded).
    private readonly bool _inTransactionBegunAsSql = transaction is null && !statementByStatement && !openWrite && physical.InTransaction;

    /// <summary>The caller's transaction the command ran in, if any.</summary>
    public SaverDbTransaction? Transaction => transaction;

    public override int Depth => inner.Depth;

    public override int FieldCount => Read(static (reader, _) => reader.FieldCount, 0);

    public override bool HasRows => inner.HasRows;

    public override bool IsClosed => _closed;

    /// <summary>
    /// Whether no Close has taken on closing the SQLite reader yet (the reader's own, or its connection's: see
    /// <see cref="Close"/>).
    /// </summary>
    internal bool Unfinished => Volatile.Read(ref _closing) == 0;

    public override int RecordsAffected => inner.RecordsAffected;

    public override int VisibleFieldCount => Read(static (reader, _) => reader.VisibleFieldCount, 0);

    public override object this[int ordinal] => Read(static (reader, ordinal) => reader[ordinal], ordinal);

    public override object this[string name]
    {
        get
        {
            ArgumentNullException.ThrowIfNull(name);
            return Read(static (reader, name) => reader.GetValue(OrdinalOf(reader, name)), name);
        }
    }

    /// <summary>
    /// Closes the reader. Its closing is a call of the renter (it runs the statements not reached yet), begun before the
    /// reader is marked closed: a Close of the connection from another thread then waits for it. One that has taken the
    /// physical connection already and still waits for the renter's calls lets this closing join them (it may run inside
    /// one of them, as in a function SQLite runs: that Close would wait for it, and it for that Close). One that has
    /// gone on to close the readers itself closes this one and unbinds its command (see
    /// <see cref="CloseForConnection"/>): this Close waits until it has handed the connection back (not for its
    /// StateChange handlers), so that nothing of the reader or its command is touched meanwhile (the command's Dispose,
    /// say, which follows at once), and closes the reader itself if that Close gives up and leaves the connection open.
    /// Run by that very Close (in a function SQLite runs as it closes another reader), it closes the reader at once.
    /// </summary>
    public override void Close()
    {
        if (_closed)
        {
            return;
        }

        if (connection.TryBeginCall(physical) is { } call)
        {
            Finish(call);
        }
        else
        {
            CloseWhileConnectionCloses();
        }
    }

    /// <summary>
    /// <see cref="Close"/> once a Close of the connection has taken the physical connection (its own method: the wait's
    /// closure is allocated only here).
    /// </summary>
    private void CloseWhileConnectionCloses()
    {
        if (connection.ClosingHere)
        {
            CloseForConnection();
            return;
        }

        // At most as long as that Close waits for the renter's calls, and 5 s for it to close the readers.
        CancellationTokenSource? call = null;
        physical.Calls.WaitForClose(
            () => (call = physical.Calls.TryJoinEnding()) is not null || connection.Holds(physical) || (!Unfinished && !connection.ClosingOn(physical)),
            connection.CallsEndBound + TimeSpan.FromSeconds(5));
        call ??= connection.TryBeginCall(physical);
        if (call is null)
        {
            Volatile.Write(ref _closed, true);
            return;
        }

        Finish(call);
    }

    /// <summary>
    /// <see cref="Close"/>, for the connection's Close (through <see cref="SaverDbCommand.Unbind"/>, or a reader's Close
    /// run inside it), which has taken the physical connection and ended the renter's calls.
    /// </summary>
    internal void CloseForConnection() => Finish(physical.Calls.Begin(), byConnection: true);

    /// <summary>
    /// Closes the SQLite reader, unless another Close has taken that on (then only <paramref name="call"/>, begun on the
    /// physical connection, ends), and ends the call. Closing runs the statements not reached: beside another active
    /// statement of the renter the progress handler stops them once <see cref="SaverDbCommand.Cancel"/> is called,
    /// which then does not interrupt SQLite (see <see cref="BesideAnother"/>), as for a step.
    /// </summary>
    private void Finish(CancellationTokenSource call, bool byConnection = false)
    {
        if (Interlocked.Exchange(ref _closing, 1) == 1)
        {
            physical.Calls.End();
            return;
        }

        _closedByConnection = byConnection;

        // The step's cancellation (see MarkCancelled), or the attempt of the connection's synchronous unit of work, if any: not once closed.
        var attempt = _cancelled.IsCancellationRequested ? _cancelled : UnitOfWorkAttempt();
        var beside = BesideAnother(out var stop);
        NoteStatementsToRun(); // closing runs those not reached
        Volatile.Write(ref _closed, true); // after _closedByConnection, which a read that sees it closed reads
        command.BeginRunning(call, beside); // closing runs the statements of the command not reached yet
        physical.Calls.EnterOnThisThread();
        physical.StoppedByProgressHandler = false; // as a step's (see BeginStep)
        (SqliteException Error, bool Stopped)? failed = null;
        InvalidOperationException? refused = null;
        var transactionOpen = false;
        var closing = false;
        try
        {
            if (openWrite)
            {
                FinishOpenWrite(call, stop);
            }
            else
            {
                failed = FinishStatements(call, attempt, stop);
            }
        }
        finally
        {
            physical.StoppedByProgressHandler = false; // the closing's note, not to be taken for a statement it runs inside
            RenterCalls.ExitOnThisThread();
            physical.Deactivated();
            command.EndRunning(); // no Cancel that saw the closing running is still to interrupt SQLite after it
            try
            {
                if (!openWrite && (attempt is { IsCancellationRequested: true } || failed is { Stopped: true }))
                {
                    RollBackTransactionBegunAsSql();
                }

                transactionOpen = physical.InTransaction; // before the connection may go to its next renter
                command.ReaderClosed(connection, physical);
                if (physical.MemdbAttachedSinceNoted() is { } schema)
                {
                    // Detached whoever closes it; thrown only to the reader's own closing: the connection's Close has
                    // nothing left to do about it.
                    var refusal = physical.RefuseMemdbAttachment(schema, "A statement of the reader's batch after its first result");
                    refused = byConnection ? null : refusal;
                }

                closing = closeConnection && connection.TakeForClosing(physical); // while the call runs (see there)
            }
            finally
            {
                physical.Calls.End(); // after ReaderClosed, which a Close waiting for the call would race; before closing
            }

            if (closing)
            {
                connection.CloseTakenHere(physical);
            }
        }

        if (failed is { } failure)
        {
            throw FailedAsClosing(failure.Error, failure.Stopped, transactionOpen);
        }

        if (refused is not null)
        {
            throw refused;
        }
    }

    /// <summary>
    /// What Close throws once a statement of the batch failed with <paramref name="error"/> as the reader closed (see
    /// <see cref="FinishUnguardedBatch"/>): its error, with its codes, saying that the batch is not whole and
    /// in what transaction the connection is left (<paramref name="transactionOpen"/>, as the reader's closing left it,
    /// before a <see cref="CommandBehavior.CloseConnection"/> closed the connection; <paramref name="stopped"/>: the
    /// progress handler stopped the statement, and the library rolled the transaction back).
    /// </summary>
    private SqliteException FailedAsClosing(SqliteException error, bool stopped, bool transactionOpen)
        => new(
            $"{error.Message} A statement of the reader's batch failed as the reader closed, which runs the statements not reached: those after it did not run, so the batch is not whole. {TransactionLeftByFailedClosing(stopped, transactionOpen)}",
            error.SqliteErrorCode,
            error.SqliteExtendedErrorCode);

    /// <summary>The part of <see cref="FailedAsClosing"/>'s message that says in what transaction the connection is left.</summary>
    private string TransactionLeftByFailedClosing(bool stopped, bool transactionOpen)
    {
        if (closeConnection && transactionOpen)
        {
            return "The reader closed its connection (CommandBehavior.CloseConnection), which rolled back the transaction it was in: nothing of that transaction is kept.";
        }

        if (statementByStatement)
        {
            return transactionOpen
                ? "The batch runs as written, and the connection is in a transaction now (begun as SQL before the batch, or by it), holding what ran of it: roll it back, or commit it knowingly. Until then every statement runs inside it, and closing the connection rolls it back."
                : "The batch runs as written, and the connection is in no transaction now (a transaction it ran in has ended: committed by the batch, or rolled back by SQLite after the error).";
        }

        return transactionOpen
            ? "The transaction begun as SQL (a BEGIN sent as a command) it ran in is still open, with the statements of the batch before the failed one: roll it back, or commit them knowingly."
            : "The transaction begun as SQL (a BEGIN sent as a command) it ran in is rolled back, " + (stopped ? "as the statement was stopped (by Cancel()) perhaps after its changes" : "by SQLite") + ": nothing of that transaction is kept. Statements sent from now on run outside it, each committed on its own, and a COMMIT fails, as no transaction is open.";
    }

    /// <summary>
    /// <see cref="Finish"/>'s closing of a reader whose write is not open for it: runs the statements not reached
    /// inside the caller's transaction, if any (see <see cref="FinishInTransaction"/>), then closes the SQLite reader,
    /// which runs them otherwise; not once a cancellation or a Close ended a step of it. <paramref name="stop"/>: the
    /// token the progress handler stops them on beside another active statement, none otherwise.
    /// </summary>
    /// <returns>The error of a statement that failed with no transaction object to take it (see <see cref="FinishUnguardedBatch"/>), if any.</returns>
    private (SqliteException Error, bool Stopped)? FinishStatements(CancellationTokenSource call, CancellationToken? attempt, CancellationToken stop)
    {
        using var stopping = Stopping(stop);
        try
        {
            FinishInTransaction(attempt, stop);
            FinishAfterTransactionBegunAsSqlEnded(call, attempt);
            return FinishUnguardedBatch(call, attempt);
        }
        finally
        {
            if (attempt is { IsCancellationRequested: true } cancelled)
            {
                CloseDiscarding(cancelled);
            }
            else if (_endedByClose)
            {
                CloseDiscarding(CancellationToken.None); // a call Close ended: nothing of it runs after
            }
            else
            {
                inner.Close();
            }
        }
    }

    /// <summary>
    /// <see cref="Finish"/>'s closing of a reader whose write is open for it (outside a transaction): runs the
    /// statements not reached, stopped on <paramref name="stop"/> as in <see cref="FinishStatements"/>, then commits
    /// the write, or rolls it back once a statement of it failed, and throws that statement's error.
    /// </summary>
    private void FinishOpenWrite(CancellationTokenSource call, CancellationToken stop)
    {
        try
        {
            using var stopping = Stopping(stop);
            try
            {
                // Closing would run the statements left and ignore their errors.
                while (!_writeFailed && inner.NextResult())
                {
                }
            }
            catch (Exception exception)
            {
                _writeFailed = true;
                if (EndedByClose(exception, call) is { } ended)
                {
                    throw ended;
                }

                throw;
            }
            finally
            {
                if (_cancelled.IsCancellationRequested || _writeFailed)
                {
                    // The write is rolled back: nothing of it runs after. Nor in autocommit, after SQLite rolled the
                    // write's transaction back itself as a step of it failed (an interrupt, a full disk).
                    CloseDiscarding(_cancelled);
                }
                else
                {
                    inner.Close();
                }
            }
        }
        finally
        {
            FinishWrite(call); // not stopped by the progress handler
        }
    }

    /// <summary>
    /// Has the progress handler stop the closing's statements on <paramref name="stop"/>, beside another active
    /// statement (see <see cref="BesideAnother"/>); nothing with no token.
    /// </summary>
    private StatementCancellation Stopping(CancellationToken stop)
        => stop.CanBeCanceled ? new StatementCancellation(physical, ownReader: true, interrupt: false, stopOnProgress: true, stop) : default;

    /// <summary>
    /// Marks the reader to close as a cancelled one, once <paramref name="cancelled"/> was cancelled as a step of it (its
    /// execution, NextResultAsync, or a step in a unit of work's attempt) ended: the interrupt may have come after the
    /// statement's row, and SQLite keeps it pending while the statement is active, so that the connection's other
    /// statements would fail with it. As when a synchronous unit of work's attempt is cancelled, the statements not
    /// reached do not run as it closes (in the caller's transaction those of a writing batch are noted as failed), and a
    /// write the reader holds open outside a transaction is rolled back. Marked while the step's call runs, so that a
    /// Close of the connection waiting for it closes the reader so too.
    /// </summary>
    internal void MarkCancelled(CancellationToken cancelled)
    {
        _cancelled = cancelled;
        _writeFailed |= openWrite;
    }

    /// <summary>
    /// Closing a reader of a writing batch in the caller's transaction: runs the statements not reached yet, as
    /// Microsoft.Data.Sqlite's reader would, but keeps the first error, which it would ignore, for the transaction,
    /// so that it cannot commit the batch without the failed statement (see
    /// <see cref="SaverDbTransaction.FailedUnfinished"/>). In a synchronous unit of work the statements end with its
    /// <paramref name="attempt"/>'s token, as its commands do, and beside another active statement the progress
    /// handler stops them on <paramref name="stop"/> too (see <see cref="FinishStatements"/>).
    /// </summary>
    private void FinishInTransaction(CancellationToken? attempt, CancellationToken stop)
    {
        if (transaction is null || transaction.IsCompleted || inner.IsClosed
            || !CommandWrites())
        {
            return;
        }

        if (!physical.InTransaction)
        {
            DiscardAfterSqliteEndedTransaction();
            return;
        }

        try
        {
            while (attempt is { } token ? Executor.RunForReader(physical, commandText, statementByStatement, inner.NextResult, token, stop) : inner.NextResult())
            {
            }
        }
        catch (Exception exception)
        {
            NoteBusyInTransaction(exception);
            transaction.FailedUnfinished(exception);
        }
    }

    /// <summary>
    /// Closing a reader of a writing batch opened in a transaction begun as SQL (a <c>BEGIN</c> sent as a command) that
    /// has ended since (a <c>COMMIT</c> or <c>ROLLBACK</c> sent as a command, or SQLite rolled it back after an error):
    /// the statements not reached would run in autocommit as the SQLite reader closes, each committed on its own, after
    /// a <c>ROLLBACK</c> too, and their errors ignored. They run with SQLite refusing every write instead (see
    /// <see cref="CloseRefusingWrites"/>), and when one of them would write, or failed, Close throws: the batch is not
    /// whole. Once a step of the reader failed (the caller has that error, and a throw from a <c>using</c> block's
    /// Dispose would replace it), and for the connection's Close, which closes its readers quietly, they do not run
    /// at all, and Close is quiet; quiet too when a Close of the connection (on another thread) ended the closing. A
    /// transaction begun since (as SQL, or a transaction object) is not told from the one the reader was opened in:
    /// the statements run in it, as <see cref="FinishUnguardedBatch"/> and <see cref="FinishInTransaction"/> have them.
    /// </summary>
    /// <exception cref="InvalidOperationException">A statement not reached would write, or failed.</exception>
    private void FinishAfterTransactionBegunAsSqlEnded(CancellationTokenSource call, CancellationToken? attempt)
    {
        if (attempt is { IsCancellationRequested: true } || _endedByClose || inner.IsClosed || !TransactionBegunAsSqlEnded())
        {
            return;
        }

        if (_stepFailed || _closedByConnection)
        {
            CloseDiscarding(CancellationToken.None);
            return;
        }

        if (CloseRefusingWrites() is { } error && EndedByClose(error, call) is null) // the connection's Close is quiet
        {
            throw RunAfterTransactionEnded(error, closing: true);
        }
    }

    /// <summary>
    /// Whether the reader's command writes and was opened in a transaction begun as SQL (a <c>BEGIN</c> sent as a
    /// command) that has ended since, with the connection in no transaction now: its statements not reached would run
    /// in autocommit (see <see cref="FinishAfterTransactionBegunAsSqlEnded"/>).
    /// </summary>
    private bool TransactionBegunAsSqlEnded() => _inTransactionBegunAsSql && !physical.InTransaction && CommandWrites();

    /// <summary>
    /// What a closing (<paramref name="closing"/>) or NextResult throws once a statement it ran after the reader's
    /// transaction begun as SQL ended failed with <paramref name="error"/>: SQLITE_READONLY, as SQLite refused its
    /// write (see <see cref="PhysicalConnection.RefuseWrites"/>), SQLITE_INTERRUPT, as <see cref="SaverDbCommand.Cancel"/>
    /// stopped it, or another error.
    /// </summary>
    private static InvalidOperationException RunAfterTransactionEnded(SqliteException error, bool closing)
        => new(
            "The transaction begun as SQL (a BEGIN sent as a command) that the reader's batch ran in "
            + (closing ? "ended before the reader closed" : "has ended")
            + " (a COMMIT or ROLLBACK sent as a command, or SQLite rolled it back after an error), and "
            + (closing ? "closing runs the statements of the batch not reached yet" : "NextResult runs the batch's next statement")
            + ", which would run outside it, each committed on its own: "
            + (error.SqliteErrorCode == raw.SQLITE_READONLY
                ? "SQLite refused their writes, so a statement that writes did not run, nor any after it."
                : "they ran with SQLite refusing writes, and one of them "
                    + (error.SqliteErrorCode == raw.SQLITE_INTERRUPT ? "was stopped by Cancel()" : $"failed ({error.Message})")
                    + ": it did not run whole, nor any after it.")
            + " The batch is not whole, and what ran of it before went with that transaction. Read a writing batch to its end (NextResult until it returns false), or close its reader, before ending the transaction it runs in.",
            error);

    /// <summary>
    /// Closing a reader of a batch whose statements not reached <see cref="FinishInTransaction"/> leaves to the SQLite
    /// reader's closing, which would ignore their errors: a writing batch in a transaction begun as SQL (a
    /// <c>BEGIN</c> sent as a command), and a batch that runs as written (see
    /// <see cref="OwnedSqliteCommand.RunsStatementByStatement"/>). Runs them itself and returns the error of one that
    /// failed (a constraint, a lock held, a <see cref="SaverDbCommand.Cancel"/>): the batch is not whole, and the
    /// COMMIT sent next would keep it in part without a word, or a transaction the batch began (<c>SAVEPOINT</c> ...
    /// <c>RELEASE</c>) would stay open without one, the statements sent next running inside it, to be rolled back as
    /// the connection closes; the reader's Close throws it, as an execution of the batch would. With a transaction
    /// object on the connection (the reader's, or one begun since it opened), the error is that transaction's instead,
    /// which then refuses to commit, as for a writing batch of its own, and nothing is returned; once the reader's own
    /// transaction object has ended, a batch run as written runs the rest as written, its errors ignored, as before
    /// (the caller ended the transaction under it). Stopped: the progress handler stopped the statement (beside
    /// another active statement), perhaps as it returned, after its changes, so that the transaction is to be rolled
    /// back, as an execution's is (see <see cref="RollBackTransactionBegunAsSql"/>). Not a stop by the connection's
    /// Close, which rolls the transaction back itself; closing as part of that Close runs the statements as the SQLite
    /// reader's closing does.
    /// </summary>
    private (SqliteException Error, bool Stopped)? FinishUnguardedBatch(CancellationTokenSource call, CancellationToken? attempt)
    {
        if (attempt is { IsCancellationRequested: true } || _endedByClose || _closedByConnection || inner.IsClosed
            || (statementByStatement ? transaction is { IsCompleted: true } : transaction is not null || !physical.InTransaction || !CommandWrites()))
        {
            return null;
        }

        try
        {
            while (inner.NextResult())
            {
            }
        }
        catch (SqliteException error) when (EndedByClose(error, call) is null)
        {
            if (connection.Transaction is { } current)
            {
                NoteBusyInTransaction(error, current);
                current.FailedUnfinished(error, runAsWritten: statementByStatement);
                return null;
            }

            // A batch run as written is never stopped by the progress handler (see BesideAnother).
            return (error, !statementByStatement && error.SqliteErrorCode == raw.SQLITE_INTERRUPT && physical.StoppedByProgressHandler);
        }
        catch (SqliteException)
        {
            // The connection's Close stopped it, and rolls the transaction back.
        }

        return null;
    }

    /// <summary>
    /// Once a step of a writing batch in a transaction begun as SQL (a <c>BEGIN</c> sent as a command: no
    /// <see cref="SaverDbTransaction"/> to refuse the commit, see <see cref="FinishInTransaction"/>) was cancelled, or
    /// the progress handler stopped one as the reader closed (see <see cref="FinishUnguardedBatch"/>), rolls
    /// that transaction back, after the SQLite reader has closed, as SQLite's interrupt of a write does: the stop may
    /// have come as a write of the batch returned, after it made its changes, and the batch is not whole. Otherwise
    /// the <c>COMMIT</c> sent next would keep what was reported stopped; now it fails, as no transaction is open.
    /// </summary>
    private void RollBackTransactionBegunAsSql()
    {
        if (transaction is null && physical.InTransaction
            && CommandWrites())
        {
            physical.TryRollback(); // a failure stays for the next command (see PhysicalConnection.RollbackFailure)
        }
    }

    /// <summary>
    /// Closes the SQLite reader without running the statements it has not reached (see
    /// <see cref="Executor.CloseDiscarding"/>), once the synchronous unit of work's attempt was cancelled: those of a
    /// writing batch have been noted as failed (see <see cref="FinishInTransaction"/>), so they can only be rolled back.
    /// Also once a Close of the connection ended a step of the reader (<paramref name="cancelled"/> none), as it ends
    /// any call: the statements after it do not run.
    /// </summary>
    private void CloseDiscarding(CancellationToken cancelled) => Executor.CloseDiscarding(physical, inner, commandText, cancelled);

    /// <summary>
    /// SQLite ended the caller's transaction itself (after an <c>ON CONFLICT ROLLBACK</c>, say): the statements not
    /// reached would run outside it, in autocommit, as the SQLite reader closes. They run inside a transaction of the
    /// reader's own instead, rolled back at once, without waiting for a lock; their errors are ignored, as closing
    /// ignores them.
    /// </summary>
    private void DiscardAfterSqliteEndedTransaction()
    {
        try
        {
            physical.Execute("BEGIN");
        }
        catch (SqliteException)
        {
            // An interrupt SQLite keeps pending while a statement is active (a cancelled command ended the transaction)
            // refuses the BEGIN too. The statements then run in autocommit as the SQLite reader closes, as with
            // Microsoft.Data.Sqlite: a gap, but closing must not throw and leave the SQLite reader open.
            inner.Close();
            return;
        }

        try
        {
            CloseWithoutBusyWaits();
        }
        finally
        {
            physical.TryRollback();
        }
    }

    /// <summary>
    /// Closes the SQLite reader, running its statements not reached yet with SQLite refusing every write (see
    /// <see cref="PhysicalConnection.RefuseWrites"/>), so that none of them changes anything: a write fails at once
    /// with SQLITE_READONLY, without waiting for a lock, and stops them, as any failed statement does (the SQLite
    /// reader runs nothing after it). A read runs, and waits for a lock, as it would.
    /// </summary>
    /// <returns>
    /// The error of the statement that failed (SQLITE_READONLY: one that writes), if any; or SQLite's refusal to
    /// refuse writes (an interrupt it keeps pending while a statement is active), the statements then closed without
    /// running (see <see cref="Executor.CloseDiscarding"/>).
    /// </returns>
    private SqliteException? CloseRefusingWrites()
    {
        bool refusedAlready;
        try
        {
            refusedAlready = physical.RefuseWrites();
        }
        catch (SqliteException refused)
        {
            CloseDiscarding(CancellationToken.None);
            return refused;
        }

        try
        {
            while (inner.NextResult())
            {
            }

            return null;
        }
        catch (SqliteException failed)
        {
            return failed;
        }
        finally
        {
            inner.Close();
            if (!refusedAlready)
            {
                physical.AllowWrites();
            }
        }
    }

    /// <summary>Closes the SQLite reader, running its statements not reached yet with SQLite's busy handler off.</summary>
    /// <returns>The error of the statement that failed, if any: those after it did not run.</returns>
    private SqliteException? CloseWithoutBusyWaits()
    {
        physical.SuspendBusyWaits();
        try
        {
            while (inner.NextResult())
            {
            }

            inner.Close();
            return null;
        }
        catch (SqliteException failed)
        {
            return failed; // the SQLite reader closed itself as it threw
        }
        finally
        {
            physical.ResumeBusyWaits();
        }
    }

    /// <summary>
    /// Whether a rollback to a savepoint would run statements of this reader not reached yet (see
    /// <see cref="FinishBeforeTransactionEnds"/>) after a savepoint may have been set as SQL text: a command that may
    /// set one (see <see cref="PhysicalConnection.SavepointCommandsInTransaction"/>) ran in the transaction since the
    /// reader opened. A rollback to such a savepoint would undo statements of the batch that belong after it.
    /// </summary>
    public bool MayRunAfterSavepointSetAsSql()
        => !_closed && !inner.IsClosed && CommandWrites() && physical.SavepointCommandsInTransaction != _savepointCommandsAtOpen;

    /// <summary>
    /// Keeps a busy error a statement met in the caller's transaction (<paramref name="caller"/>: the reader's, unless
    /// given) for <see cref="SaverDbConnection.RunInTransaction(Action{SaverDbTransaction}, bool)"/> (see
    /// <see cref="PhysicalConnection.BusyInTransaction"/>).
    /// </summary>
    private void NoteBusyInTransaction(Exception exception, SaverDbTransaction? caller = null)
    {
        if ((caller ?? transaction) is not null && exception is SqliteException sqlite && SaverRetryStrategy.IsTransient(sqlite))
        {
            physical.BusyInTransaction = sqlite;
        }
    }

    /// <summary>
    /// Before <see cref="Transaction"/> commits or rolls back, if the command writes: runs the statements of the
    /// command not yet reached, inside the transaction. The SQLite reader would run them as this reader is read on or
    /// closed, outside the transaction: after a rollback that applied a write the caller had rolled back. The SQLite
    /// reader closes, so this one reads nothing more; it stays open until it is closed, which with
    /// <see cref="CommandBehavior.CloseConnection"/> still closes the connection. A reader of a command that only
    /// reads is left as it is, and so is one whose command ends or begins transactions itself (see
    /// <see cref="CommandKind.Unprotected"/>). Once SQLite has ended the transaction itself (an <c>ON CONFLICT
    /// ROLLBACK</c>, a write that a cancellation stopped), they would run in autocommit and be kept: they run in a
    /// transaction of the reader's own instead, rolled back at once (see <see cref="DiscardAfterSqliteEndedTransaction"/>).
    /// </summary>
    /// <param name="commit">
    /// Whether the transaction is about to commit: a statement's error is then thrown, so that the commit does not go
    /// ahead without it. Before a rollback the statements run with SQLite's busy handler off, so that none waits for
    /// a lock only to be rolled back, and the error of one that failed is returned (those after it do not run): a
    /// rollback to a savepoint that fails leaves the batch in the transaction, which then must not commit.
    /// </param>
    /// <returns>Before a rollback, the error of a statement that failed, if any.</returns>
    /// <exception cref="SqliteException">With <paramref name="commit"/>, a statement failed.</exception>
    public SqliteException? FinishBeforeTransactionEnds(bool commit)
    {
        if (_closed || inner.IsClosed || !CommandWrites())
        {
            return null;
        }

        physical.Calls.EnterOnThisThread(); // the statements not reached run here
        try
        {
            if (!physical.InTransaction)
            {
                DiscardAfterSqliteEndedTransaction(); // they would run in autocommit, and be kept
                return null;
            }

            if (commit)
            {
                while (inner.NextResult())
                {
                }

                inner.Close();
                return null;
            }

            return CloseWithoutBusyWaits();
        }
        finally
        {
            RenterCalls.ExitOnThisThread();
        }
    }

    public override bool GetBoolean(int ordinal) => Read(static (reader, ordinal) => reader.GetBoolean(ordinal), ordinal);

    public override byte GetByte(int ordinal) => Read(static (reader, ordinal) => reader.GetByte(ordinal), ordinal);

    public override long GetBytes(int ordinal, long dataOffset, byte[]? buffer, int bufferOffset, int length)
        => ByValue(ordinal)
            ? Read(static (reader, a) => BytesOfValue(reader, a.ordinal, a.dataOffset, a.buffer, a.bufferOffset, a.length), (ordinal, dataOffset, buffer, bufferOffset, length))
            : ReadAsCall(static (reader, a) => reader.GetBytes(a.ordinal, a.dataOffset, a.buffer, a.bufferOffset, a.length), (ordinal, dataOffset, buffer, bufferOffset, length));

    public override char GetChar(int ordinal) => Read(static (reader, ordinal) => reader.GetChar(ordinal), ordinal);

    public override long GetChars(int ordinal, long dataOffset, char[]? buffer, int bufferOffset, int length)
        => ByValue(ordinal)
            ? Read(static (reader, a) => CharsOfValue(reader, a.ordinal, a.dataOffset, a.buffer, a.bufferOffset, a.length), (ordinal, dataOffset, buffer, bufferOffset, length))
            : ReadAsCall(static (reader, a) => reader.GetChars(a.ordinal, a.dataOffset, a.buffer, a.bufferOffset, a.length), (ordinal, dataOffset, buffer, bufferOffset, length));

    public ReadOnlyCollection<DbColumn> GetColumnSchema() => ReadSchema(static reader => reader.GetColumnSchema());

    public override string GetDataTypeName(int ordinal) => Read(static (reader, ordinal) => reader.GetDataTypeName(ordinal), ordinal);

    public override DateTime GetDateTime(int ordinal) => Read(static (reader, ordinal) => reader.GetDateTime(ordinal), ordinal);

    public override decimal GetDecimal(int ordinal) => Read(static (reader, ordinal) => reader.GetDecimal(ordinal), ordinal);

    public override double GetDouble(int ordinal) => Read(static (reader, ordinal) => reader.GetDouble(ordinal), ordinal);

    public override IEnumerator GetEnumerator() => new DbEnumerator(this, closeReader: false);

    public override Type GetFieldType(int ordinal) => Read(static (reader, ordinal) => reader.GetFieldType(ordinal), ordinal);

    public override T GetFieldValue<T>(int ordinal)
        => typeof(T) == typeof(Stream) ? (T)(object)GetStream(ordinal)
            : typeof(T) == typeof(TextReader) ? (T)(object)GetTextReader(ordinal)
            : Read(static (reader, ordinal) => reader.GetFieldValue<T>(ordinal), ordinal);

    public override float GetFloat(int ordinal) => Read(static (reader, ordinal) => reader.GetFloat(ordinal), ordinal);

    public override Guid GetGuid(int ordinal) => Read(static (reader, ordinal) => reader.GetGuid(ordinal), ordinal);

    public override short GetInt16(int ordinal) => Read(static (reader, ordinal) => reader.GetInt16(ordinal), ordinal);

    public override int GetInt32(int ordinal) => Read(static (reader, ordinal) => reader.GetInt32(ordinal), ordinal);

    public override long GetInt64(int ordinal) => Read(static (reader, ordinal) => reader.GetInt64(ordinal), ordinal);

    public override string GetName(int ordinal) => Read(static (reader, ordinal) => reader.GetName(ordinal), ordinal);

    public override int GetOrdinal(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Read(static (reader, name) => OrdinalOf(reader, name), name);
    }

    public override DataTable? GetSchemaTable() => ReadSchema(static reader => reader.GetSchemaTable());

    public override Stream GetStream(int ordinal)
        => ByValue(ordinal)
            ? Read(static (reader, ordinal) => (Stream)new MemoryStream(reader.GetFieldValue<byte[]>(ordinal), writable: false), ordinal)
            : ReadAsCall(static (reader, ordinal) => reader.GetStream(ordinal), ordinal);

    public override string GetString(int ordinal) => Read(static (reader, ordinal) => reader.GetString(ordinal), ordinal);

    public override TextReader GetTextReader(int ordinal)
        => ByValue(ordinal)
            ? Read(static (reader, ordinal) => (TextReader)new StringReader(reader.IsDBNull(ordinal) ? string.Empty : reader.GetString(ordinal)), ordinal)
            : ReadAsCall(static (reader, ordinal) => reader.GetTextReader(ordinal), ordinal);

    public override object GetValue(int ordinal) => Read(static (reader, ordinal) => reader.GetValue(ordinal), ordinal);

    public override int GetValues(object[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        return Read(static (reader, values) => reader.GetValues(values), values);
    }

    public override bool IsDBNull(int ordinal) => Read(static (reader, ordinal) => reader.IsDBNull(ordinal), ordinal);

    /// <summary>
    /// The ordinal of the column named <paramref name="name"/>, as Microsoft.Data.Sqlite finds it; for a name no column
    /// has, its <see cref="ArgumentOutOfRangeException"/> with a message that lists the result set's columns, where
    /// Microsoft.Data.Sqlite's names only the name.
    /// </summary>
    private static int OrdinalOf(SqliteDataReader reader, string name)
    {
        try
        {
            return reader.GetOrdinal(name);
        }
        catch (ArgumentOutOfRangeException)
        {
            var columns = new string[reader.FieldCount];
            for (var i = 0; i < columns.Length; i++)
            {
                columns[i] = $"'{reader.GetName(i)}'";
            }

            throw new ArgumentOutOfRangeException(
                nameof(name),
                name,
                $"No column of this result set is named '{name}'. Its columns: {string.Join(", ", columns)}."); // a result without columns never gets here: Microsoft.Data.Sqlite says it has no data
        }
    }

    /// <summary>
    /// Whether the result set's column <paramref name="ordinal"/> is to be read by its value: it is an expression, read
    /// from no table (<c>SELECT x'01', 1</c>, a parameter, a CASE), or that is not known (see
    /// <see cref="ESqlite3.ColumnsWithoutTable"/>). Microsoft.Data.Sqlite 10.0.15's GetBytes, GetChars, GetStream and GetTextReader look
    /// for the rowid of the column's table among the other columns, and on two such columns ask SQLite about a table
    /// without a name, which ends the process (SIGSEGV); reading the value is what Microsoft.Data.Sqlite does for a column
    /// without a rowid. Known once per result set (its column schema would cost several times a read).
    /// </summary>
    private bool ByValue(int ordinal, [CallerMemberName] string operation = "")
    {
        if (inner.IsClosed)
        {
            return false; // its transaction's end closed it (see FinishBeforeTransactionEnds): the read's error names the read
        }

        if (!_onRow)
        {
            return true; // no row: the one running statement may be another reader's; the value's error is MDS's
        }

        _byValue ??= Read(static (reader, handle) => ESqlite3.ColumnsWithoutTable(handle, reader.FieldCount), physical.Handle, operation) ?? [];
        return (uint)ordinal >= (uint)_byValue.Length || _byValue[ordinal];
    }

    /// <summary>GetBytes from the column's value (see <see cref="ByValue"/>): its length without a buffer, else what fits.</summary>
    private static long BytesOfValue(SqliteDataReader reader, int ordinal, long dataOffset, byte[]? buffer, int bufferOffset, int length)
    {
        var bytes = reader.GetFieldValue<byte[]>(ordinal);
        if (buffer is null)
        {
            return bytes.Length;
        }

        ArgumentOutOfRangeException.ThrowIfNegative(bufferOffset); // as Microsoft.Data.Sqlite's read of its stream
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, buffer.Length - bufferOffset);
        ArgumentOutOfRangeException.ThrowIfNegative(dataOffset);
        var count = (int)Math.Min(Math.Max(bytes.Length - dataOffset, 0), length);
        Array.Copy(bytes, Math.Min(dataOffset, bytes.Length), buffer, bufferOffset, count);
        return count;
    }

    /// <summary>GetChars from the column's value as text (see <see cref="ByValue"/>): its length without a buffer, else what fits.</summary>
    private static long CharsOfValue(SqliteDataReader reader, int ordinal, long dataOffset, char[]? buffer, int bufferOffset, int length)
    {
        var text = reader.GetString(ordinal);
        if (buffer is null)
        {
            return text.Length;
        }

        ArgumentOutOfRangeException.ThrowIfNegative(bufferOffset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, buffer.Length - bufferOffset);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(dataOffset, text.Length);
        var from = (int)Math.Max(dataOffset, 0); // Microsoft.Data.Sqlite reads a negative offset from the start
        var count = Math.Min(text.Length - from, length);
        text.CopyTo(from, buffer, bufferOffset, count);
        return count;
    }

    public override bool NextResult()
    {
        NoteStatementsToRun();
        return StepToNextResult(UnitOfWorkAttempt() ?? default);
    }

    /// <summary>
    /// Moves to the next statement's result as <see cref="NextResult"/> does, which runs that statement:
    /// <paramref name="cancellationToken"/> interrupts it and ends its waits for a lock, as in ExecuteReaderAsync.
    /// </summary>
    public override Task<bool> NextResultAsync(CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<bool>(cancellationToken);
        }

        try
        {
            NoteStatementsToRun(); // as NextResult does
            // A closed reader's physical connection may be another renter's by now: NextResult only reports the closing.
            // Otherwise the step runs under the token, and a failure closes this reader (and with CloseConnection the
            // connection) only once the step has handed the physical connection back its own busy handler.
            return Task.FromResult(_closed ? NextResult() : StepToNextResult(cancellationToken));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<bool>(cancellationToken);
        }
        catch (Exception exception)
        {
            return Task.FromException<bool>(exception);
        }
    }

    /// <summary>
    /// Runs the SQLite reader's move to its next statement (see <see cref="Step"/>, with <paramref name="token"/>); if it
    /// fails, the reader's write (if any) is marked failed, and this reader closes with the SQLite reader, which closes
    /// itself then.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// SQLite could not roll back a transaction on the connection (see <see cref="PhysicalConnection.RollbackFailure"/>):
    /// the next statement would run in it, report its result and be lost with it.
    /// </exception>
    private bool StepToNextResult(CancellationToken token)
    {
        if (_closed)
        {
            // Microsoft.Data.Sqlite's error for a closed reader, without asking the SQLite reader, which a Close on another
            // thread (the reader's, or its connection's) may still be closing.
            throw ClosedReader(nameof(NextResult));
        }

        if (physical.RollbackFailure is { } failure)
        {
            throw new InvalidOperationException(
                $"SQLite could not roll back a transaction on this connection ({failure.Message}). The reader's next statement would run in that transaction and be lost with it, so it does not run: close the reader and the connection.",
                failure);
        }

        _byValue = null; // the next result set's columns are others
        _onRow = false;
        var call = BeginStep(out var stop);
        physical.Calls.EnterOnThisThread();
        bool result;
        try
        {
            result = StepToNextStatement(stop, token);
            _result += result ? 1 : 0;
            physical.StoppedByProgressHandler = false; // as RollBackIfWriteStopped does
        }
        catch (Exception exception)
        {
            RenterCalls.ExitOnThisThread();
            _stepFailed = true;
            var endedByClose = EndedByClose(exception, call); // while the call runs: a later Close may be another renter's
            NoteBusyInTransaction(exception); // on the physical connection, and _writeFailed for a Close's Finish: both before the call ends
            RollBackIfWriteStopped(exception, read: false);
            _writeFailed = openWrite;
            if (exception is OperationCanceledException { CancellationToken: { IsCancellationRequested: true } cancelled } && !inner.IsClosed)
            {
                MarkCancelled(cancelled); // cancelled as the step ended (see Executor.RunForReader)
            }

            command.EndRunning(physical); // before Close, which with CloseConnection gives the connection back (see EndRunning)
            if (inner.IsClosed || _cancelled.IsCancellationRequested)
            {
                Close(); // Microsoft.Data.Sqlite closes its reader when a statement fails; this one closes with it (or as a cancelled one)
            }

            if (endedByClose is not null)
            {
                throw endedByClose;
            }

            throw;
        }

        RenterCalls.ExitOnThisThread();
        command.EndRunning(physical);
        return result;
    }

    /// <summary>
    /// NextResult's <see cref="Step"/>; once the transaction begun as SQL the reader was opened in has ended (see
    /// <see cref="TransactionBegunAsSqlEnded"/>), with SQLite refusing writes, as a closing runs the statements then: a
    /// read runs, as it would; a statement that writes does not run outside that transaction.
    /// </summary>
    /// <exception cref="InvalidOperationException">A statement that writes did not run.</exception>
    private bool StepToNextStatement(CancellationToken stop, CancellationToken token)
    {
        if (!TransactionBegunAsSqlEnded())
        {
            return Step(read: false, stop, token);
        }

        var refusedAlready = physical.RefuseWrites();
        try
        {
            return Step(read: false, stop, token);
        }
        catch (SqliteException refused) when (refused.SqliteErrorCode == raw.SQLITE_READONLY)
        {
            throw RunAfterTransactionEnded(refused, closing: false);
        }
        finally
        {
            if (!refusedAlready)
            {
                physical.AllowWrites();
            }
        }
    }

    public override bool Read()
    {
        if (_closed)
        {
            throw ClosedReader(nameof(Read)); // as in StepToNextResult
        }

        var call = BeginStep(out var stop);
        physical.Calls.EnterOnThisThread();
        try
        {
            _onRow = false;
            _onRow = Step(read: true, stop, UnitOfWorkAttempt() ?? default);
            physical.StoppedByProgressHandler = false; // as RollBackIfWriteStopped does
            return _onRow;
        }
        catch (Exception exception)
        {
            _stepFailed = true;
            NoteBusyInTransaction(exception);
            RollBackIfWriteStopped(exception, read: true);
            _writeFailed = openWrite;
            if (EndedByClose(exception, call) is { } ended)
            {
                throw ended;
            }

            throw;
        }
        finally
        {
            RenterCalls.ExitOnThisThread();
            command.EndRunning(physical);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Close();
        }

        base.Dispose(disposing);
    }

    /// <summary>
    /// Notes what the statements a step prepares may do, before it runs (a <c>PRAGMA</c> sets its value as SQLite
    /// prepares it): set busy_timeout (see <see cref="PhysicalConnection.NoteBusyTimeoutMaySet"/>); and counts a step of
    /// a batch the library runs as written that holds a <c>SAVEPOINT</c> for the caller's transaction, as the
    /// executor counts such commands (see <see cref="PhysicalConnection.SavepointCommandsInTransaction"/>).
    /// </summary>
    private void NoteStatementsToRun()
    {
        if (_closed)
        {
            return; // the physical connection may be another renter's by now
        }

        physical.NoteBusyTimeoutMaySet(commandText);
        if (transaction is { IsCompleted: false } && CommandClassifier.SetsSavepoint(commandText)
            && connection.Executor.Classify(physical, commandText) == CommandKind.Unprotected)
        {
            physical.SavepointCommandsInTransaction++;
        }
    }

    /// <summary>
    /// <paramref name="read"/>'s value of the current row (or of its columns), unless this reader is closed. One closed
    /// before the read throws what a step of it throws (<see cref="ClosedReader"/>), without asking the SQLite reader,
    /// which a Close on another thread may still be closing (it would say "No data exists for the row/column", or read
    /// a NULL). One that a Close on another thread (its own, or its connection's) closed while it read does not return
    /// the value: the statement may have been reset under the read (a 0 or NULL for any column) or stepped by the
    /// physical connection's next renter (another renter's row); the read throws the same error. Close marks the reader
    /// closed before it resets the statement, with a full fence between (<see cref="Finish"/>), and SQLite's connection
    /// mutex orders the reset and the read, so a read that saw the reset sees the mark.
    /// </summary>
    /// <param name="read">The SQLite reader's read.</param>
    /// <param name="argument">What <paramref name="read"/> reads (a column's ordinal, say).</param>
    /// <param name="operation">The read's name, for the error of a closed reader.</param>
    /// <exception cref="InvalidOperationException">The reader is closed, or was closed while the value was read.</exception>
    private T Read<TArgument, T>(Func<SqliteDataReader, TArgument, T> read, TArgument argument, [CallerMemberName] string operation = "")
    {
        if (Volatile.Read(ref _closed))
        {
            throw ClosedReader(operation);
        }

        T value;
        try
        {
            value = read(inner, argument);
        }
        catch (Exception exception) when (Volatile.Read(ref _closed))
        {
            throw ClosedReader(operation, exception);
        }

        if (Volatile.Read(ref _closed))
        {
            (value as IDisposable)?.Dispose(); // a stream, whose blob handle would keep a read snapshot
            throw ClosedReader(operation);
        }

        return value;
    }

    /// <summary>
    /// <see cref="Read{TArgument, T}"/> of the column schema, which runs statements on the connection
    /// (Microsoft.Data.Sqlite's GetSchemaTable queries the tables the columns come from, scanning each), as a call of
    /// the connection (see <see cref="ReadAsCall"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">The reader is closed, or the connection was closed before or while it ran.</exception>
    private T ReadSchema<T>(Func<SqliteDataReader, T> read, [CallerMemberName] string operation = "")
        => ReadAsCall(static (reader, read) => read(reader), read, operation);

    /// <summary>
    /// <see cref="Read{TArgument, T}"/> as a call of the connection, as a step is, so that a Close on another thread
    /// ends it and waits for it before the connection goes to its next renter: a read that runs statements (the column
    /// schema) or opens SQLite's blob handle on the row (a column of a table read by <c>GetStream</c>,
    /// <c>GetTextReader</c>, <c>GetBytes</c> or <c>GetChars</c>), which Close would otherwise not see: a stream opened
    /// as Close checked the connection kept a read snapshot for its next renter, and Microsoft.Data.Sqlite's reader,
    /// closed under the blob read, failed Close. Not a run of the command: its <see cref="SaverDbCommand.Cancel"/>
    /// leaves it alone, as it leaves the reader's other reads.
    /// </summary>
    /// <exception cref="InvalidOperationException">The reader is closed, or the connection was closed before or while it ran.</exception>
    private T ReadAsCall<TArgument, T>(Func<SqliteDataReader, TArgument, T> read, TArgument argument, [CallerMemberName] string operation = "")
    {
        if (Volatile.Read(ref _closed))
        {
            throw ClosedReader(operation);
        }

        var call = connection.BeginCall(physical);
        physical.Calls.EnterOnThisThread();
        try
        {
            return Read(read, argument, operation);
        }
        catch (SqliteException exception) when (EndedByClose(exception, call) is { } ended)
        {
            throw ended;
        }
        finally
        {
            RenterCalls.ExitOnThisThread();
            physical.Calls.End();
        }
    }

    /// <summary>
    /// After a step that failed with SQLITE_INTERRUPT: a statement of a writing command in the caller's transaction that
    /// the progress handler stopped itself (beside another active statement) may have been stopped as it returned,
    /// after its changes (the statement a NextResult runs, or, for a Read (<paramref name="read"/>), the one whose last
    /// rows it reads, if that statement writes, an <c>INSERT ... RETURNING</c>), and SQLite kept the transaction with
    /// them: it is rolled back, as SQLite's interrupt of a write does (see
    /// <see cref="PhysicalConnection.RollBackIfStoppedByProgressHandler"/>). Not a write left open for the reader, which
    /// its closing rolls back; and the step itself must have failed so. Clears the note, as a step that succeeds does:
    /// the step may run inside another call's statement.
    /// </summary>
    private void RollBackIfWriteStopped(Exception exception, bool read)
    {
        if (physical.StoppedByProgressHandler && !openWrite
            && (exception as SqliteException ?? exception.InnerException as SqliteException) is { SqliteErrorCode: raw.SQLITE_INTERRUPT }
            && CommandWrites()
            && (!read || connection.Executor.ResultWrites(physical, commandText, _result)))
        {
            physical.RollBackIfStoppedByProgressHandler();
        }

        physical.StoppedByProgressHandler = false; // this step's note, not to be taken for a statement it runs inside
    }

    /// <summary>Whether the reader's command writes (the main database or the temp one), as the executor classified it.</summary>
    private bool CommandWrites() => connection.Executor.Classify(physical, commandText) is CommandKind.Write or CommandKind.TempWrite;

    /// <summary>
    /// Whether a step or the closing of the reader beginning now runs beside another active statement of the renter
    /// (another open reader, or a call it runs inside), for which SQLite would keep <see cref="SaverDbCommand.Cancel"/>'s
    /// interrupt pending, failing that statement's next step with SQLITE_INTERRUPT: Cancel then does not interrupt
    /// SQLite, and the connection's progress handler stops the call on <paramref name="stop"/> instead (see
    /// <see cref="SaverDbCommand.StepStop"/>); none for a reader whose statements run as written (see
    /// <see cref="Executor.StopsOnProgress"/>), which nothing stops then, as nothing stops such a batch's execution.
    /// Taken before the call is marked running, for a Cancel that sees it so.
    /// </summary>
    private bool BesideAnother(out CancellationToken stop)
    {
        var beside = physical.OthersActive(ownReader: true);
        stop = beside && !statementByStatement ? command.StepStop() : default;
        return beside;
    }

    /// <summary>
    /// Runs a step of the SQLite reader, a Read (<paramref name="read"/>) or a move to the next statement: with
    /// <paramref name="token"/> (the caller's of NextResultAsync, or the attempt's of a synchronous unit of work) as
    /// <see cref="Executor.RunForReader"/> has it, and beside another active statement (see
    /// <see cref="BesideAnother"/>) stopped by the progress handler on <paramref name="stop"/> too, which Cancel
    /// cancels (see <see cref="SaverDbCommand.StepStop"/>); otherwise as it is.
    /// </summary>
    private bool Step(bool read, CancellationToken stop, CancellationToken token)
    {
        if (!token.CanBeCanceled && !stop.CanBeCanceled)
        {
            return read ? inner.Read() : inner.NextResult();
        }

        var step = read ? (Func<bool>)inner.Read : inner.NextResult;
        return Executor.RunForReader(physical, commandText, statementByStatement, step, token, stop);
    }

    /// <summary>
    /// Begins a step of the reader as a call of the connection (see <see cref="SaverDbCommand.BeginRunning(SaverDbConnection, PhysicalConnection, bool, int?)"/>),
    /// with no note of an earlier stop by the progress handler (see <see cref="RollBackIfWriteStopped"/>);
    /// <paramref name="stop"/> is the token the handler stops it on beside another active statement (see
    /// <see cref="BesideAnother"/>), none otherwise. A step refused because the connection was closed since (on
    /// another thread) says, for a reader of a write outside a transaction, what became of the write: closing the
    /// connection closes the reader, which commits it, or rolls it back once a step of it failed (one that Close ended, say).
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection was closed since the reader found it open.</exception>
    private CancellationTokenSource BeginStep(out CancellationToken stop)
    {
        var beside = BesideAnother(out stop);
        physical.StoppedByProgressHandler = false;
        try
        {
            return command.BeginRunning(connection, physical, beside);
        }
        catch (InvalidOperationException closed) when (openWrite)
        {
            throw new InvalidOperationException(
                "The connection was closed before this read ran, so it read nothing. " + (Volatile.Read(ref _writeEnded)
                    ? $"Closing the connection closed the reader, which {(_writeCommitted ? "committed" : "rolled back")} the write its command made outside a transaction."
                    : _writeFailed
                        ? "Closing the connection closes the reader, which rolls back the write its command made outside a transaction, as a step of it failed."
                        : "Closing the connection closes the reader, which commits the write its command made outside a transaction, as closing the reader does, unless a statement of it fails."),
                closed);
        }
    }

    /// <summary>
    /// Commits the write left open for this reader, or rolls it back when it failed (see <see cref="Executor.Finish"/>).
    /// A COMMIT that Close's interrupt stopped was rolled back, as any call Close ends, and throws what those throw.
    /// </summary>
    private void FinishWrite(CancellationTokenSource call)
    {
        try
        {
            Executor.Finish(physical, commit: !_writeFailed);
            _writeCommitted = !_writeFailed;
        }
        catch (SqliteException failure) when (EndedByClose(failure, call) is { } ended)
        {
            throw ended;
        }
        finally
        {
            Volatile.Write(ref _writeEnded, true); // after _writeCommitted (see ClosedReader)
        }
    }

    /// <summary>
    /// What a read or step of a closed reader throws: Microsoft.Data.Sqlite's error for it, and, when its connection's
    /// Close (perhaps on another thread) closed it, that, and what became of the write it made outside a transaction,
    /// if any (committed or rolled back; to be committed while that Close still closes it).
    /// </summary>
    /// <param name="operation">The read or step, by its member's name.</param>
    /// <param name="cause">What the SQLite reader threw as it was closed under the read, if anything.</param>
    private InvalidOperationException ClosedReader(string operation, Exception? cause = null)
        => new($"Invalid attempt to call {operation} when reader is closed.{(!_closedByConnection ? string.Empty
            : " Its connection was closed (from another thread, say), which " + (!openWrite ? "closed it."
                : !Volatile.Read(ref _writeEnded) ? "is closing it: closing commits the write its command made outside a transaction, unless a statement of it fails."
                : _writeCommitted ? "closed it and committed the write its command made outside a transaction."
                : "closed it and rolled back the write its command made outside a transaction."))}", cause);

    /// <summary>
    /// What a step that failed with <paramref name="exception"/> throws instead when a Close ended it (whatever error
    /// SQLite gave the statement): the <see cref="InvalidOperationException"/> of any call ended by Close (see
    /// <see cref="RenterCalls.Interrupted"/>). <see langword="null"/> otherwise (Cancel's interrupt stays SQLite's
    /// SQLITE_INTERRUPT), to rethrow it. A step
    /// Close ended marks the reader: closing it then runs none of the statements not reached (see <see cref="Finish"/>).
    /// </summary>
    private InvalidOperationException? EndedByClose(Exception exception, CancellationTokenSource call)
    {
        var ended = exception is SqliteException interrupted
            ? physical.Calls.Interrupted(interrupted, call, call.Token, CancellationToken.None, statementByStatement) as InvalidOperationException
            : null;
        _endedByClose |= ended is not null;
        return ended;
    }

    /// <summary>
    /// The token a retry strategy gave the attempt of a synchronous unit of work running on the connection (see
    /// <see cref="PhysicalConnection.UnitOfWorkAttempt"/>), which the reader's steps end with as its command's did; none
    /// for a closed reader, whose physical connection may be another renter's by now.
    /// </summary>
    private CancellationToken? UnitOfWorkAttempt()
        => !_closed && physical.UnitOfWorkAttempt is { CanBeCanceled: true } attempt ? attempt : null;
}
