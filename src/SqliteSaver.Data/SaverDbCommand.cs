using System.Data;
using System.Data.Common;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Pooling;
using SqliteSaver.Data.Resilience;

namespace SqliteSaver.Data;

/// <summary>
/// A SQL statement (or several, separated by semicolons) to run on a <see cref="SaverDbConnection"/>. Parameters are
/// <see cref="SqliteParameter"/>s.
/// </summary>
/// <remarks>
/// The command runs through a Microsoft.Data.Sqlite command that its physical connection keeps prepared by text (see
/// Statement Cache Size), so a new <see cref="SaverDbCommand"/> with text run before on the same physical connection
/// skips SQLite's prepare step.
/// </remarks>
public sealed class SaverDbCommand : DbCommand
{
    // Holds what the caller sets (text, parameters); it never runs. The command that runs is rented for the text from
    // the physical connection's statement cache for each execution and returned when it ends, or when its reader
    // closes, so that a command never disposed holds nothing of the connection's; one the cache cannot keep stays
    // with this command for its next execution, until it is disposed or its connection closes (see Done).
    private readonly SqliteCommand _definition = new();

    private SaverDbConnection? _connection;
    private SaverDbTransaction? _transaction;
    private int? _commandTimeout;
    private PhysicalConnection? _bound; // while an execution, a reader or a statement of this command uses it
    private SaverDbConnection? _trackedBy; // the connection whose Close unbinds this command (see Done)
    private int _running; // calls of this command, or of its reader, running statements now (see Cancel)
    private int _cancelling; // Cancel calls under way (see EndRunning)
    private int _waiting; // asynchronous executions waiting for the connection's earlier one (see AfterEarlierExecution)
    private CancellationTokenSource? _waitCancellation; // of such a wait, for Cancel
    private bool _disposed; // since its last execution began: a statement the cache cannot keep is then not kept (see Done)
    private Lock? _cancel; // held by Cancel from its look at _running to its interrupt; made by the first Cancel
    private CancellationTokenSource? _callCancellation; // of the call running (see RenterCalls.Begin), for Cancel

    // Whether the call running is an execution made beside another open reader or inside another call's statement
    // (see PhysicalConnection.OthersActive), whose statement a progress handler stops on the call's token (see
    // StatementCancellation), so that Cancel does not interrupt SQLite: decided before the call is marked running, and
    // kept until the next, so that a Cancel as it begins or ends reads it as it is.
    private bool _stoppedOnProgress;

    // The token a progress handler stops a step of the command's reader on beside another active statement, which
    // Cancel cancels during that step (see StepStop).
    private CancellationTokenSource? _stepStop;
    private OwnedSqliteCommand? _prepared; // rented from _bound's statement cache
    private OwnedSqliteCommand? _returned; // the one last given back to a cache, to rent again without a lookup
    private PooledDataReader? _reader;

    /// <summary>Creates a command with no text and no connection.</summary>
    public SaverDbCommand()
    {
    }

    /// <summary>Creates a command with text, and optionally a connection and transaction.</summary>
    /// <param name="commandText">The SQL to run.</param>
    /// <param name="connection">The connection to run it on.</param>
    /// <param name="transaction">The transaction to run it in.</param>
    public SaverDbCommand(string? commandText, SaverDbConnection? connection = null, SaverDbTransaction? transaction = null)
    {
        CommandText = commandText;
        _connection = connection;
        _transaction = transaction;
    }

    /// <summary>The SQL to run.</summary>
    /// <exception cref="InvalidOperationException">A reader of this command is open, or an execution of it still runs, and the text changes (setting the same text changes nothing and is allowed).</exception>
    /// <exception cref="ArgumentException">The text holds a NUL character.</exception>
    [AllowNull]
    public override string CommandText
    {
        get => _definition.CommandText;
        set
        {
            if (value != _definition.CommandText)
            {
                if (value?.IndexOf('\0', StringComparison.Ordinal) is >= 0 and var nul)
                {
                    // SQLite reads a text up to its first NUL, and Microsoft.Data.Sqlite then loops without end on the
                    // rest: inside a write's transaction, holding the write lock and the process's write gate.
                    throw new ArgumentException(
                        $"CommandText holds a NUL character at index {nul}, where SQLite would take the text to end (Microsoft.Data.Sqlite then never returns): remove it (the padding of a fixed-size buffer, say).",
                        nameof(value));
                }

                ThrowIfInUse(nameof(CommandText));
                ReturnPrepared(_bound);
                _definition.CommandText = value;
            }
        }
    }

    /// <summary>
    /// Seconds the command may wait for locks in all before failing with SQLITE_BUSY: in the process's write queue, for
    /// a lock another connection holds (in attempts of Busy Timeout each, Retry of them at most) and between attempts.
    /// A statement SQLite is already running is not cut short. Defaults to the connection string's Default Timeout; 0
    /// means no limit but Busy Timeout and Retry.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    public override int CommandTimeout
    {
        get => _commandTimeout ?? _connection?.DefaultTimeout ?? 30;
        set
        {
            if (value < 0)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "CommandTimeout must be a whole number of seconds, 0 (no limit but Busy Timeout and Retry) or more.");
            }

            _commandTimeout = value;
        }
    }

    /// <summary>Only <see cref="CommandType.Text"/> is supported.</summary>
    /// <exception cref="ArgumentException">Another command type was set.</exception>
    public override CommandType CommandType
    {
        get => _definition.CommandType;
        set => _definition.CommandType = value;
    }

    /// <inheritdoc />
    public override bool DesignTimeVisible { get; set; }

    /// <inheritdoc />
    public override UpdateRowSource UpdatedRowSource
    {
        get => _definition.UpdatedRowSource;
        set => _definition.UpdatedRowSource = value;
    }

    /// <summary>
    /// The connection the command runs on. It cannot change while a reader of the command is open or an execution of
    /// it still runs (an asynchronous one not awaited yet).
    /// </summary>
    public new SaverDbConnection? Connection
    {
        get => _connection;
        set => SetConnection(value);
    }

    /// <summary>The command's parameters.</summary>
    public new SqliteParameterCollection Parameters => _definition.Parameters;

    /// <summary>The transaction the command runs in. Commands on a connection with an open transaction always run in it.</summary>
    public new SaverDbTransaction? Transaction
    {
        get => _transaction;
        set => _transaction = value;
    }

    /// <inheritdoc />
    protected override DbConnection? DbConnection
    {
        get => _connection;
        set => SetConnection(value switch
        {
            null => null,
            SaverDbConnection connection => connection,
            _ => throw new ArgumentException(
                $"A SaverDbCommand runs on a SaverDbConnection, not on a {value.GetType().Name}.", nameof(value)),
        });
    }

    /// <inheritdoc />
    protected override DbParameterCollection DbParameterCollection => _definition.Parameters;

    /// <inheritdoc />
    protected override DbTransaction? DbTransaction
    {
        get => _transaction;
        set => _transaction = value switch
        {
            null => null,
            SaverDbTransaction transaction => transaction,
            _ => throw new ArgumentException(
                $"A SaverDbCommand runs in a SaverDbTransaction, not in a {value.GetType().Name}.", nameof(value)),
        };
    }

    /// <summary>Creates a new <see cref="SqliteParameter"/>.</summary>
    /// <returns>The parameter.</returns>
    public new SqliteParameter CreateParameter() => _definition.CreateParameter();

    /// <summary>
    /// Runs the command and returns the number of rows inserted, updated or deleted. Outside a transaction a write
    /// waits its turn at the write gate and runs in a transaction of its own, so that after SQLITE_BUSY it is
    /// rolled back whole and run again; inside a transaction nothing is retried.
    /// </summary>
    /// <returns>The rows changed by the command's statements.</returns>
    /// <exception cref="InvalidOperationException">The command has no open connection, a reader of it is open or an execution of it still runs, or its transaction belongs elsewhere or has completed, or SQLite has already ended the connection's transaction (rolled it back after an error), or a write failed and SQLite could not roll its transaction back (this command's, or an earlier one on the connection).</exception>
    /// <exception cref="SqliteException">SQLite reported an error, or SQLITE_BUSY / SQLITE_LOCKED outlasted every retry.</exception>
    public override int ExecuteNonQuery()
        => Run(static (command, _) => NonQuery(command), CommandBehavior.Default, nameof(ExecuteNonQuery));

    /// <summary>Runs the command and returns the first column of the first row, or <see langword="null"/>. Retried as <see cref="ExecuteNonQuery"/> is.</summary>
    /// <returns>The value, or <see langword="null"/> when there is no row.</returns>
    /// <exception cref="InvalidOperationException">The command has no open connection, a reader of it is open or an execution of it still runs, or its transaction belongs elsewhere or has completed, or SQLite has already ended the connection's transaction (rolled it back after an error), or a write failed and SQLite could not roll its transaction back (this command's, or an earlier one on the connection).</exception>
    /// <exception cref="SqliteException">SQLite reported an error, or SQLITE_BUSY / SQLITE_LOCKED outlasted every retry.</exception>
    public override object? ExecuteScalar()
        => Run(static (command, _) => Scalar(command), CommandBehavior.Default, nameof(ExecuteScalar));

    /// <summary>Runs the command as <see cref="ExecuteNonQuery"/> does, waiting at the write gate and between retries without blocking a thread.</summary>
    /// <param name="cancellationToken">Cancels the waits, SQLite's own waits for a lock included, and interrupts the running statement.</param>
    /// <returns>The rows changed by the command's statements.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    /// <exception cref="InvalidOperationException">The command has no open connection, a reader of it is open or an execution of it still runs, or its transaction belongs elsewhere or has completed, or SQLite has already ended the connection's transaction (rolled it back after an error), or a write failed and SQLite could not roll its transaction back (this command's, or an earlier one on the connection).</exception>
    /// <exception cref="SqliteException">SQLite reported an error, or SQLITE_BUSY / SQLITE_LOCKED outlasted every retry.</exception>
    public override Task<int> ExecuteNonQueryAsync(CancellationToken cancellationToken)
        => cancellationToken.IsCancellationRequested
            ? Task.FromCanceled<int>(cancellationToken) // a TaskCanceledException to its awaiter, as Microsoft.Data.Sqlite's
            : InFlight(RunAsync(static (command, _) => NonQuery(command), CommandBehavior.Default, nameof(ExecuteNonQuery), cancellationToken));

    /// <summary>Runs the command as <see cref="ExecuteScalar"/> does, waiting at the write gate and between retries without blocking a thread.</summary>
    /// <param name="cancellationToken">Cancels the waits, SQLite's own waits for a lock included, and interrupts the running statement.</param>
    /// <returns>The value, or <see langword="null"/> when there is no row.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    /// <exception cref="InvalidOperationException">The command has no open connection, a reader of it is open or an execution of it still runs, or its transaction belongs elsewhere or has completed, or SQLite has already ended the connection's transaction (rolled it back after an error), or a write failed and SQLite could not roll its transaction back (this command's, or an earlier one on the connection).</exception>
    /// <exception cref="SqliteException">SQLite reported an error, or SQLITE_BUSY / SQLITE_LOCKED outlasted every retry.</exception>
    public override Task<object?> ExecuteScalarAsync(CancellationToken cancellationToken)
        => cancellationToken.IsCancellationRequested
            ? Task.FromCanceled<object?>(cancellationToken)
            : InFlight(RunAsync(static (command, _) => Scalar(command), CommandBehavior.Default, nameof(ExecuteScalar), cancellationToken));

    /// <summary>
    /// Prepares the command's statements on the open connection. Commands are prepared on their first execution anyway,
    /// and kept prepared on the physical connection for later commands with the same text (see Statement Cache Size).
    /// </summary>
    /// <exception cref="InvalidOperationException">The command has no open connection, a reader of it is open or an execution of it still runs, SQLite has already ended the connection's transaction (rolled it back after an error), or the connection was closed from another thread as Prepare began.</exception>
    /// <exception cref="SqliteException">SQLite could not prepare a statement.</exception>
    public override void Prepare()
    {
        // A call of the renter, as an execution is: SQLite sets a flag PRAGMA as it prepares it, which must not reach
        // the physical connection's next renter after a Close from another thread.
        var (connection, physical, command, _) = BeginExecution(nameof(Prepare), CommandBehavior.Default);
        try
        {
            ThrowIfTransactionEnded(connection, physical, nameof(Prepare));

            physical.NotePragmas(command); // SQLite sets a PRAGMA as it prepares it
            command.Prepare();
        }
        finally
        {
            EndCall(connection, physical); // the statement stays prepared in the cache, for the next execution
        }
    }

    /// <summary>
    /// Interrupts the command while one of its calls (an Execute method, or its reader's <c>Read</c>,
    /// <c>NextResult</c> or closing, which runs the statements not reached) runs statements or waits to, from another
    /// thread (<c>sqlite3_interrupt</c>): that call throws a <see cref="SqliteException"/> with code 9 (SQLITE_INTERRUPT).
    /// SQLite's interrupt is the connection's, and SQLite keeps it pending while another reader open on it is on a row,
    /// failing that reader's next <c>Read</c> and every statement begun until it closes: so an execution, or a
    /// <c>Read</c>, <c>NextResult</c> or closing of the command's reader, made beside another open reader is stopped by
    /// a progress handler instead, which stops a statement within 100 of SQLite's steps while the call runs (a call
    /// that ends first is not cancelled); one of a batch that runs as written (it holds a <c>BEGIN</c>,
    /// <c>SAVEPOINT</c>, <c>PRAGMA</c> ...), which the handler must not stop, is not stopped there and runs to its end.
    /// A reader's closing that Cancel stops (either way) keeps the error from the caller's transaction object, which
    /// then refuses to commit, as closing ignores the errors of the statements not reached; in a transaction begun as
    /// SQL (a <c>BEGIN</c> sent as a command), which nothing else would refuse, the reader's Close throws it (beside
    /// another open reader the transaction is rolled back too, as the handler may have stopped a write after its
    /// changes); a write outside a transaction is rolled back, and its reader's Close throws the error.
    /// Otherwise it does nothing, as when an open reader of the command is between reads (Dapper cancels an unbuffered
    /// query it stops early), so that other readers on the connection read on. To cancel an asynchronous call, cancel
    /// its token.
    /// </summary>
    public override void Cancel()
    {
        var cancel = _cancel ?? Interlocked.CompareExchange(ref _cancel, new Lock(), null) ?? _cancel;
        Interlocked.Increment(ref _cancelling);
        try
        {
            lock (cancel)
            {
                if (Volatile.Read(ref _running) > 0 && _bound is { Handle.IsClosed: false } bound && _callCancellation is { } call)
                {
                    call.Cancel(); // ends the call's waits: for the write gate, BEGIN IMMEDIATE's tries, between retries; an async call's in SQLite's busy handler
                    if (Volatile.Read(ref _stoppedOnProgress))
                    {
                        Volatile.Read(ref _stepStop)?.Cancel(); // a step or the closing of the reader's, if that is the call
                    }

                    // Ending a wait may have run the code after the caller's await of the call here, on this thread, where
                    // the lock does not hold it back (EndRunning waits for it on others): if that code ended the call,
                    // and gave the connection back (its next renter's statement may run on it now) or closed it, no
                    // interrupt; nor for a call of the command begun since, which the cancelled token is not for.
                    // Unless a progress handler stops the statement on the cancelled token: SQLite's interrupt would stay
                    // pending for another reader open on the connection (see StatementCancellation).
                    if (Volatile.Read(ref _running) > 0 && ReferenceEquals(_callCancellation, call) && !bound.Handle.IsClosed && !Volatile.Read(ref _stoppedOnProgress))
                    {
                        SQLitePCL.raw.sqlite3_interrupt(bound.Handle);
                    }
                }

                try
                {
                    Volatile.Read(ref _waitCancellation)?.Cancel(); // a wait for the connection's earlier execution
                }
                catch (ObjectDisposedException)
                {
                    // That wait has just ended.
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref _cancelling);
        }
    }

    /// <summary>
    /// The token a progress handler stops a step or the closing of the command's reader on beside another active
    /// statement of the renter (see <see cref="PooledDataReader"/>), which <see cref="Cancel"/> cancels during that
    /// call: the command's own, not the call's, whose source the renter's calls running at once share, so that the
    /// Cancel of a command run inside the step (by a function SQLite runs in it) does not stop the step too. A fresh one
    /// once cancelled. Taken before the call is marked running (see <see cref="BeginRunning(SaverDbConnection, PhysicalConnection, bool, int?)"/>).
    /// </summary>
    internal CancellationToken StepStop()
    {
        var stop = _stepStop;
        if (stop is null || stop.IsCancellationRequested)
        {
            stop = new CancellationTokenSource(); // the one cancelled is left to the collector: a Cancel may still hold it
            Volatile.Write(ref _stepStop, stop);
        }

        return stop.Token;
    }

    /// <summary>
    /// Marks a call of this command or of its reader as running statements on <paramref name="physical"/>, for
    /// <see cref="Cancel"/> until <see cref="EndRunning()"/>, and as a call of the renter (see <see cref="RenterCalls"/>),
    /// which the connection's Close waits for, until <see cref="RenterCalls.End"/>: after the call's last use of the
    /// connection (giving back its statement, tracking its reader), before the call may close the connection itself. An
    /// execution that waited for an earlier one passes the rental it waited in (see <see cref="SaverDbConnection.BeginCall"/>).
    /// <paramref name="stoppedOnProgress"/>: beside another active statement of the renter, a progress handler stops the
    /// call's statement on the call's token rather than Cancel's interrupt (see <see cref="_stoppedOnProgress"/>).
    /// </summary>
    /// <returns>The source of the call's token (see <see cref="RenterCalls.Begin"/>).</returns>
    /// <exception cref="InvalidOperationException"><paramref name="connection"/> was closed since the call found it open (see <see cref="SaverDbConnection.BeginCall"/>).</exception>
    internal CancellationTokenSource BeginRunning(SaverDbConnection connection, PhysicalConnection physical, bool stoppedOnProgress, int? waitedIn = null)
        => BeginRunning(connection.BeginCall(physical, waitedIn), stoppedOnProgress);

    /// <summary>
    /// <see cref="BeginRunning(SaverDbConnection, PhysicalConnection, bool, int?)"/> for a call begun already: a reader's closing,
    /// begun by the reader or by the connection's Close (through <see cref="Unbind"/>).
    /// </summary>
    internal CancellationTokenSource BeginRunning(CancellationTokenSource cancellation, bool stoppedOnProgress = false)
    {
        Volatile.Write(ref _stoppedOnProgress, stoppedOnProgress);
        _callCancellation = cancellation; // before _running rises: a Cancel that sees it running cancels this one
        Interlocked.Increment(ref _running);
        return cancellation;
    }

    /// <summary>
    /// Ends what <see cref="BeginRunning(SaverDbConnection, PhysicalConnection, bool, int?)"/> began, once no <see cref="Cancel"/>
    /// that saw the call running is still to interrupt: otherwise its interrupt could land after the connection went
    /// back to the pool, on the next renter's statement. Costs a look at a counter unless a Cancel is under way.
    /// </summary>
    internal void EndRunning()
    {
        Interlocked.Decrement(ref _running);
        if (Volatile.Read(ref _cancelling) > 0)
        {
            lock (_cancel!) // made before _cancelling was raised
            {
                // A Cancel that read _running before the decrement has interrupted by now; later ones see it.
            }
        }
    }

    /// <summary><see cref="EndRunning()"/>, and the call on <paramref name="physical"/> ends, for a reader's step, which uses nothing of the connection's after it.</summary>
    internal void EndRunning(PhysicalConnection physical)
    {
        EndRunning();
        physical.Calls.End();
    }

    /// <inheritdoc />
    protected override DbParameter CreateDbParameter() => CreateParameter();

    /// <inheritdoc />
    /// <remarks>
    /// With <see cref="CommandBehavior.CloseConnection"/> the connection closes when the reader closes, or when the
    /// command fails and there is no reader; but not when it is refused, or fails waiting for the connection's earlier
    /// asynchronous execution, which closing would end.
    /// </remarks>
    protected override DbDataReader ExecuteDbDataReader(CommandBehavior behavior)
    {
        var deadline = CommandDeadline.Start(CommandTimeout);
        var waitedIn = WaitForEarlierExecution(nameof(ExecuteReader), deadline);
        var (connection, physical, command, call) = BeginExecution(nameof(ExecuteReader), behavior, waitedIn);
        (SqliteDataReader Reader, bool Open) result;
        try
        {
            result = connection.Executor.Execute(
                physical, command, deadline, ExecuteInnerReader, behavior, keepOpen: true, connection.Transaction, nameof(ExecuteReader), call.Token);
        }
        catch (Exception failure)
        {
            var ended = Ended(physical, command, failure, call, CancellationToken.None);
            ReaderFailed(connection, physical, behavior);
            if (ended is not null)
            {
                throw ended;
            }

            throw;
        }

        return Opened(connection, physical, command, result, behavior, call, CancellationToken.None);
    }

    /// <inheritdoc />
    /// <remarks>As for <see cref="ExecuteDbDataReader"/>.</remarks>
    protected override Task<DbDataReader> ExecuteDbDataReaderAsync(CommandBehavior behavior, CancellationToken cancellationToken)
        => InFlight(ExecuteReaderCoreAsync(behavior, cancellationToken));

    private async Task<DbDataReader> ExecuteReaderCoreAsync(CommandBehavior behavior, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested(); // as Microsoft.Data.Sqlite: nothing runs, and CloseConnection closes nothing
        var deadline = CommandDeadline.Start(CommandTimeout);
        var waitedIn = await AfterEarlierExecution(nameof(ExecuteReader), deadline, cancellationToken).ConfigureAwait(false);
        var (connection, physical, command, call) = BeginExecution(nameof(ExecuteReader), behavior, waitedIn);
        var linked = RenterCalls.Link(call, cancellationToken, out var token);
        (SqliteDataReader Reader, bool Open) result;
        try
        {
            SaverDbConnection.ExecutionOn.Value = connection;
            result = await connection.Executor
                .ExecuteAsync(
                    physical, command, deadline, ExecuteInnerReader, behavior, keepOpen: true, connection.Transaction, nameof(ExecuteReader), token)
                .ConfigureAwait(false);
        }
        catch (Exception failure)
        {
            var ended = Ended(physical, command, failure, call, cancellationToken);
            linked?.Dispose();
            ReaderFailed(connection, physical, behavior);
            if (ended is not null)
            {
                throw ended;
            }

            throw;
        }

        linked?.Dispose();
        return Opened(connection, physical, command, result, behavior, call, cancellationToken);
    }

    /// <summary>
    /// The reader of an execution that ran: wrapped, then the execution's call ends. One whose caller's token,
    /// <see cref="Cancel"/>, or the token of the synchronous unit of work's attempt it ran in (see
    /// <see cref="PhysicalConnection.UnitOfWorkAttempt"/>) cancelled the call as it ended, after the statement's first
    /// row, is closed as a cancelled one and the execution throws what a cancelled one throws (see
    /// <see cref="PooledDataReader.MarkCancelled"/>): the interrupt came after the row, and SQLite keeps it pending while
    /// the statement is active, so that every other statement on the connection would fail with it. It is marked before
    /// the call ends, as a Close on another thread waiting for the call may then close it. Not a call Close ended: Close
    /// closes its readers.
    /// </summary>
    private PooledDataReader Opened(
        SaverDbConnection connection,
        PhysicalConnection physical,
        OwnedSqliteCommand command,
        (SqliteDataReader Reader, bool Open) result,
        CommandBehavior behavior,
        CancellationTokenSource call,
        CancellationToken caller)
    {
        PooledDataReader reader;
        Exception? cancelled = null;
        try
        {
            reader = WrapReader(connection, physical, command, result.Reader, result.Open, behavior);
            if (caller.IsCancellationRequested)
            {
                reader.MarkCancelled(caller);
                cancelled = new OperationCanceledException(caller);
            }
            else if (call.IsCancellationRequested)
            {
                if (!physical.Calls.ClosedDuring(call))
                {
                    reader.MarkCancelled(call.Token);
                    cancelled = RenterCalls.CancelledByCancel();
                }
            }
            else if (physical.UnitOfWorkAttempt is { IsCancellationRequested: true } attempt)
            {
                reader.MarkCancelled(attempt);
                cancelled = new OperationCanceledException(attempt);
            }
        }
        finally
        {
            EndRunning(physical); // after the reader holds the statement: a Dispose that sees no call running closes it
        }

        if (cancelled is not null)
        {
            reader.Close();
            throw cancelled;
        }

        return reader;
    }

    /// <summary>
    /// <see cref="Done"/>, then the execution's call ends (<see cref="EndRunning(PhysicalConnection)"/>): not before, as a
    /// Close waiting for the call would race Done, and a Dispose on another thread that sees no call running gives the
    /// statement back itself.
    /// </summary>
    private void EndCall(SaverDbConnection connection, PhysicalConnection physical)
    {
        try
        {
            Done(connection, physical);
        }
        finally
        {
            EndRunning(physical); // before the connection may go back to the pool, or close with CloseConnection
        }
    }

    /// <summary>
    /// What an execution throws for <paramref name="failure"/> (see <see cref="RenterCalls.Ended"/>): for SQLITE_INTERRUPT
    /// too, as Close interrupts before its thread cancels the call's token. <see langword="null"/> to rethrow it as it is.
    /// </summary>
    private static Exception? Ended(PhysicalConnection physical, OwnedSqliteCommand command, Exception failure, CancellationTokenSource call, CancellationToken caller)
    {
        var statementByStatement = command.RunsStatementByStatement;
        var ended = failure switch
        {
            OperationCanceledException cancelled => physical.Calls.Ended(cancelled, call, caller, statementByStatement),
            SqliteException interrupted => physical.Calls.Interrupted(interrupted, call, call.Token, caller, statementByStatement), // Close's, before a linked token's cancellation
            _ => null,
        };
        return ReferenceEquals(ended, failure) ? null : ended;
    }

    /// <summary>
    /// After an ExecuteReader that failed, with no reader to close: the execution is done, the call ends, and with
    /// <see cref="CommandBehavior.CloseConnection"/> the connection closes (Microsoft.Data.Sqlite's reader closes it as
    /// it fails), unless a Close ended the call (see <see cref="SaverDbConnection.TakeForClosing"/>).
    /// </summary>
    private void ReaderFailed(SaverDbConnection connection, PhysicalConnection physical, CommandBehavior behavior)
    {
        var closing = false;
        try
        {
            closing = behavior.HasFlag(CommandBehavior.CloseConnection) && connection.TakeForClosing(physical);
        }
        finally
        {
            try
            {
                EndCall(connection, physical);
            }
            finally
            {
                if (closing)
                {
                    connection.CloseTakenHere(physical); // taken: nothing else closes it
                }
            }
        }
    }

    /// <summary>
    /// Before <paramref name="transaction"/> ends, runs the statements a reader of this command opened in it has not
    /// reached (see <see cref="PooledDataReader.FinishBeforeTransactionEnds"/>).
    /// </summary>
    /// <returns>Before a rollback, the error of a statement that failed, if any.</returns>
    /// <exception cref="SqliteException">With <paramref name="commit"/>, a statement failed.</exception>
    internal SqliteException? FinishReaderBefore(SaverDbTransaction transaction, bool commit)
        => HasOpenReaderOf(transaction) ? _reader!.FinishBeforeTransactionEnds(commit) : null;

    /// <summary>See <see cref="PooledDataReader.MayRunAfterSavepointSetAsSql"/>, for an open reader of this command in <paramref name="transaction"/>.</summary>
    internal bool ReaderMayRunAfterSavepointSetAsSql(SaverDbTransaction transaction)
        => HasOpenReaderOf(transaction) && _reader!.MayRunAfterSavepointSetAsSql();

    /// <summary>Whether a reader of this command is open, for the connection: no Close has closed it yet (see <see cref="PooledDataReader.Unfinished"/>).</summary>
    internal bool HasOpenReader => _reader is { Unfinished: true };

    /// <summary>Called by this command's reader once it has closed: the execution is done (see <see cref="Done"/>).</summary>
    internal void ReaderClosed(SaverDbConnection connection, PhysicalConnection physical)
    {
        if (ReferenceEquals(_bound, physical) && !HasOpenReader)
        {
            Done(connection, physical);
        }
    }

    /// <summary>
    /// Whether <paramref name="connection"/> may stop tracking the command: it holds nothing of that connection's
    /// (no open reader, no statement), or it has moved to another connection.
    /// </summary>
    internal bool Untrack(SaverDbConnection connection)
    {
        if (!ReferenceEquals(_trackedBy, connection))
        {
            return true;
        }

        if (HasOpenReader || _prepared is not null)
        {
            return false;
        }

        _trackedBy = null;
        return true;
    }

    /// <summary>Whether a reader this command opened in <paramref name="transaction"/> is open, as <see cref="HasOpenReader"/> says.</summary>
    internal bool HasOpenReaderOf(SaverDbTransaction transaction)
        => _reader is { Unfinished: true } reader && ReferenceEquals(reader.Transaction, transaction);

    /// <summary>
    /// Detaches the command from a physical connection going back to the pool, on the thread that still owns it:
    /// its reader is closed and its prepared command given back to the connection's cache, so that nothing touches
    /// the physical connection once another renter has it.
    /// </summary>
    internal void Unbind(SaverDbConnection connection, PhysicalConnection physical)
    {
        if (ReferenceEquals(_trackedBy, connection))
        {
            _trackedBy = null;
        }

        if (!ReferenceEquals(_bound, physical))
        {
            return; // a reader opened since the command moved to another connection is that one's
        }

        _bound = null;
        try
        {
            _reader?.CloseForConnection();
        }
        finally
        {
            _reader = null;
            TakeAndReturnPrepared(physical);
        }
    }

    /// <summary>
    /// Closes the command's reader (committing a write left open for it) and gives its prepared statement back. As with
    /// Microsoft.Data.Sqlite, the command stays usable: executed again, it prepares its text again. An asynchronous
    /// execution still running (the command disposed before its task was awaited) runs on with its statement and
    /// parameters, and gives the statement back as it ends.
    /// </summary>
    /// <param name="disposing">Whether called from <see cref="IDisposable.Dispose"/>.</param>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            try
            {
                _reader?.Dispose(); // finishes a write left open for the reader
            }
            finally
            {
                _reader = null;
                Volatile.Write(ref _disposed, true);
                if (Volatile.Read(ref _running) == 0)
                {
                    TakeAndReturnPrepared(_bound);
                    _bound = null; // the connection may drop a disposed command unbound: Cancel must not reach its next renter
                }

                // Otherwise an execution still runs (an asynchronous one disposed before it is awaited, as Dapper's
                // pipelined multi-exec does): it gives its statement back as it ends, before its call does (EndCall),
                // and one the cache cannot keep is finalized then.
                _returned = null;
                _definition.Dispose();
            }
        }

        base.Dispose(disposing);
    }

    /// <summary>
    /// <see cref="SqliteCommand.ExecuteNonQuery"/>, but an error in a statement after one that returned rows is thrown:
    /// Microsoft.Data.Sqlite runs those statements as its reader is disposed, and ignores their errors there.
    /// </summary>
    private static int NonQuery(SqliteCommand command)
    {
        using var reader = command.ExecuteReader();
        while (reader.NextResult())
        {
        }

        return reader.RecordsAffected;
    }

    /// <summary><see cref="SqliteCommand.ExecuteScalar"/>, throwing the errors of later statements as <see cref="NonQuery"/> does.</summary>
    private static object? Scalar(SqliteCommand command)
    {
        using var reader = command.ExecuteReader();
        var value = reader.Read() ? reader.GetValue(0) : null;
        while (reader.NextResult())
        {
        }

        return value;
    }

    // The physical connection belongs to the pool: CloseConnection must close the SaverDbConnection instead.
    private static SqliteDataReader ExecuteInnerReader(SqliteCommand command, CommandBehavior behavior)
        => command.ExecuteReader(behavior & ~CommandBehavior.CloseConnection);

    /// <summary>Wraps the SQLite reader, and has the connection track this command while it is open (see <see cref="Unbind"/>).</summary>
    private PooledDataReader WrapReader(
        SaverDbConnection connection, PhysicalConnection physical, OwnedSqliteCommand command, SqliteDataReader reader, bool open, CommandBehavior behavior)
    {
        _reader = new PooledDataReader(
            reader,
            this,
            connection,
            physical,
            command.CommandText,
            behavior.HasFlag(CommandBehavior.CloseConnection),
            open,
            command.RunsStatementByStatement,
            connection.Transaction);
        physical.Activated();
        TrackBy(connection);
        return _reader;
    }

    private T Run<T>(Func<SqliteCommand, CommandBehavior, T> run, CommandBehavior behavior, string operation)
    {
        var deadline = CommandDeadline.Start(CommandTimeout);
        var waitedIn = WaitForEarlierExecution(operation, deadline);
        var (connection, physical, command, call) = BeginExecution(operation, behavior, waitedIn);
        try
        {
            return connection.Executor.Execute(
                physical, command, deadline, run, behavior, keepOpen: false, connection.Transaction, operation, call.Token).Result;
        }
        catch (Exception failure) when (Ended(physical, command, failure, call, CancellationToken.None) is { } ended)
        {
            throw ended;
        }
        finally
        {
            EndCall(connection, physical);
            GC.KeepAlive(connection); // its finalizer would hand the physical connection back to the pool mid-command
        }
    }

    private async Task<T> RunAsync<T>(Func<SqliteCommand, CommandBehavior, T> run, CommandBehavior behavior, string operation, CancellationToken cancellationToken)
    {
        var deadline = CommandDeadline.Start(CommandTimeout);
        var waitedIn = await AfterEarlierExecution(operation, deadline, cancellationToken).ConfigureAwait(false);
        var (connection, physical, command, call) = BeginExecution(operation, behavior, waitedIn);
        var linked = RenterCalls.Link(call, cancellationToken, out var token);
        try
        {
            SaverDbConnection.ExecutionOn.Value = connection;
            var (result, _) = await connection.Executor
                .ExecuteAsync(physical, command, deadline, run, behavior, keepOpen: false, connection.Transaction, operation, token)
                .ConfigureAwait(false);
            return result;
        }
        catch (Exception failure) when (Ended(physical, command, failure, call, cancellationToken) is { } ended)
        {
            throw ended;
        }
        finally
        {
            linked?.Dispose();
            EndCall(connection, physical);
            GC.KeepAlive(connection); // as in Run
        }
    }

    /// <summary>Remembers <paramref name="execution"/> on its connection while it runs (see <see cref="SaverDbConnection.InFlight"/>).</summary>
    private Task<T> InFlight<T>(Task<T> execution)
    {
        if (!execution.IsCompleted)
        {
            _connection?.InFlight(execution);
        }

        return execution;
    }

    /// <summary>
    /// <see cref="SaverDbConnection.EarlierAsyncExecution"/>, for an execution of this command; one of this command's
    /// own is refused.
    /// </summary>
    /// <exception cref="InvalidOperationException">That execution is this command's (see <see cref="ThrowIfInUse"/>).</exception>
    private Task? EarlierExecution(string operation)
    {
        if (_connection?.EarlierAsyncExecution() is { } earlier)
        {
            ThrowIfInUse(operation);
            return earlier;
        }

        return null;
    }

    /// <summary>Blocks until <see cref="EarlierExecution"/> has ended, as <see cref="AfterEarlierExecution"/> waits.</summary>
    /// <returns>The rental it waited in, or <see langword="null"/> when it did not wait (see <see cref="After"/>).</returns>
    /// <exception cref="InvalidOperationException">That execution is this command's.</exception>
    /// <exception cref="SqliteException">SQLITE_INTERRUPT after Cancel; SQLITE_BUSY when CommandTimeout ran out.</exception>
    private int? WaitForEarlierExecution(string operation, CommandDeadline deadline)
        => EarlierExecution(operation) is { } earlier
            ? After(earlier, deadline, CancellationToken.None).GetAwaiter().GetResult() // its awaits go on without the context
            : null;

    /// <summary>
    /// Completes once <see cref="EarlierExecution"/> has ended, waiting at most until the command's
    /// <paramref name="deadline"/> (its CommandTimeout, which then goes on bounding its waits for a lock); the command
    /// refuses changes meanwhile (see <see cref="ThrowIfInUse"/>), and <see cref="Cancel"/> ends the wait.
    /// </summary>
    /// <returns>The rental it waited in, or <see langword="null"/> when it did not wait (see <see cref="After"/>).</returns>
    /// <exception cref="InvalidOperationException">That execution is this command's.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    /// <exception cref="SqliteException">SQLITE_INTERRUPT after Cancel; SQLITE_BUSY when CommandTimeout ran out.</exception>
    private ValueTask<int?> AfterEarlierExecution(string operation, CommandDeadline deadline, CancellationToken cancellationToken)
        => EarlierExecution(operation) is { } earlier ? new ValueTask<int?>(After(earlier, deadline, cancellationToken)) : new ValueTask<int?>((int?)null);

    /// <summary>
    /// Waits for <paramref name="earlier"/>, marking the command in use (<see cref="_waiting"/>); once the wait has
    /// ended well the mark stays until <see cref="BeginExecution"/> has marked the execution running, as it may go on
    /// on another thread than the caller's: the command is never seen free in between. Returns the connection's rental
    /// it waited in, which the execution's call checks as it begins (see <see cref="SaverDbConnection.BeginCall"/>).
    /// </summary>
    private async Task<int?> After(Task earlier, CommandDeadline deadline, CancellationToken cancellationToken)
    {
        using var waiting = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Volatile.Write(ref _waitCancellation, waiting);
        Interlocked.Increment(ref _waiting);
        var waited = false;
        try
        {
            var rental = await _connection!.AfterEarlier(earlier, deadline, waiting.Token).ConfigureAwait(false);
            waited = true;
            return rental;
        }
        catch (OperationCanceledException)
        {
            cancellationToken.ThrowIfCancellationRequested();
            throw RenterCalls.CancelledByCancel();
        }
        finally
        {
            Volatile.Write(ref _waitCancellation, null);
            if (!waited)
            {
                Interlocked.Decrement(ref _waiting);
            }
        }
    }

    private void SetConnection(SaverDbConnection? connection)
    {
        if (!ReferenceEquals(connection, _connection))
        {
            ThrowIfInUse(nameof(Connection));
            _connection = connection;
        }
    }

    /// <summary>
    /// Refuses to change or run the command while a reader of it is open, as Microsoft.Data.Sqlite does, or while an
    /// execution of it still runs: an asynchronous one not awaited yet (waiting at the write gate, say), which
    /// Microsoft.Data.Sqlite's never are, since they complete before they return. That execution runs with the text and
    /// on the connection the command had when it started (its parameters are read when it begins to run).
    /// </summary>
    /// <param name="operation">What is refused, for the error.</param>
    /// <param name="ownWaits">The in-use marks the caller holds itself (see <see cref="After"/>).</param>
    private void ThrowIfInUse(string operation, int ownWaits = 0)
    {
        if (_reader is { IsClosed: false })
        {
            throw new InvalidOperationException($"{operation}: a reader of this command is still open; close it first.");
        }

        if (Volatile.Read(ref _running) > 0 || Volatile.Read(ref _waiting) > ownWaits)
        {
            throw new InvalidOperationException(
                $"{operation}: an execution of this command still runs (an asynchronous call not awaited yet); await it first.");
        }
    }

    /// <summary>
    /// Ends an execution (its reader's, for a reader): a statement the cache can keep goes back to it, and the command
    /// then holds nothing of the physical connection's, so that one never disposed can be garbage collected; one it
    /// cannot keep (Statement Cache Size=0, text over 16 KiB, parameters that get a statement of their own) stays with
    /// the command for its next execution, and the connection tracks the command to take it back when it closes.
    /// </summary>
    private void Done(SaverDbConnection connection, PhysicalConnection physical)
    {
        if (_prepared is { Keepable: false } && !Volatile.Read(ref _disposed))
        {
            TrackBy(connection);
            return;
        }

        ReturnPrepared(physical);
        _bound = null;
        if (ReferenceEquals(_trackedBy, connection))
        {
            _trackedBy = null;
            connection.Forget(this); // its reader's: the connection keeps no command that holds nothing
        }
    }

    /// <summary>Has <paramref name="connection"/> track the command, once, so that its Close unbinds it (see <see cref="Unbind"/>).</summary>
    private void TrackBy(SaverDbConnection connection)
    {
        if (!ReferenceEquals(_trackedBy, connection))
        {
            _trackedBy = connection;
            connection.Track(this);
        }
    }

    /// <summary>Gives the prepared command back to the statement cache of <paramref name="physical"/>, which it was rented from.</summary>
    /// <summary>
    /// <see cref="ReturnPrepared"/> for the command's Dispose and its connection's Close (<see cref="Unbind"/>), which
    /// may run at once on two threads: one of them takes the statement, and none when <paramref name="physical"/>, read
    /// by Dispose, is already gone (Close then gives it back).
    /// </summary>
    private void TakeAndReturnPrepared(PhysicalConnection? physical)
    {
        if (physical is not null && Interlocked.Exchange(ref _prepared, null) is { } prepared)
        {
            physical.Statements.Return(prepared);
            _returned = prepared.Keepable ? prepared : null;
        }
    }

    private void ReturnPrepared(PhysicalConnection? physical)
    {
        if (_prepared is { } prepared)
        {
            _prepared = null;
            physical!.Statements.Return(prepared);
            _returned = prepared.Keepable ? prepared : null;
        }
    }

    /// <summary>
    /// <see cref="BindWithParameters"/>, then the execution's call begins (see
    /// <see cref="BeginRunning(SaverDbConnection, PhysicalConnection, bool, int?)"/>). Refused (Close took the connection meanwhile, or,
    /// <paramref name="waitedIn"/> a rental, closed and opened it again since the execution's wait for an earlier one;
    /// a reader with <see cref="CommandBehavior.CloseConnection"/> in a transaction SQLite has ended, which
    /// Microsoft.Data.Sqlite also refuses before it makes a reader, so the connection stays open), it runs nothing and
    /// gives back the statement it rented, unless the cache cannot keep it (see <see cref="Done"/>).
    /// </summary>
    /// <param name="operation">The execution's name, for errors.</param>
    /// <param name="behavior">The execution's behavior.</param>
    /// <param name="waitedIn">The rental the execution waited in (see <see cref="After"/>), or <see langword="null"/> when it did not wait.</param>
    /// <exception cref="InvalidOperationException">The execution is refused.</exception>
    private (SaverDbConnection Connection, PhysicalConnection Physical, OwnedSqliteCommand Command, CancellationTokenSource Call) BeginExecution(
        string operation, CommandBehavior behavior, int? waitedIn = null)
    {
        var waited = waitedIn is not null;
        try
        {
            var (connection, physical, command) = BindWithParameters(operation, waited);
            try
            {
                if (behavior.HasFlag(CommandBehavior.CloseConnection))
                {
                    ThrowIfTransactionEnded(connection, physical, operation);
                }

                return (connection, physical, command, BeginRunning(connection, physical, physical.OthersActive(ownReader: false), waitedIn));
            }
            catch (InvalidOperationException) when (command.Keepable)
            {
                ReturnPrepared(physical); // to the cache, which is locked: the connection may be another renter's by now
                _bound = null;
                throw;
            }
        }
        finally
        {
            if (waited)
            {
                Interlocked.Decrement(ref _waiting); // the in-use mark of its wait (see After), once the running one is up
            }
        }
    }

    /// <summary>
    /// Refuses <paramref name="operation"/> when the connection has a transaction that SQLite has already ended (the
    /// executor makes this check itself for what it runs, with the one look at SQLite it needs anyway).
    /// </summary>
    /// <exception cref="InvalidOperationException">SQLite has ended the connection's transaction.</exception>
    private static void ThrowIfTransactionEnded(SaverDbConnection connection, PhysicalConnection physical, string operation)
    {
        if (connection.Transaction is { } transaction && !physical.InTransaction)
        {
            throw transaction.EndedBySqlite(operation);
        }
    }

    /// <summary>
    /// <see cref="Bind"/>, and hands the prepared command this command's parameters as they are now. Parameters that
    /// could bind one statement parameter twice get a statement no other command uses (see
    /// <see cref="StatementCache.MayBindOneParameterTwice"/>).
    /// </summary>
    private (SaverDbConnection Connection, PhysicalConnection Physical, OwnedSqliteCommand Command) BindWithParameters(string operation, bool waited)
    {
        var (connection, physical, command) = Bind(operation, waited, out var lookedUp);
        var parameters = _definition.Parameters;
        if (command.Keepable && StatementCache.MayBindOneParameterTwice(parameters))
        {
            ReturnPrepared(physical);
            command = _prepared = physical.Statements.Rent(_definition.CommandText, fresh: true);
            lookedUp = true; // and SQLite prepared it
        }

        if (lookedUp)
        {
            connection.Telemetry.StatementLookedUp(kept: command.Node is not null);
        }

        var target = command.Parameters;
        target.Clear();
        for (var i = 0; i < parameters.Count; i++)
        {
            target.Add(parameters[i]);
        }

        command.BoundValueLength = StatementCache.ValueLength(parameters);
        return (connection, physical, command);
    }

    /// <summary>
    /// Checks the command's reader and transaction, finds the open physical connection (remembering it for
    /// <see cref="Cancel"/> until the execution is done, see <see cref="Done"/>) and rents the prepared command for the
    /// text from it.
    /// </summary>
    /// <param name="operation">The execution's name, for errors.</param>
    /// <param name="waited">Whether the execution waited for an earlier one, and holds the in-use mark of that wait (see <see cref="After"/>).</param>
    /// <param name="lookedUp">Whether the command rented its prepared command now, rather than holding one already.</param>
    private (SaverDbConnection Connection, PhysicalConnection Physical, OwnedSqliteCommand Command) Bind(string operation, bool waited, out bool lookedUp)
    {
        ThrowIfInUse(operation, ownWaits: waited ? 1 : 0);
        _disposed = false; // run again after Dispose, as Microsoft.Data.Sqlite's commands may be

        var connection = _connection ?? throw new InvalidOperationException($"{operation} requires the command to have a Connection.");
        var physical = connection.GetOpenPhysical(operation);
        if (_transaction is not null && _transaction.Connection != connection)
        {
            // A completed transaction has no connection: it may have completed since it was found open (Close on
            // another thread), so its state is read after its connection.
            throw new InvalidOperationException(_transaction.IsCompleted
                ? $"{operation}: the command's transaction has completed; it is no longer usable.{_transaction.HowCompleted}"
                : $"{operation}: the command's transaction belongs to another connection.");
        }

        if (!ReferenceEquals(_bound, physical))
        {
            ReturnPrepared(_bound); // to the connection the command's last reader ran on, still open, or Close would have unbound it
            _bound = physical;
        }

        lookedUp = false;
        if (_prepared is null)
        {
            lookedUp = true;
            var text = _definition.CommandText;
            var returned = _returned;
            _returned = null;
            var fresh = physical.MayHaveAttachedDatabases;
            _prepared = !fresh && returned is not null && string.Equals(returned.CommandText, text, StringComparison.Ordinal) && physical.Statements.TryRentAgain(returned)
                ? returned
                : physical.Statements.Rent(text, fresh);
        }

        return (connection, physical, _prepared);
    }
}
