using System.Data;
using System.Data.Common;
using System.Runtime.ExceptionServices;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Pooling;
using SqliteSaver.Data.Resilience;
using SqliteSaver.Data.Threading;

namespace SqliteSaver.Data;

/// <summary>
/// A SQLite transaction on a <see cref="SaverDbConnection"/>. Commit it, or dispose it to roll back; closing the
/// connection also rolls it back. A reader of a writing command run in the transaction (<c>SELECT ...; INSERT ...</c>,
/// <c>INSERT ... RETURNING</c>) that is still open when the transaction ends, or a savepoint is set, rolled back to or
/// released, first runs the statements of its command it has not reached, inside the transaction, and then reads
/// nothing more: none of them runs after the transaction, outside it, or after a rollback to a savepoint that was to
/// undo it. A batch that holds a statement the library does not run inside a transaction (<c>COMMIT</c>,
/// <c>PRAGMA</c>, <c>VACUUM</c>, <c>ATTACH</c>, ...) is the exception: it runs as written, as its reader is read on or
/// closed. Savepoints (<see cref="Save"/>, <see cref="Rollback(string)"/>, <see cref="Release"/>) mark points inside
/// it to roll back to, as with Microsoft.Data.Sqlite. Its commit, rollbacks and savepoints are calls of the connection
/// (see <see cref="SaverDbConnection.Close"/>): a Close from another thread ends them and waits for them, and one so
/// ended, or begun after Close, throws <see cref="InvalidOperationException"/> (a commit that finished first is kept).
/// They also take their turn after the connection's asynchronous executions started before them and not awaited yet
/// (those started while BeginTransactionAsync waited run in the transaction), waiting at most Default Timeout: then a
/// commit or savepoint throws SQLITE_BUSY and the transaction stays open, and a rollback goes ahead.
/// </summary>
public sealed class SaverDbTransaction : DbTransaction
{
    private readonly SaverDbConnection _connection;
    private readonly PhysicalConnection _physical;
    private readonly int _rental; // the connection's rental the transaction began in (see SaverDbConnection.BeginCall)
    private bool _completed;
    private Exception? _unfinished;
    private Exception? _failedOnClose;
    private List<string>? _savepoints; // set by Save and not released, oldest first
    private long _savepointCommandsAtFailure; // PhysicalConnection.SavepointCommandsInTransaction when a batch failed to finish

    internal SaverDbTransaction(SaverDbConnection connection, PhysicalConnection physical, int rental)
    {
        _connection = connection;
        _physical = physical;
        _rental = rental;
    }

    /// <summary>The connection the transaction runs on; <see langword="null"/> once it is committed or rolled back.</summary>
    public new SaverDbConnection? Connection => _completed ? null : _connection;

    /// <summary>
    /// Always <see cref="IsolationLevel.Serializable"/>, whatever level the transaction was begun with: SQLite
    /// transactions are serializable (Microsoft.Data.Sqlite reports the same, except for <c>ReadUncommitted</c> on a
    /// shared cache, where it also sets <c>PRAGMA read_uncommitted</c>, which this library does not).
    /// </summary>
    public override IsolationLevel IsolationLevel => IsolationLevel.Serializable;

    /// <summary>Always <see langword="true"/>: <see cref="Save"/>, <see cref="Rollback(string)"/> and <see cref="Release"/> run SQLite's savepoints.</summary>
    public override bool SupportsSavepoints => true;

    /// <inheritdoc />
    protected override DbConnection? DbConnection => Connection;

    /// <summary>Whether the transaction was committed, rolled back, or ended with its connection.</summary>
    internal bool IsCompleted => _completed;

    /// <summary>The physical connection the transaction runs on.</summary>
    internal PhysicalConnection Physical => _physical;

    /// <summary>Whether the transaction ended because its connection closed, which rolled it back.</summary>
    internal bool EndedByClose { get; private set; }

    /// <summary>
    /// Whether its Commit committed it (SQLite's commit hook, which counts commits elsewhere, is not called for a
    /// transaction that wrote nothing).
    /// </summary>
    internal bool Committed { get; private set; }

    /// <summary>Commits the transaction, after the statements its open readers have not reached (see <see cref="SaverDbTransaction"/>).</summary>
    /// <exception cref="InvalidOperationException">
    /// The transaction has already completed; SQLite has already ended it (rolled it back after an error, say: roll
    /// back); or such a statement failed when an earlier commit or savepoint ran it, or when its reader closed (roll back).
    /// </exception>
    /// <exception cref="SqliteException">
    /// Such a statement failed, now or when its reader closed, and the transaction can now only be rolled back; or
    /// SQLite could not commit, and the transaction stays open.
    /// </exception>
    public override void Commit() => CommitCore(CancellationToken.None);

    /// <summary>
    /// Commits the transaction as <see cref="Commit"/> does. A commit waits only in rollback-journal mode, in SQLite's
    /// busy handler, for readers to finish, and a statement an open reader had not reached only in a deferred
    /// transaction, for the write lock; cancelling <paramref name="cancellationToken"/> ends such a wait, and the
    /// transaction stays open (to be rolled back, if a reader's statement was cancelled).
    /// </summary>
    /// <param name="cancellationToken">Checked before the commit starts, and ends its waits for a lock.</param>
    /// <returns>A task that completes when the transaction is committed.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled; the transaction stays open.</exception>
    /// <exception cref="InvalidOperationException">
    /// The transaction has already completed; SQLite has already ended it (roll back); or a reader's statement failed
    /// when an earlier commit or savepoint ran it, or when its reader closed (roll back).
    /// </exception>
    /// <exception cref="SqliteException">
    /// A reader's statement failed, and the transaction can now only be rolled back; or SQLite could not commit, and
    /// the transaction stays open.
    /// </exception>
    public override Task CommitAsync(CancellationToken cancellationToken = default)
        => AsTask(static (transaction, _, token) => transaction.CommitCore(token), 0, cancellationToken);

    /// <summary>Rolls the transaction back, after the statements its open readers have not reached (their errors are ignored).</summary>
    /// <exception cref="InvalidOperationException">The transaction has already completed.</exception>
    /// <exception cref="SqliteException">SQLite could not roll back.</exception>
    public override void Rollback()
    {
        ThrowIfCompleted(nameof(Rollback));
        RunAsCall(
            static (transaction, _) =>
            {
                try
                {
                    try
                    {
                        transaction._connection.FinishReadersBefore(transaction, commit: false);
                    }
                    finally
                    {
                        transaction._physical.Rollback();
                    }
                }
                finally
                {
                    transaction.Complete();
                }
            },
            0,
            CancellationToken.None,
            evenIfEarlierRuns: true);
    }

    /// <summary>
    /// Sets a savepoint (<c>SAVEPOINT "name"</c>) in the transaction, to roll back to with
    /// <see cref="Rollback(string)"/>. Savepoints nest; a name used again names the newest savepoint of that name.
    /// The statements open readers of writing batches in the transaction have not reached run first (see
    /// <see cref="SaverDbTransaction"/>); in a deferred transaction they may wait for the write lock, as a commit does.
    /// </summary>
    /// <param name="savepointName">The savepoint's name: any non-empty text without a NUL character; it is quoted, not parsed.</param>
    /// <exception cref="ArgumentNullException"><paramref name="savepointName"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="savepointName"/> is empty or holds a NUL character.</exception>
    /// <exception cref="InvalidOperationException">
    /// The transaction has already completed; SQLite has ended it itself (an <c>ON CONFLICT ROLLBACK</c>, a trigger's
    /// <c>RAISE(ROLLBACK)</c>, a <c>COMMIT</c> or <c>ROLLBACK</c> sent as SQL): roll it back; or a statement an open
    /// reader had not reached failed when an earlier commit or savepoint ran it (roll back).
    /// </exception>
    /// <exception cref="SqliteException">
    /// A statement an open reader of the transaction had not reached failed, and the transaction can now only be rolled
    /// back; or SQLite could not set the savepoint.
    /// </exception>
    public override void Save(string savepointName) => RunSavepoint(nameof(Save), "SAVEPOINT ", savepointName, CancellationToken.None);

    /// <summary>
    /// Sets a savepoint as <see cref="Save"/> does. Only the statements an open reader of a writing batch had not
    /// reached, which run first, may wait, in a deferred transaction, for the write lock; cancelling
    /// <paramref name="cancellationToken"/> ends that wait where SQLite's waits can be ended (with SQLitePCLRaw's own
    /// e_sqlite3 and a Busy Timeout above 0), and the transaction can then only be rolled back.
    /// </summary>
    /// <param name="savepointName">The savepoint's name (see <see cref="Save"/>).</param>
    /// <param name="cancellationToken">Checked first, and ends a wait for the write lock.</param>
    /// <returns>A task that completes when the savepoint is set.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public override Task SaveAsync(string savepointName, CancellationToken cancellationToken = default)
        => AsTask(static (transaction, name, token) => transaction.RunSavepoint(nameof(Save), "SAVEPOINT ", name, token), savepointName, cancellationToken);

    /// <summary>
    /// Undoes what the transaction did since the savepoint was set (<c>ROLLBACK TO SAVEPOINT "name"</c>), and the
    /// savepoints set after it. The savepoint stays, to roll back to again, and the transaction stays open, with the
    /// write lock and the write gate it holds: commit it or roll it back as before. The statements open readers of the
    /// transaction have not reached run first, and are undone with the rest (their errors are ignored). After a batch
    /// run in the transaction failed to finish (see <see cref="Commit"/>), a rollback to a savepoint set before that
    /// batch ran undoes it whole, and the transaction can commit again.
    /// <see cref="DbTransaction.RollbackAsync(string, CancellationToken)"/> checks its token and calls this.
    /// </summary>
    /// <param name="savepointName">The name the savepoint was set with.</param>
    /// <exception cref="ArgumentNullException"><paramref name="savepointName"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="savepointName"/> is empty or holds a NUL character.</exception>
    /// <exception cref="InvalidOperationException">
    /// The transaction has already completed, or SQLite has ended it itself (an <c>ON CONFLICT ROLLBACK</c>, a trigger's
    /// <c>RAISE(ROLLBACK)</c>, a <c>COMMIT</c> or <c>ROLLBACK</c> sent as SQL): roll it back.
    /// </exception>
    /// <exception cref="SqliteException">No savepoint has that name, or SQLite could not roll back to it.</exception>
    public override void Rollback(string savepointName)
        => RunSavepoint(nameof(Rollback), "ROLLBACK TO SAVEPOINT ", savepointName, CancellationToken.None, rollback: true);

    /// <summary>
    /// Removes the savepoint and those set after it (<c>RELEASE SAVEPOINT "name"</c>), keeping what the transaction
    /// did since: nothing is committed until the transaction is. Open readers' remaining statements run first, as
    /// for <see cref="Save"/>.
    /// </summary>
    /// <param name="savepointName">The name the savepoint was set with.</param>
    /// <exception cref="ArgumentNullException"><paramref name="savepointName"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="savepointName"/> is empty or holds a NUL character.</exception>
    /// <exception cref="InvalidOperationException">
    /// The transaction has already completed; SQLite has ended it itself (an <c>ON CONFLICT ROLLBACK</c>, a trigger's
    /// <c>RAISE(ROLLBACK)</c>, a <c>COMMIT</c> or <c>ROLLBACK</c> sent as SQL): roll it back; or a statement an open
    /// reader had not reached failed when an earlier commit or savepoint ran it (roll back).
    /// </exception>
    /// <exception cref="SqliteException">
    /// A statement an open reader of the transaction had not reached failed, and the transaction can now only be rolled
    /// back; no savepoint has that name; or a write of the transaction is still running.
    /// </exception>
    public override void Release(string savepointName) => RunSavepoint(nameof(Release), "RELEASE SAVEPOINT ", savepointName, CancellationToken.None);

    /// <summary>Releases a savepoint as <see cref="Release"/> does, with the waits <see cref="SaveAsync"/> has.</summary>
    /// <param name="savepointName">The name the savepoint was set with.</param>
    /// <param name="cancellationToken">Checked first, and ends a wait for the write lock.</param>
    /// <returns>A task that completes when the savepoint is released.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public override Task ReleaseAsync(string savepointName, CancellationToken cancellationToken = default)
        => AsTask(static (transaction, name, token) => transaction.RunSavepoint(nameof(Release), "RELEASE SAVEPOINT ", name, token), savepointName, cancellationToken);

    /// <summary>
    /// Remembers that a statement of a batch run in the transaction failed when its reader closed: the batch is not
    /// whole, and no commit may go ahead without it. The next commit throws that error itself, as if the commit had
    /// run the statement (so a busy error stays one that a unit of work is run again for). A rollback to a savepoint
    /// <see cref="Save"/> set lifts it (see <see cref="Track"/>), but never for a batch run as written
    /// (<paramref name="runAsWritten"/>), which may have set a savepoint of the same name before its failed statement,
    /// the one such a rollback would go to.
    /// </summary>
    internal void FailedUnfinished(Exception error, bool runAsWritten = false)
    {
        if (_unfinished is null && _failedOnClose is null)
        {
            _failedOnClose = error;
            _savepointCommandsAtFailure = runAsWritten ? -1 : _physical.SavepointCommandsInTransaction;
        }
    }

    /// <summary>Marks the transaction completed as its connection closes, which has rolled it back.</summary>
    internal void CompleteOnClose()
    {
        EndedByClose |= !_completed;
        Complete();
    }

    /// <summary>Marks the transaction completed, detaches it from its connection and leaves the write gate.</summary>
    internal void Complete()
    {
        if (!_completed)
        {
            _completed = true;
            _connection.Transaction = null;
            _physical.ReleaseGateUnlessTransactionKept();
        }
    }

    /// <summary>
    /// Rolls back the transaction if it has not completed. When another thread's Close of the connection came first, it
    /// waits for that Close, which rolls the transaction back (or, if Close gives up waiting for a call, rolls back).
    /// </summary>
    /// <param name="disposing">Whether this is a call to <see cref="IDisposable.Dispose"/>.</param>
    protected override void Dispose(bool disposing)
    {
        if (disposing && !_completed)
        {
            try
            {
                Rollback();
            }
            catch (InvalidOperationException) when (Volatile.Read(ref _completed) || !_connection.InRental(_physical, _rental))
            {
                // Another thread's Close took the connection meanwhile (and an Open may have come since): it rolls the
                // transaction back, unless a call of the connection outlasts its wait and it keeps the connection open;
                // then this rolls back.
                _physical.Calls.WaitForClose(
                    () => Volatile.Read(ref _completed) || _connection.InRental(_physical, _rental),
                    _connection.CallsEndBound + TimeSpan.FromSeconds(1));
                if (!Volatile.Read(ref _completed))
                {
                    Rollback();
                }
            }
        }

        base.Dispose(disposing);
    }

    /// <summary>
    /// Runs the statements the transaction's open readers have not reached, before a commit or a savepoint. If one
    /// fails, those after it never run, so no later commit may go ahead without them.
    /// </summary>
    private void FinishReaders()
    {
        if (_failedOnClose is { } failed)
        {
            (_unfinished, _failedOnClose) = (failed, null);
            ExceptionDispatchInfo.Throw(failed);
        }

        if (_unfinished is { } earlier)
        {
            throw new InvalidOperationException(
                $"A statement of a batch a reader read in this transaction failed when the reader closed or an earlier commit or savepoint ran it ({earlier.Message}), so the batch is not whole and the transaction cannot commit it: roll it back.",
                earlier);
        }

        try
        {
            _connection.FinishReadersBefore(this, commit: true);
        }
        catch (Exception exception)
        {
            _unfinished = exception;
            _savepointCommandsAtFailure = _physical.SavepointCommandsInTransaction;
            if (exception is SqliteException sqlite && SaverRetryStrategy.IsTransient(sqlite))
            {
                _physical.BusyInTransaction = sqlite; // met by this transaction itself (see RunInTransaction)
            }

            throw;
        }
    }

    /// <summary>
    /// The error for a command, or a commit, after SQLite itself ended the transaction, which would otherwise run
    /// outside it and commit on its own. When a statement of a batch a reader ran as it closed failed (see
    /// <see cref="FailedUnfinished"/>), or a commit that ran it failed, that error, which may be what ended the
    /// transaction (an interrupt, a full disk), is named and is the inner exception: closing a reader ignores it.
    /// </summary>
    internal InvalidOperationException EndedBySqlite(string operation)
        => (_failedOnClose ?? _unfinished) is { } cause
            ? new($"{operation}: SQLite has already ended the connection's transaction, so this would run outside it. A statement of a batch a reader read in this transaction failed when the reader closed, or when a commit ran it ({cause.Message}), which may be what ended it. {EndedBySqliteAdvice}", cause)
            : new($"{operation}: SQLite has already ended the connection's transaction, so this would run outside it. {EndedBySqliteAdvice}");

    /// <summary>What <see cref="EndedBySqlite"/> says to do, and what became of the unit of work's writes.</summary>
    private const string EndedBySqliteAdvice = "Roll back or dispose the transaction. SQLite rolls a transaction back itself after some errors (ON CONFLICT ROLLBACK, RAISE(ROLLBACK), a full disk, an I/O error, an interrupt); then nothing the unit of work wrote is kept, and it can be run again. But a COMMIT sent as SQL also ends it, and then what the unit of work wrote before it is committed: running it again would apply that twice.";

    /// <summary>
    /// Runs a savepoint statement, <paramref name="statement"/> followed by the quoted name, on the transaction's
    /// connection, after the statements the transaction's open readers have not reached, so that those land where
    /// the calls put them: before a savepoint set or released now, and undone by a rollback to one (see
    /// <see cref="FinishReaders"/>; with <paramref name="rollback"/>, as <see cref="Rollback()"/> runs them, unless
    /// the savepoint may have been set after them, see <see cref="ThrowIfReadersMayRunAfterSavepointSetAsSql"/>; the
    /// error of one that failed is then kept for the commit if the rollback fails). It never ends the transaction:
    /// the write gate stays held. <paramref name="cancellationToken"/> ends waits for a lock (see <see cref="RunAsCall"/>).
    /// </summary>
    private void RunSavepoint(string operation, string statement, string savepointName, CancellationToken cancellationToken, bool rollback = false)
    {
        ArgumentNullException.ThrowIfNull(savepointName);
        if (savepointName.Length == 0)
        {
            throw new ArgumentException("The savepoint name is empty: a savepoint's name may be any non-empty text without NUL characters.", nameof(savepointName));
        }

        if (savepointName.Contains('\0', StringComparison.Ordinal))
        {
            throw new ArgumentException(
                $"The savepoint name '{savepointName.Replace("\0", "\\0", StringComparison.Ordinal)}' holds a NUL character: a savepoint's name may be any non-empty text without NUL characters.",
                nameof(savepointName));
        }

        ThrowIfCompleted(operation);
        RunAsCall(
            static (transaction, savepoint) =>
            {
                var (operation, statement, savepointName, rollback) = savepoint;
                transaction.ThrowIfEndedBySqlite(operation);
                SqliteException? unfinished = null;
                if (rollback)
                {
                    transaction.ThrowIfReadersMayRunAfterSavepointSetAsSql(savepointName);
                    unfinished = transaction._connection.FinishReadersBefore(transaction, commit: false);
                }
                else
                {
                    transaction.FinishReaders();
                }

                transaction.ThrowIfEndedBySqlite(operation); // a statement just finished may have made SQLite end it (ON CONFLICT ROLLBACK)
                try
                {
                    transaction._physical.Execute(statement + "\"" + savepointName.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"");
                }
                catch (SqliteException) when (unfinished is not null)
                {
                    // The rollback (to no such savepoint, say) did not undo the batch that failed: it is not whole.
                    transaction.FailedUnfinished(unfinished);
                    throw;
                }

                transaction.Track(operation, savepointName);
            },
            (operation, statement, savepointName, rollback),
            cancellationToken);
    }

    /// <summary>
    /// Refuses a rollback to a savepoint while a reader of a writing batch in the transaction has statements not reached
    /// yet and a command that may have set a savepoint as SQL text ran since it opened: the rollback runs those
    /// statements first, so that it undoes them when the savepoint came before the batch; but a savepoint set as SQL
    /// after the batch began would undo them where it should not (Microsoft.Data.Sqlite runs them after the rollback,
    /// and keeps them), and the library cannot tell which it is.
    /// </summary>
    /// <exception cref="InvalidOperationException">Such a reader is open.</exception>
    private void ThrowIfReadersMayRunAfterSavepointSetAsSql(string savepointName)
    {
        if (_connection.ReadersMayRunAfterSavepointSetAsSql(this))
        {
            throw new InvalidOperationException(
                $"Rollback(\"{savepointName}\") would first run the statements not reached yet of a batch that writes, whose reader is open in this transaction, so that the rollback undoes them; but a command that may set a savepoint as SQL text (SAVEPOINT ...) ran since that reader opened: if it set this savepoint, after the batch began, the rollback would undo statements that belong after it. Nothing was rolled back: read the reader to its end (NextResult until it returns false) or close it, then roll back to the savepoint.");
        }
    }

    /// <summary>
    /// Keeps the list of savepoints <see cref="Save"/> set as SQLite has it after <paramref name="operation"/>
    /// succeeded: a rollback keeps the savepoint and drops those after it, a release drops it too. A batch that failed
    /// to finish ran after every savepoint <see cref="Save"/> set (which finishes the batches open before it, and
    /// refuses to run once one has failed), so a rollback to one of them undoes those batches whole, and the
    /// transaction may commit again; unless a command that may have set a savepoint as SQL text ran since the failure
    /// (a <c>SAVEPOINT</c> of the same name would be the one rolled back to).
    /// </summary>
    private void Track(string operation, string savepointName)
    {
        if (operation == nameof(Save))
        {
            (_savepoints ??= []).Add(savepointName);
            return;
        }

        // SQLite names the newest savepoint of that name, comparing ASCII letters without case.
        var index = _savepoints?.FindLastIndex(name => SameName(name, savepointName)) ?? -1;
        if (index < 0)
        {
            return; // one set by SQL text: it may have been set after the failure
        }

        var rollback = operation == nameof(Rollback);
        if (rollback && _physical.SavepointCommandsInTransaction == _savepointCommandsAtFailure)
        {
            (_unfinished, _failedOnClose) = (null, null);
        }

        var kept = rollback ? index + 1 : index;
        _savepoints!.RemoveRange(kept, _savepoints.Count - kept);
    }

    /// <summary>Whether SQLite takes two savepoint names for one: equal but for the case of ASCII letters.</summary>
    private static bool SameName(string a, string b)
    {
        if (a.Length != b.Length)
        {
            return false;
        }

        for (var i = 0; i < a.Length; i++)
        {
            if (a[i] != b[i] && !(char.IsAsciiLetter(a[i]) && char.IsAsciiLetter(b[i]) && (a[i] | 0x20) == (b[i] | 0x20)))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Commits, with SQLite's waits for a lock ended by <paramref name="cancellationToken"/> (see <see cref="RunAsCall"/>).</summary>
    private void CommitCore(CancellationToken cancellationToken)
    {
        ThrowIfCompleted(nameof(Commit));
        RunAsCall(
            static (transaction, _) =>
            {
                transaction.ThrowIfEndedBySqlite(nameof(Commit));
                transaction.FinishReaders();
                transaction._physical.Commit();
                transaction.Committed = true;
                transaction.Complete();
            },
            0,
            cancellationToken);
    }

    /// <summary>
    /// Runs <paramref name="run"/> on the connection as a call of its renter (see <see cref="RenterCalls"/>): a Close
    /// from another thread interrupts its statement and waits for it to end before the connection goes back to the
    /// pool, and a call so ended throws the <see cref="InvalidOperationException"/> of a call ended by Close, as one
    /// that begins after Close does. A <paramref name="cancellationToken"/> that can be cancelled also ends SQLite's
    /// waits for a lock in it (see <see cref="PhysicalConnection.MakeBusyWaitsCancellable"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection was closed before or while the call ran.</exception>
    private void RunAsCall<TState>(Action<SaverDbTransaction, TState> run, TState state, CancellationToken cancellationToken, bool evenIfEarlierRuns = false)
    {
        AfterEarlierExecutions(evenIfEarlierRuns, cancellationToken);
        var call = _connection.BeginCall(_physical, _rental); // refused once Close, which completes the transaction, has come
        try
        {
            var cancellable = cancellationToken.CanBeCanceled && _physical.MakeBusyWaitsCancellable(cancellationToken);
            try
            {
                run(this, state);
            }
            finally
            {
                if (cancellable)
                {
                    _physical.EndCancellableBusyWaits();
                }
            }
        }
        catch (SqliteException interrupted) when (_physical.Calls.Interrupted(interrupted, call, call.Token, cancellationToken) is { } ended)
        {
            throw ended; // Close interrupted the statement
        }
        finally
        {
            _physical.Calls.End();
        }
    }

    /// <summary>
    /// Waits for the connection's asynchronous executions started before this call and not ended yet (see
    /// <see cref="SaverDbConnection.AfterEarlierWithinDefaultTimeout"/>). With <paramref name="evenIfEarlierRuns"/> (a
    /// rollback) a wait that outlasts Default Timeout lets the call go ahead: the execution still running then runs
    /// after it, outside the transaction.
    /// </summary>
    /// <exception cref="CommandTimeoutException">Default Timeout passed first, and <paramref name="evenIfEarlierRuns"/> is false.</exception>
    private void AfterEarlierExecutions(bool evenIfEarlierRuns, CancellationToken cancellationToken)
    {
        try
        {
            _ = Synchronously.Result(_connection.AfterEarlierWithinDefaultTimeout(CommandDeadline.StartDefault(_connection.Options.DefaultTimeout), async: false, cancellationToken));
        }
        catch (CommandTimeoutException) when (evenIfEarlierRuns)
        {
            // Rolled back all the same, as asked.
        }
    }

    /// <summary>
    /// Runs <paramref name="run"/> (a commit or a savepoint statement) for its asynchronous form, with
    /// <paramref name="cancellationToken"/>: the task is cancelled when the token ended a wait, and faulted with
    /// anything else <paramref name="run"/> throws.
    /// </summary>
    private Task AsTask<TState>(Action<SaverDbTransaction, TState, CancellationToken> run, TState state, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled(cancellationToken);
        }

        try
        {
            run(this, state, cancellationToken);
            return Task.CompletedTask;
        }
        catch (SqliteException error) when (Executor.IsInterruption(error, cancellationToken))
        {
            return Task.FromCanceled(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled(cancellationToken); // its wait for an earlier execution of the connection
        }
        catch (Exception exception)
        {
            return Task.FromException(exception);
        }
    }

    /// <summary>
    /// Refuses a commit or a savepoint once SQLite has ended the transaction itself (see <see cref="EndedBySqlite"/>):
    /// <c>SAVEPOINT</c> would then begin a new transaction of its own, and <c>RELEASE</c> commit it, outside this one.
    /// </summary>
    private void ThrowIfEndedBySqlite(string operation)
    {
        if (!_physical.InTransaction)
        {
            throw EndedBySqlite(operation);
        }
    }

    private void ThrowIfCompleted(string operation)
    {
        if (_completed)
        {
            throw new InvalidOperationException($"{operation} was called on a transaction that has already completed; it is no longer usable.{HowCompleted}");
        }
    }

    /// <summary>For the error of a call refused on the completed transaction: how it completed, when its connection's Close ended it.</summary>
    internal string HowCompleted
        => EndedByClose ? " It ended as its connection was closed (from another thread, say, or by a reader opened with CommandBehavior.CloseConnection), which rolled it back." : string.Empty;
}
