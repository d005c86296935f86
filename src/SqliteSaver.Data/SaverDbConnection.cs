using System.Data;
using System.Data.Common;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Pooling;
using SqliteSaver.Data.Resilience;
using SqliteSaver.Data.Threading;

namespace SqliteSaver.Data;

/// <summary>
/// A connection to a SQLite database that rents an already-open physical connection from a process-wide pool on
/// <see cref="Open"/> and gives it back, rolled back and reset, on <see cref="Close"/>.
/// </summary>
/// <remarks>
/// Connections with equal settings share one pool, whatever the order, case, spacing or aliases of their
/// connection-string keywords. Close or dispose every connection you open: a connection that is never closed keeps
/// its physical connection out of the pool.
/// </remarks>
public sealed class SaverDbConnection : DbConnection
{
    private static readonly StateChangeEventArgs Opened = new(ConnectionState.Closed, ConnectionState.Open);
    private static readonly StateChangeEventArgs Closed = new(ConnectionState.Open, ConnectionState.Closed);

    // How long Close waits, beyond Busy Timeout (a synchronous statement's wait in SQLite's busy handler ends only
    // then), for the calls it ends: others end within microseconds of their cancellation.
    private static readonly TimeSpan CallsEndWithin = TimeSpan.FromSeconds(5);

    // A SqliteConnection, even unopened, initializes SQLitePCLRaw's provider before the version is asked.
    private static readonly Lazy<string> Version = new(() => new SqliteConnection().ServerVersion);

    /// <summary>
    /// The connection an asynchronous execution (or BeginTransactionAsync) runs on, in its flow and in what that runs (a
    /// retry strategy's callbacks, a function SQLite runs in its statement): a call there is nested in the execution (see
    /// <see cref="EarlierAsyncExecution"/>).
    /// </summary>
    internal static readonly AsyncLocal<SaverDbConnection?> ExecutionOn = new();

    private string _connectionString = string.Empty;
    private SaverDataSource? _dataSource;
    private bool _createdByDataSource; // until another connection string is set
    private PhysicalConnection? _physical;
    private bool _disposed;
    private int _opening; // 1 while an Open or OpenAsync rents (see BeginOpening)
    private List<SaverDbCommand>? _commands;
    private int _pruneCommandsAt = 16;
    private int _closingThread; // the thread of a Close that took the physical connection, while it runs
    private PhysicalConnection? _closingPhysical; // the physical connection that Close took, while it runs
    private int _rentals; // physical connections this connection has rented (see InRental)

    /// <summary>Creates a connection with no connection string; set <see cref="ConnectionString"/> before opening.</summary>
    public SaverDbConnection()
    {
    }

    /// <summary>Creates a connection for a connection string.</summary>
    /// <param name="connectionString">The connection string; see <see cref="SaverConnectionStringBuilder"/> for its keywords.</param>
    public SaverDbConnection(string connectionString)
    {
        ConnectionString = connectionString;
    }

    internal SaverDbConnection(SaverDataSource dataSource)
    {
        _dataSource = dataSource;
        _connectionString = dataSource.ConnectionString;
        _createdByDataSource = true;
    }

    /// <summary>
    /// Gets or sets the connection string, exactly as given. It can be changed only while the connection is closed.
    /// A connection a <see cref="SaverDataSource"/> created stays with that data source when set to the string it has;
    /// set to another, it uses the shared pool for that string, as <c>new SaverDbConnection(string)</c> does.
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection is open, or an <see cref="OpenAsync"/> has not finished.</exception>
    /// <exception cref="ArgumentException">A keyword is unknown or a value is invalid.</exception>
    [AllowNull]
    public override string ConnectionString
    {
        get => _connectionString;
        set
        {
            if (Volatile.Read(ref _opening) != 0)
            {
                // The connection it is waiting for belongs to the old string's pool.
                throw new InvalidOperationException("The connection string cannot be changed while the connection is opening.");
            }

            if (_physical is not null) // after the open's mark, which an open clears once it is open (see OnOpened)
            {
                throw new InvalidOperationException("The connection string cannot be changed while the connection is open.");
            }

            value ??= string.Empty;
            if (_createdByDataSource && value == _connectionString)
            {
                return; // stays with the data source (its initializer, its retry strategy)
            }

            _createdByDataSource = false;
            _dataSource = value.Length == 0 ? null : SaverDataSource.GetShared(value);
            _connectionString = value;
        }
    }

    /// <summary>Always <c>main</c>, the name SQLite gives the primary database.</summary>
    public override string Database => "main";

    /// <summary>
    /// The full path of the database file, also for a <c>file:</c> URI Data Source, as written (a <c>..</c> or a symbolic
    /// link in it is not resolved; Microsoft.Data.Sqlite, while open, reports the file SQLite found); for an in-memory
    /// database the Data Source as given (<c>:memory:</c>, or its URI); empty while no connection string is set.
    /// </summary>
    public override string DataSource => _dataSource is { Options: var options } ? options.DatabasePath ?? options.DataSource : string.Empty;

    /// <summary>
    /// How long <see cref="Open"/> waits for a pooled connection to come free, in seconds (rounded up): the connection
    /// string's Pool Timeout, where 0 means no limit; 30, its default, while no connection string is set.
    /// </summary>
    public override int ConnectionTimeout => (int)Math.Ceiling((_dataSource?.Options.PoolTimeout ?? TimeSpan.FromSeconds(30)).TotalSeconds);

    /// <summary>The version of the SQLite library.</summary>
    public override string ServerVersion => Version.Value;

    /// <summary>Whether the connection is open.</summary>
    public override ConnectionState State => _physical is null ? ConnectionState.Closed : ConnectionState.Open;

    /// <summary>
    /// The Microsoft.Data.Sqlite connection underneath, for advanced use such as <c>CreateFunction</c> or
    /// <c>BackupDatabase</c>. It belongs to the pool: do not close it or keep it past <see cref="Close"/>, and
    /// dispose any command or reader you create on it. Functions, collations and PRAGMAs set on it stay with
    /// the physical connection for later renters.
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection is closed.</exception>
    public SqliteConnection InnerConnection
    {
        get
        {
            var physical = GetOpenPhysical(nameof(InnerConnection));
            physical.MayHoldTempObjects = physical.MayHoldAttachments = physical.InnerExposed = true;
            return physical.Sqlite;
        }
    }

    /// <summary>The transaction open on this connection, if any.</summary>
    internal SaverDbTransaction? Transaction { get; set; }

    internal SaverOptions Options => GetDataSource().Options;

    /// <summary>The connection string's Default Timeout in seconds; 30, its default, while no connection string is set.</summary>
    internal int DefaultTimeout => _dataSource?.Options.DefaultTimeout ?? 30;

    internal Executor Executor => GetDataSource().Executor;

    internal Telemetry Telemetry => GetDataSource().Telemetry;

    /// <summary>
    /// Closes every idle physical connection of this connection's pool now and every rented one when it is
    /// returned, so that the database file can be deleted right after. Does nothing for a connection with no
    /// connection string.
    /// </summary>
    /// <param name="connection">A connection whose pool is cleared.</param>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    public static void ClearPool(SaverDbConnection connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        connection._dataSource?.Clear();
    }

    /// <summary>
    /// Clears the pool of every data source in the process (see <see cref="ClearPool"/>) but those of pooled private
    /// in-memory databases (<c>Data Source=:memory:</c>), which a clear empties: only a clear of that pool itself does,
    /// also closing any file its connections attached.
    /// </summary>
    public static void ClearAllPools() => SaverDataSource.ClearAll();

    /// <summary>Rents a physical connection from the pool. Does nothing if the connection is already open.</summary>
    /// <exception cref="InvalidOperationException">
    /// No connection string was set, another Open or OpenAsync of the connection still waits for the pool, or a Close of
    /// the connection on another thread did not end within twice its bound (2 x (Busy Timeout + 5 s)).
    /// </exception>
    /// <exception cref="TimeoutException">Every pooled connection stayed in use for longer than Pool Timeout.</exception>
    /// <exception cref="SqliteException">A new physical connection could not be opened.</exception>
    /// <exception cref="ObjectDisposedException">The connection was disposed.</exception>
    public override void Open()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        AfterCloseElsewhere();
        if (_physical is null && BeginOpening())
        {
            PhysicalConnection physical;
            try
            {
                physical = Pool().Rent();
            }
            catch
            {
                EndOpening();
                throw;
            }

            OnOpened(physical);
        }
    }

    /// <summary>Rents a physical connection from the pool, waiting without blocking a thread while it is exhausted.</summary>
    /// <param name="cancellationToken">Cancels the wait for a free connection.</param>
    /// <exception cref="InvalidOperationException">
    /// No connection string was set, another Open or OpenAsync of the connection still waits for the pool, or a Close of
    /// the connection on another thread did not end within twice its bound (2 x (Busy Timeout + 5 s); a wait that
    /// blocks the calling thread, the exception in the returned task).
    /// </exception>
    /// <exception cref="TimeoutException">Every pooled connection stayed in use for longer than Pool Timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="SqliteException">A new physical connection could not be opened.</exception>
    /// <exception cref="ObjectDisposedException">The connection was disposed, before the call or while it waited.</exception>
    public override Task OpenAsync(CancellationToken cancellationToken)
        => cancellationToken.IsCancellationRequested
            ? Task.FromCanceled(cancellationToken) // a TaskCanceledException to its awaiter, as Microsoft.Data.Sqlite's
            : OpenCoreAsync(cancellationToken);

    private async Task OpenCoreAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        AfterCloseElsewhere();
        if (_physical is null && BeginOpening())
        {
            PhysicalConnection physical;
            try
            {
                physical = await Pool().RentAsync(cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                EndOpening();
                throw;
            }

            OnOpened(physical);
        }
    }

    /// <summary>
    /// Takes on opening the connection: <see langword="true"/> when this call is to rent its physical connection;
    /// <see langword="false"/> when an open that ended just before made it open. Another Open or OpenAsync still under
    /// way (waiting for an exhausted pool, on another thread or not yet awaited: two Dapper queries of a closed
    /// connection awaited together, say) is refused: renting too, it would overwrite that open's physical connection,
    /// whose pool slot nothing could give back then; waiting for it could block the thread its completion needs.
    /// </summary>
    /// <exception cref="InvalidOperationException">Another open of the connection is under way.</exception>
    private bool BeginOpening()
    {
        if (Interlocked.CompareExchange(ref _opening, 1, 0) != 0)
        {
            throw new InvalidOperationException(
                "The connection is already opening: another Open or OpenAsync of it still waits for a pooled connection (on another thread, or an OpenAsync not awaited yet: two Dapper queries of a closed connection awaited together, say). Await that open before using the connection.");
        }

        if (Volatile.Read(ref _physical) is null)
        {
            return true;
        }

        EndOpening(); // opened by an open that ended after this one looked
        return false;
    }

    /// <summary>
    /// Ends the open <see cref="BeginOpening"/> took on: once it failed, or once its physical connection is the
    /// connection's (<see cref="OnOpened"/>), before the StateChange handlers, which may close and open it again.
    /// </summary>
    private void EndOpening() => Volatile.Write(ref _opening, 0);

    /// <summary>
    /// Returns the physical connection to the pool: open readers are closed, an open transaction is rolled back.
    /// Calls of the connection still running (on another thread, or awaited nowhere) are ended first, and waited for.
    /// Does nothing if the connection is already closed.
    /// </summary>
    /// <exception cref="SqliteException">
    /// A write left open for a reader (an <c>INSERT ... RETURNING</c> outside a transaction) failed to commit; the
    /// connection is closed and back in the pool all the same.
    /// </exception>
    /// <exception cref="InvalidOperationException">
    /// Close runs inside one of the connection's own calls, on its thread (in a function SQLite runs in a statement, or a
    /// retry strategy's callback of a synchronous call), which cannot end before it returns; or a call of the connection
    /// did not end within Busy Timeout and 5 s. The connection stays open.
    /// </exception>
    public override void Close()
    {
        if (Volatile.Read(ref _physical) is { } open)
        {
            ThrowIfInsideOwnCall(open);
        }

        // Detach first: a CloseConnection reader closed below calls back into Close, which must then do nothing; and
        // OnOpened may race a Dispose here (see there).
        var physical = Interlocked.Exchange(ref _physical, null);
        if (physical is not null)
        {
            CloseTakenHere(physical);
        }
    }

    private static void ThrowIfInsideOwnCall(PhysicalConnection physical)
    {
        if (physical.Calls.RunningOnThisThread)
        {
            throw new InvalidOperationException(
                "Close was called inside one of this connection's own calls (in a function SQLite runs in a statement, or a retry strategy's callback), which cannot end before Close returns, so the connection stays open and the call goes on. Close it once the call has returned.");
        }
    }

    /// <summary>
    /// Takes <paramref name="physical"/> from the renter for a call of the renter's that closes the connection as it
    /// ends (with <see cref="CommandBehavior.CloseConnection"/>, a reader's closing or a failed execution), while the
    /// call still runs: no Close on another thread can end (nor an Open follow it) before the call has ended, so the
    /// call cannot close the next rental. Close the connection with <see cref="CloseTakenHere"/> once the call has
    /// ended, when this returns <see langword="true"/>; <see langword="false"/> when another Close took it first.
    /// </summary>
    /// <exception cref="InvalidOperationException">The call runs inside another call of the connection on this thread, as for <see cref="Close()"/>.</exception>
    internal bool TakeForClosing(PhysicalConnection physical)
    {
        if (Volatile.Read(ref _physical) != physical)
        {
            return false;
        }

        ThrowIfInsideOwnCall(physical);
        if (Interlocked.CompareExchange(ref _physical, null, physical) != physical)
        {
            return false;
        }

        Volatile.Write(ref _closingPhysical, physical); // an Open on another thread waits (see AfterCloseElsewhere)
        return true;
    }

    /// <summary>The rest of <see cref="Close()"/>, on this thread, once it has taken <paramref name="physical"/> from the renter.</summary>
    internal void CloseTakenHere(PhysicalConnection physical)
    {
        var thread = Environment.CurrentManagedThreadId;
        Volatile.Write(ref _closingPhysical, physical);
        Volatile.Write(ref _closingThread, thread);
        try
        {
            CloseTaken(physical);
        }
        finally
        {
            // Unless another thread's Close has taken the physical connection since this one gave up and put it back.
            Interlocked.CompareExchange(ref _closingThread, 0, thread);
            Interlocked.CompareExchange(ref _closingPhysical, null, physical);
            physical.Calls.CloseEnded(); // after the exchange, a full fence (see RenterCalls.WaitForClose)
        }
    }

    /// <summary>
    /// For Open: waits for a Close of this connection running on another thread to have handed its physical connection
    /// back (or given up), blocking the thread at most 2 x (Busy Timeout + 5 s); not for its StateChange event, whose
    /// handler may be waiting for this thread (marshalled to a UI thread). Code after an await of a call that Close
    /// ended runs as that call ends, while Close goes on; an Open there would otherwise rent a physical connection
    /// whose transaction and commands the rest of Close would take for those of the rental it closes.
    /// </summary>
    /// <exception cref="InvalidOperationException">That Close did not hand its connection back within the bound.</exception>
    private void AfterCloseElsewhere()
    {
        if (Volatile.Read(ref _closingPhysical) is { } closing && !ClosingHere)
        {
            AfterClose(closing); // a method of its own: its closure would be allocated at every Open
        }
    }

    /// <summary>The wait of <see cref="AfterCloseElsewhere"/> for the Close that took <paramref name="closing"/>.</summary>
    /// <exception cref="InvalidOperationException">That Close did not hand its connection back within the bound.</exception>
    private void AfterClose(PhysicalConnection closing)
    {
        var bound = CallsEndBound + CallsEndBound;
        closing.Calls.WaitForClose(() => Volatile.Read(ref _closingPhysical) != closing, bound);
        if (Volatile.Read(ref _closingPhysical) == closing)
        {
            throw new InvalidOperationException(string.Create(
                CultureInfo.InvariantCulture,
                $"Open waited {bound.TotalSeconds} s (2 x (Busy Timeout + 5 s)) for a Close of this connection on another thread to end, and it has not, so the connection was not opened. That Close may be held by a statement it runs, which no interrupt of its stops: one a reader had not reached, run as Close closes the reader (a long query, or a function of the application's in it), or the rollback of the connection's transaction (a hook of the application's). Open the connection again once that Close has returned."));
        }
    }

    /// <summary>
    /// Whether a Close that took <paramref name="physical"/> has not handed it back yet (see <see cref="Close()"/>): it
    /// touches nothing of its readers and commands after that, and its StateChange handlers are not waited for.
    /// </summary>
    internal bool ClosingOn(PhysicalConnection physical) => ReferenceEquals(Volatile.Read(ref _closingPhysical), physical);

    /// <summary>Whether a Close that took the physical connection runs now on this thread, as in a function SQLite runs as Close closes a reader.</summary>
    internal bool ClosingHere => Volatile.Read(ref _closingThread) == Environment.CurrentManagedThreadId;

    /// <summary><see cref="Close()"/>, once it has taken <paramref name="physical"/> from the renter.</summary>
    private void CloseTaken(PhysicalConnection physical)
    {
        // Calls of this connection still running (an asynchronous one waiting for the write gate, one on another
        // thread) end first: they would otherwise go on using the connection after its next renter has it.
        var bound = CallsEndBound;
        if (!physical.Calls.EndAll(physical.Handle, bound))
        {
            Volatile.Write(ref _physical, physical); // still open, as a call of its own still runs on it
            Interlocked.MemoryBarrier(); // pairs with Dispose's: one of the two sees the other's write
            if (_disposed)
            {
                // Disposed meanwhile on another thread, whose Close found nothing to close and whose Dispose suppresses
                // the finalizer (or by this Close, which throws): nothing else closes it. Its finalizer does, once nothing
                // holds it, unless that suppression comes after this (the same few instructions); run twice, it does
                // nothing the second time.
                GC.ReRegisterForFinalize(this);
            }

            throw new InvalidOperationException(string.Create(
                CultureInfo.InvariantCulture,
                $"A call of this connection did not end within {bound.TotalSeconds} s (Busy Timeout and {CallsEndWithin.TotalSeconds} s) of Close, so the connection stays open: the call may be blocked in the application's code that SQLite or a retry strategy runs (a function, a callback), which no interrupt stops, or be the one closing it (in a retry strategy's callback of an asynchronous call, or after an await in one of a synchronous call)."));
        }

        LatestAsyncExecution = null; // ended, or waiting only to throw (see AfterEarlier): no later rental waits for them
        Exception? failure = null;
        if (Transaction is { } transaction)
        {
            try
            {
                FinishReadersBefore(transaction, commit: false); // without waiting for a lock, as Rollback does
            }
            catch (Exception exception)
            {
                failure = exception;
            }
        }

        if (_commands is { Count: > 0 })
        {
            // From a copy: a reader closing runs statements, whose application functions may close other readers.
            foreach (var command in _commands.ToArray())
            {
                try
                {
                    command.Unbind(this, physical);
                }
                catch (Exception exception)
                {
                    failure ??= exception; // e.g. a reader's write failing to commit; every command is still unbound
                }
            }

            _commands.Clear();
            _pruneCommandsAt = 16;
        }

        if (Transaction is not null || physical.HeldGate is not null)
        {
            physical.TryRollback();
            Transaction?.CompleteOnClose();
            physical.ReleaseGate();
        }

        _dataSource!.Pool.Return(physical);
        Interlocked.CompareExchange(ref _closingPhysical, null, physical); // an Open waiting for this Close goes on (see AfterCloseElsewhere)
        physical.Calls.CloseEnded();
        OnStateChange(Closed);
        if (failure is not null)
        {
            ExceptionDispatchInfo.Throw(failure);
        }
    }

    /// <summary>
    /// Begins an IMMEDIATE transaction: it takes the write lock at once, so its writes cannot fail on a stale
    /// snapshot. It waits its turn at the write gate, then for SQLite's lock under busy_timeout and the retry policy,
    /// up to Default Timeout in all. Until it ends, other writers in the process wait: commit or dispose it promptly.
    /// </summary>
    /// <returns>The transaction; commit it, or dispose it to roll back.</returns>
    /// <exception cref="InvalidOperationException">The connection is closed or already has a transaction.</exception>
    /// <exception cref="SqliteException">The write lock could not be taken within the retry policy's bounds or Default Timeout (SQLITE_BUSY).</exception>
    public new SaverDbTransaction BeginTransaction() => BeginTransaction(deferred: false);

    /// <summary>Begins an IMMEDIATE transaction as <see cref="BeginTransaction()"/> does, waiting without blocking a thread.</summary>
    /// <param name="cancellationToken">Cancels the waits for the write gate and between retries.</param>
    /// <returns>The transaction; commit it, or dispose it to roll back.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">The connection is closed or already has a transaction.</exception>
    /// <exception cref="SqliteException">The write lock could not be taken within the retry policy's bounds or Default Timeout (SQLITE_BUSY).</exception>
    public new async ValueTask<SaverDbTransaction> BeginTransactionAsync(CancellationToken cancellationToken = default)
        => (SaverDbTransaction)await BeginDbTransactionAsync(IsolationLevel.Unspecified, cancellationToken).ConfigureAwait(false);

    /// <summary>Begins a transaction, IMMEDIATE or, with <paramref name="deferred"/>, DEFERRED.</summary>
    /// <param name="deferred">
    /// <see langword="true"/> for <c>BEGIN DEFERRED</c>: no lock until the first read or write. A deferred transaction
    /// that reads and then writes can fail with SQLITE_BUSY (or SQLITE_BUSY_SNAPSHOT) when another connection wrote
    /// in between; only running the whole unit of work again helps then.
    /// </param>
    /// <returns>The transaction; commit it, or dispose it to roll back.</returns>
    /// <exception cref="InvalidOperationException">The connection is closed or already has a transaction.</exception>
    /// <exception cref="SqliteException">SQLite could not begin the transaction.</exception>
    public SaverDbTransaction BeginTransaction(bool deferred) => BeginTransaction(IsolationLevel.Serializable, deferred);

    /// <summary>
    /// Begins a transaction at <paramref name="isolationLevel"/>, IMMEDIATE or, with <paramref name="deferred"/>,
    /// DEFERRED, as Microsoft.Data.Sqlite's overload of the same form does (see <see cref="BeginTransaction(bool)"/>).
    /// SQLite transactions are serializable, so the level only has to be one of those
    /// <see cref="DbConnection.BeginTransaction(IsolationLevel)"/> takes, and the transaction reports
    /// <see cref="IsolationLevel.Serializable"/>.
    /// </summary>
    /// <param name="isolationLevel">
    /// <see cref="IsolationLevel.Unspecified"/>, <see cref="IsolationLevel.ReadUncommitted"/>,
    /// <see cref="IsolationLevel.ReadCommitted"/>, <see cref="IsolationLevel.RepeatableRead"/> or
    /// <see cref="IsolationLevel.Serializable"/>.
    /// </param>
    /// <param name="deferred"><see langword="true"/> for <c>BEGIN DEFERRED</c>, as for <see cref="BeginTransaction(bool)"/>.</param>
    /// <returns>The transaction; commit it, or dispose it to roll back.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="isolationLevel"/> is another level.</exception>
    /// <exception cref="InvalidOperationException">The connection is closed or already has a transaction.</exception>
    /// <exception cref="SqliteException">SQLite could not begin the transaction.</exception>
    public SaverDbTransaction BeginTransaction(IsolationLevel isolationLevel, bool deferred)
        => Synchronously.Result(BeginTransactionCore(isolationLevel, deferred, retry: true, async: false, CancellationToken.None));

    /// <summary>Begins a transaction as <see cref="BeginTransaction(bool)"/> does, waiting without blocking a thread.</summary>
    /// <param name="deferred"><see langword="true"/> for <c>BEGIN DEFERRED</c>, as for <see cref="BeginTransaction(bool)"/>.</param>
    /// <param name="cancellationToken">Cancels the waits for the write gate and between retries.</param>
    /// <returns>The transaction; commit it, or dispose it to roll back.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">The connection is closed or already has a transaction.</exception>
    /// <exception cref="SqliteException">SQLite could not begin the transaction.</exception>
    public async ValueTask<SaverDbTransaction> BeginTransactionAsync(bool deferred, CancellationToken cancellationToken = default)
        => (SaverDbTransaction)await BeginDbTransactionAsync(deferred ? IsolationLevel.ReadUncommitted : IsolationLevel.Serializable, cancellationToken).ConfigureAwait(false);

    /// <summary>SQLite cannot switch databases; the attached database <c>main</c> is the only one.</summary>
    /// <param name="databaseName">Ignored.</param>
    /// <exception cref="NotSupportedException">Always.</exception>
    public override void ChangeDatabase(string databaseName)
        => throw new NotSupportedException("SQLite has one main database per connection; use ATTACH DATABASE to reach another file.");

    /// <summary>
    /// System.Transactions is not supported, as in Microsoft.Data.Sqlite: a connection opened inside a
    /// <see cref="System.Transactions.TransactionScope"/> does not enlist in it either, so a scope left without
    /// <c>Complete()</c> rolls back nothing written through it.
    /// </summary>
    /// <param name="transaction">Ignored.</param>
    /// <exception cref="NotSupportedException">Always.</exception>
    public override void EnlistTransaction(System.Transactions.Transaction? transaction)
        => throw new NotSupportedException("SQLite connections do not take part in System.Transactions (nor does a TransactionScope roll back what they write): use BeginTransaction, or RunInTransaction.");

    /// <summary>Batches are not supported (<see cref="DbConnection.CanCreateBatch"/> is false), as Microsoft.Data.Sqlite has none.</summary>
    /// <returns>Nothing: it always throws.</returns>
    /// <exception cref="NotSupportedException">Always.</exception>
    protected override DbBatch CreateDbBatch() => throw new NotSupportedException(NoBatches);

    /// <summary>The error for a <see cref="DbBatch"/>, which neither this library nor Microsoft.Data.Sqlite supports.</summary>
    internal const string NoBatches = "SqliteSaver.Data does not support DbBatch (CanCreateBatch is false), nor does Microsoft.Data.Sqlite: give one command several statements separated by semicolons, which run in turn, or run the commands in one transaction.";

    /// <summary>Creates a command on this connection, in its open transaction if it has one (as Microsoft.Data.Sqlite does).</summary>
    /// <returns>A new command.</returns>
    public new SaverDbCommand CreateCommand() => new() { Connection = this, Transaction = Transaction };

    /// <inheritdoc cref="SqliteConnection.GetSchema()"/>
    /// <remarks>On a closed connection it answers as a closed <see cref="SqliteConnection"/> does.</remarks>
    public override DataTable GetSchema() => SchemaConnection().GetSchema();

    /// <inheritdoc cref="SqliteConnection.GetSchema(string)"/>
    /// <remarks>On a closed connection it answers as a closed <see cref="SqliteConnection"/> does.</remarks>
    public override DataTable GetSchema(string collectionName) => SchemaConnection().GetSchema(collectionName);

    /// <inheritdoc cref="SqliteConnection.GetSchema(string, string[])"/>
    /// <remarks>On a closed connection it answers as a closed <see cref="SqliteConnection"/> does.</remarks>
    public override DataTable GetSchema(string collectionName, string?[] restrictionValues)
        => SchemaConnection().GetSchema(collectionName, restrictionValues);

    /// <summary>The connection GetSchema asks: the physical one while open, else a closed Microsoft.Data.Sqlite one.</summary>
    private SqliteConnection SchemaConnection() => _physical is null ? new SqliteConnection() : InnerConnection;

    /// <summary>
    /// Begins a call of the renter on <paramref name="physical"/>, which the caller found open on this connection (see
    /// <see cref="RenterCalls.Begin"/>), unless Close has taken it since: Close takes the physical connection and then
    /// looks for calls running, a call is counted and then looks at the connection, each with a full fence between, so
    /// that either Close ends and waits for the call or the call sees that Close came.
    /// </summary>
    /// <param name="physical">The physical connection the caller found open.</param>
    /// <param name="rental">
    /// The rental the call belongs to, read before <paramref name="physical"/> (that of a transaction, of a wait for an
    /// earlier execution, of a unit of work; see <see cref="InRental"/>): the call is refused when the connection was
    /// closed since, even if it was opened again on the same physical connection. <see langword="null"/> for a call
    /// that found the connection open just now.
    /// </param>
    /// <exception cref="InvalidOperationException">The connection was closed since the caller found it open.</exception>
    internal CancellationTokenSource BeginCall(PhysicalConnection physical, int? rental = null)
        => TryBeginCall(physical, rental) ?? throw RenterCalls.ClosedDuringCall(null);

    /// <summary><see cref="BeginCall"/>, but <see langword="null"/> when the connection was closed since the caller found it open.</summary>
    internal CancellationTokenSource? TryBeginCall(PhysicalConnection physical, int? rental = null)
    {
        var call = physical.Calls.Begin();
        if (rental is null ? Holds(physical) : InRental(physical, rental.Value))
        {
            return call;
        }

        physical.Calls.End();
        return null;
    }

    /// <summary>
    /// The asynchronous executions of commands (and BeginTransactionAsync, CheckpointAsync) on this connection still
    /// running, as one task (see <see cref="EarlierAsyncExecution"/>).
    /// </summary>
    internal Task? LatestAsyncExecution { get; set; }

    /// <summary>
    /// The connection's asynchronous executions, if one still runs (not awaited yet, as Dapper's pipelined multi-exec
    /// leaves them): a connection runs one execution, BeginTransaction or checkpoint at a time, in the order they were
    /// started, so one started meanwhile waits for them (their outcome is their callers'), a synchronous one blocking its thread, at
    /// most its timeout: an execution that needs that thread to go on (a retry strategy awaiting without
    /// ConfigureAwait(false) on a UI thread's SynchronizationContext) goes on once the wait has failed. One running
    /// meanwhile would take the write gate and the transaction such an execution holds for its own write as the
    /// caller's transaction's, and run inside it, unqueued and unretried. A call nested in such an execution (in a
    /// retry strategy's callback, or a function SQLite runs in its statement or in a reader's step) is not held back:
    /// it would wait for itself.
    /// </summary>
    internal Task? EarlierAsyncExecution()
        => PendingAsyncExecution is { } earlier
            && ExecutionOn.Value != this
            && _physical?.Calls.RunningOnThisThread != true
                ? earlier
                : null;

    /// <summary>
    /// Remembers <paramref name="execution"/>, an asynchronous execution of a command (or BeginTransactionAsync,
    /// CheckpointAsync) on this connection that still runs, with those still running before it (see <see cref="EarlierAsyncExecution"/>): one
    /// that ends early (cancelled while it waits, or nested in another) leaves the next execution waiting for them.
    /// </summary>
    internal void InFlight(Task execution)
        => LatestAsyncExecution = PendingAsyncExecution is { } earlier ? AfterBoth(earlier, execution) : execution;

    /// <summary><see cref="LatestAsyncExecution"/> while one of its executions has not ended (see <see cref="BothEnded.Pending"/>).</summary>
    private Task? PendingAsyncExecution => LatestAsyncExecution is { } latest && !BothEnded.HasEnded(latest) ? latest : null;

    /// <summary>
    /// The record of both, as one task that completes once both have, never faulting: a long pipelined run of failures
    /// links no chain of their exceptions. Its listeners, one on each task, complete it and let go of both, so that
    /// completed records of a long run do not keep their tasks. Nothing waits for this task: a wait walks the record's
    /// tasks (see <see cref="WhenEnded"/>, <see cref="BothEnded.Pending"/>), as a listener may be queued behind a
    /// caller's continuation that runs inline and blocks its thread.
    /// </summary>
    private static Task AfterBoth(Task earlier, Task execution)
    {
        var both = new BothEnded(earlier, execution);
        earlier.ContinueWith(BothEnded.OneEnded, both, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        execution.ContinueWith(BothEnded.OneEnded, both, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return both.Ended;
    }

    /// <summary>
    /// Completes once every task of <paramref name="earlier"/> (an execution, or a record of several: see
    /// <see cref="BothEnded.Pending"/>) has ended, waiting for each through a continuation run on the thread pool, which
    /// a task's completion starts before it runs those that run on its thread: one of those (the code after an await of
    /// BeginTransactionAsync, say) may block its thread waiting for this execution, as a synchronous Rollback does, and
    /// would hold up the wait until its bound, as it would hold up a record's listener on that task.
    /// </summary>
    private static async Task WhenEnded(Task earlier)
    {
        while (BothEnded.Pending(earlier) is { } pending)
        {
            await pending.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Completes once <paramref name="earlier"/> (see <see cref="EarlierAsyncExecution"/>) has ended, its outcome ignored,
    /// waiting at most until <paramref name="deadline"/>.
    /// </summary>
    /// <returns>The rental the wait began in, for the call that follows (see <see cref="BeginCall"/>).</returns>
    /// <exception cref="OperationCanceledException"><paramref name="token"/> was cancelled while waiting.</exception>
    /// <exception cref="SqliteException">SQLITE_BUSY: the wait outlasted <paramref name="deadline"/>.</exception>
    /// <exception cref="InvalidOperationException">The connection was closed meanwhile (and maybe opened again).</exception>
    internal async Task<int> AfterEarlier(Task earlier, CommandDeadline deadline, CancellationToken token)
    {
        var rental = Volatile.Read(ref _rentals);

        await WhenEnded(earlier).WaitAsync(deadline.Remaining, token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        token.ThrowIfCancellationRequested();
        if (!BothEnded.HasEnded(earlier))
        {
            throw new CommandTimeoutException(string.Create(
                CultureInfo.InvariantCulture,
                $"SQLite Error 5: 'database is locked'. Waited {deadline.Seconds} s ({deadline.Bound}) for this connection's earlier asynchronous execution, which still runs (in this process's write queue, say, behind a transaction that stayed open; or waiting for the thread this call blocked, on a single-threaded SynchronizationContext: await it instead)."));
        }

        // As BeginCall checks again once the call has begun: a Close and Open may still come before.
        if (Volatile.Read(ref _physical) is null || Volatile.Read(ref _rentals) != rental)
        {
            throw RenterCalls.ClosedDuringCall(null); // not on the connection opened again since: the caller's was closed
        }

        return rental;
    }

    /// <summary>
    /// Completes once <see cref="EarlierAsyncExecution"/> has ended, as for a call of the connection that is no command's
    /// (BeginTransaction, a unit of work, a transaction's end): waiting at most until <paramref name="deadline"/>, the
    /// call's Default Timeout, and without <paramref name="async"/> blocking the thread (the wait's awaits go on without
    /// its context).
    /// </summary>
    /// <returns>The rental it waited in, or <see langword="null"/> when there was nothing to wait for (see <see cref="BeginCall"/>).</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while waiting.</exception>
    /// <exception cref="SqliteException">SQLITE_BUSY: the wait outlasted Default Timeout.</exception>
    /// <exception cref="InvalidOperationException">The connection was closed meanwhile (and maybe opened again).</exception>
    internal async ValueTask<int?> AfterEarlierWithinDefaultTimeout(CommandDeadline deadline, bool async, CancellationToken cancellationToken)
    {
        if (EarlierAsyncExecution() is not { } earlier)
        {
            return null;
        }

        var waiting = AfterEarlier(earlier, deadline, cancellationToken);
        return async ? await waiting.ConfigureAwait(false) : waiting.GetAwaiter().GetResult();
    }

    /// <summary>How long Close waits for the connection's calls to end (see <see cref="RenterCalls.EndAll"/>): Busy Timeout and 5 s.</summary>
    internal TimeSpan CallsEndBound => Options.BusyTimeout + CallsEndWithin;

    /// <summary>Whether <paramref name="physical"/> is this connection's now: Close has not taken it.</summary>
    internal bool Holds(PhysicalConnection physical) => ReferenceEquals(Volatile.Read(ref _physical), physical);

    /// <summary>
    /// Whether <paramref name="physical"/> is this connection's now, in <paramref name="rental"/>: the connection was not
    /// closed since (and opened again, perhaps on the same physical connection). The physical connection is read first:
    /// Open counts the rental before it sets the physical connection, so one set by an Open since comes with its count
    /// (a wait ends on a pool thread, and Close and Open may run on another thread than the caller's).
    /// </summary>
    internal bool InRental(PhysicalConnection physical, int rental) => Holds(physical) && Volatile.Read(ref _rentals) == rental;

    /// <summary>The open physical connection, marked as used; throws when the connection is closed.</summary>
    /// <exception cref="InvalidOperationException">The connection is closed.</exception>
    internal PhysicalConnection GetOpenPhysical(string operation)
    {
        var physical = _physical ?? throw new InvalidOperationException($"{operation} requires an open connection.");
        physical.Used = true;
        return physical;
    }

    /// <summary>
    /// Before <paramref name="transaction"/> commits or rolls back, runs inside it the statements its open readers of
    /// writing commands have not reached (see <see cref="PooledDataReader.FinishBeforeTransactionEnds"/>).
    /// </summary>
    /// <returns>Before a rollback, the error of the first statement that failed, if any.</returns>
    /// <exception cref="SqliteException">With <paramref name="commit"/>, a statement failed.</exception>
    internal SqliteException? FinishReadersBefore(SaverDbTransaction transaction, bool commit)
    {
        if (_commands is null)
        {
            return null;
        }

        foreach (var command in _commands)
        {
            if (command.HasOpenReaderOf(transaction))
            {
                // From a copy: a statement's application function may create commands.
                SqliteException? failed = null;
                foreach (var each in _commands.ToArray())
                {
                    var error = each.FinishReaderBefore(transaction, commit); // every reader, after an error too
                    failed ??= error;
                }

                return failed;
            }
        }

        return null;
    }

    /// <summary>
    /// Whether an open reader of a writing command in <paramref name="transaction"/> would run statements not reached
    /// yet after a savepoint that may have been set as SQL text since it opened (see
    /// <see cref="PooledDataReader.MayRunAfterSavepointSetAsSql"/>).
    /// </summary>
    internal bool ReadersMayRunAfterSavepointSetAsSql(SaverDbTransaction transaction)
        => _commands?.Exists(command => command.ReaderMayRunAfterSavepointSetAsSql(transaction)) == true;

    /// <summary>
    /// Remembers a command that holds something of the physical connection's (an open reader, a statement the cache
    /// cannot keep), so that closing unbinds it (see <see cref="SaverDbCommand.Unbind"/>) and a transaction's end
    /// finishes its reader. Commands that hold nothing any more are dropped as the list grows.
    /// </summary>
    internal void Track(SaverDbCommand command)
    {
        _commands ??= [];
        if (_commands.Count >= _pruneCommandsAt)
        {
            _commands.RemoveAll(c => c.Untrack(this));
            _pruneCommandsAt = Math.Max(16, _commands.Count * 2);
        }

        _commands.Add(command);
    }

    /// <summary>Stops tracking a command that holds nothing of the physical connection's any more (see <see cref="Track"/>).</summary>
    internal void Forget(SaverDbCommand command) => _commands?.Remove(command);

    /// <summary>
    /// Runs <paramref name="work"/> in a transaction and commits it; on SQLITE_BUSY or SQLITE_LOCKED (including a
    /// stale snapshot, SQLITE_BUSY_SNAPSHOT) rolls back and runs it again after the retry policy's delay; on any
    /// other error rolls back and rethrows. Opens the connection if it is closed, and closes it again afterwards.
    /// </summary>
    /// <remarks>
    /// The delegate may run more than once: keep side effects outside the database (messages, files, counters)
    /// out of it, or make them idempotent. It must not commit or roll back the transaction itself. One that calls the
    /// transaction's Commit or Rollback, or commits by SQL (even in a batch that begins again, <c>COMMIT; BEGIN</c>,
    /// which SQLite's commit hook shows unless the application replaced that hook with its own), and then meets
    /// SQLITE_BUSY or SQLITE_LOCKED is not run again (<see cref="InvalidOperationException"/>); one that rolled back
    /// by SQL kept nothing, and is run again. Nor may it close the connection (with a reader
    /// opened with <see cref="CommandBehavior.CloseConnection"/>, say): that rolls the transaction back, and
    /// RunInTransaction then throws <see cref="InvalidOperationException"/> rather than return. A retry strategy of the
    /// application's (a Polly pipeline that handles every exception) that asks for another attempt after one whose
    /// delegate committed itself and then failed with any error gets <see cref="InvalidOperationException"/> from that
    /// attempt: the delegate is not run again. One that asks for another attempt after one that succeeded (a pipeline
    /// that handles results too) gets that attempt's result again, without anything run again. An attempt whose own
    /// token, one the retry strategy gives it (a Polly timeout's), is cancelled by the time its delegate returns is
    /// rolled back rather than committed, and ends with that cancellation.
    /// </remarks>
    /// <param name="work">The unit of work.</param>
    /// <param name="deferred">
    /// <see langword="true"/> for a DEFERRED transaction (no lock until the first statement); the default IMMEDIATE one
    /// takes the write lock up front and cannot meet a stale snapshot. An attempt in a deferred transaction that meets
    /// SQLITE_BUSY or SQLITE_LOCKED itself (a stale snapshot, or a write lock another connection holds, which a
    /// deferred transaction that has read does not wait for) is followed by attempts in IMMEDIATE ones, which wait
    /// for the write lock; a busy error the unit of work met on another connection does not change that.
    /// </param>
    /// <exception cref="ArgumentNullException"><paramref name="work"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// <paramref name="work"/> is an <c>async</c> method or lambda (async void): it would return at its first await,
    /// and the transaction commit before the rest of it ran. Nothing is run; use RunInTransactionAsync.
    /// </exception>
    /// <exception cref="InvalidOperationException">A transaction is already open on the connection; the unit of work ended its transaction itself, or committed part of it, and then met SQLITE_BUSY or SQLITE_LOCKED; or it rolled its transaction back itself, began another that it left open, or closed the connection; or the retry strategy asked for another attempt after one whose unit of work had committed itself and then failed (see the remarks of <see cref="RunInTransaction(Action{SaverDbTransaction}, bool)"/>).</exception>
    /// <exception cref="SqliteException">A transient error outlasted every retry, or SQLite reported another error.</exception>
    public void RunInTransaction(Action<SaverDbTransaction> work, bool deferred = false)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (work.Method.IsDefined(typeof(AsyncStateMachineAttribute), inherit: false))
        {
            throw AsynchronousWork(); // async void: it returns at its first await
        }

        RunInTransaction(
            transaction =>
            {
                work(transaction);
                return true;
            },
            deferred);
    }

    /// <summary>Runs <paramref name="work"/> in a transaction as <see cref="RunInTransaction(Action{SaverDbTransaction}, bool)"/> does and returns its result.</summary>
    /// <typeparam name="T">What the unit of work returns.</typeparam>
    /// <param name="work">The unit of work; it may run more than once.</param>
    /// <param name="deferred"><see langword="true"/> for a DEFERRED transaction.</param>
    /// <returns>The result of the attempt that committed.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="work"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// <typeparamref name="T"/> is a task (<c>async tx =&gt; ...</c> binds here): the transaction would commit at the
    /// work's first await, before the rest of it ran. Nothing is run; use RunInTransactionAsync.
    /// </exception>
    /// <exception cref="InvalidOperationException">A transaction is already open on the connection; the unit of work ended its transaction itself, or committed part of it, and then met SQLITE_BUSY or SQLITE_LOCKED; or it rolled its transaction back itself, began another that it left open, or closed the connection; or the retry strategy asked for another attempt after one whose unit of work had committed itself and then failed (see the remarks of <see cref="RunInTransaction(Action{SaverDbTransaction}, bool)"/>).</exception>
    /// <exception cref="SqliteException">A transient error outlasted every retry, or SQLite reported another error.</exception>
    public T RunInTransaction<T>(Func<SaverDbTransaction, T> work, bool deferred = false)
    {
        ArgumentNullException.ThrowIfNull(work);
        if (typeof(Task).IsAssignableFrom(typeof(T))
            || typeof(T) == typeof(ValueTask)
            || (typeof(T).IsGenericType && typeof(T).GetGenericTypeDefinition() == typeof(ValueTask<>)))
        {
            throw AsynchronousWork();
        }

        var (opened, rental) = Synchronously.Result(OpenForUnitOfWork(async: false, CancellationToken.None));
        try
        {
            return Executor.Strategy.Execute(
                static (state, token) => state.Connection.RunOnce(state.Work, state.Run, state.Rental, token),
                (Connection: this, Work: work, Run: new UnitOfWorkRun(deferred), Rental: rental),
                CancellationToken.None);
        }
        finally
        {
            if (opened)
            {
                Close();
            }
        }
    }

    /// <summary>The refusal of an asynchronous unit of work given to RunInTransaction.</summary>
    private static ArgumentException AsynchronousWork()
        => new(
            "RunInTransaction was given an asynchronous unit of work (an async lambda, or one that returns a Task or ValueTask): its transaction would commit at the work's first await, before the rest of it ran. Nothing was run; use RunInTransactionAsync(async (transaction, cancellationToken) => ...), which awaits it.",
            "work");

    /// <summary>
    /// Runs <paramref name="work"/> in a transaction as <see cref="RunInTransaction(Action{SaverDbTransaction}, bool)"/>
    /// does, waiting for the write gate and between attempts without blocking a thread.
    /// </summary>
    /// <param name="work">The unit of work; it may run more than once.</param>
    /// <param name="deferred"><see langword="true"/> for a DEFERRED transaction.</param>
    /// <param name="cancellationToken">
    /// Passed to <paramref name="work"/>; cancels the waits between attempts and the commit: once it is cancelled the
    /// attempt is rolled back rather than committed.
    /// </param>
    /// <returns>A task that completes when an attempt has committed.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="work"/> is null.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">A transaction is already open on the connection; the unit of work ended its transaction itself, or committed part of it, and then met SQLITE_BUSY or SQLITE_LOCKED; or it rolled its transaction back itself, began another that it left open, or closed the connection; or the retry strategy asked for another attempt after one whose unit of work had committed itself and then failed (see the remarks of <see cref="RunInTransaction(Action{SaverDbTransaction}, bool)"/>).</exception>
    /// <exception cref="SqliteException">A transient error outlasted every retry, or SQLite reported another error.</exception>
    public Task RunInTransactionAsync(Func<SaverDbTransaction, CancellationToken, Task> work, bool deferred = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        return RunInTransactionAsync(
            async (transaction, token) =>
            {
                await work(transaction, token).ConfigureAwait(false);
                return true;
            },
            deferred,
            cancellationToken);
    }

    /// <summary>
    /// Runs <paramref name="work"/> in an IMMEDIATE transaction as
    /// <see cref="RunInTransactionAsync(Func{SaverDbTransaction, CancellationToken, Task}, bool, CancellationToken)"/>
    /// does, so that the token can follow the delegate without a parameter name.
    /// </summary>
    /// <param name="work">The unit of work; it may run more than once.</param>
    /// <param name="cancellationToken">Passed to <paramref name="work"/>; cancels the waits between attempts and the commit.</param>
    /// <returns>A task that completes when an attempt has committed.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="work"/> is null.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">As for <see cref="RunInTransactionAsync(Func{SaverDbTransaction, CancellationToken, Task}, bool, CancellationToken)"/>.</exception>
    /// <exception cref="SqliteException">A transient error outlasted every retry, or SQLite reported another error.</exception>
    public Task RunInTransactionAsync(Func<SaverDbTransaction, CancellationToken, Task> work, CancellationToken cancellationToken)
        => RunInTransactionAsync(work, deferred: false, cancellationToken);

    /// <summary>
    /// Runs <paramref name="work"/> in an IMMEDIATE transaction as
    /// <see cref="RunInTransactionAsync{T}(Func{SaverDbTransaction, CancellationToken, Task{T}}, bool, CancellationToken)"/>
    /// does and returns its result, so that the token can follow the delegate without a parameter name.
    /// </summary>
    /// <typeparam name="T">What the unit of work returns.</typeparam>
    /// <param name="work">The unit of work; it may run more than once.</param>
    /// <param name="cancellationToken">Passed to <paramref name="work"/>; cancels the waits between attempts and the commit.</param>
    /// <returns>The result of the attempt that committed.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="work"/> is null.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">As for <see cref="RunInTransactionAsync(Func{SaverDbTransaction, CancellationToken, Task}, bool, CancellationToken)"/>.</exception>
    /// <exception cref="SqliteException">A transient error outlasted every retry, or SQLite reported another error.</exception>
    public Task<T> RunInTransactionAsync<T>(Func<SaverDbTransaction, CancellationToken, Task<T>> work, CancellationToken cancellationToken)
        => RunInTransactionAsync(work, deferred: false, cancellationToken);

    /// <summary>Runs <paramref name="work"/> as <see cref="RunInTransactionAsync(Func{SaverDbTransaction, CancellationToken, Task}, bool, CancellationToken)"/> does and returns its result.</summary>
    /// <typeparam name="T">What the unit of work returns.</typeparam>
    /// <param name="work">The unit of work; it may run more than once.</param>
    /// <param name="deferred"><see langword="true"/> for a DEFERRED transaction.</param>
    /// <param name="cancellationToken">
    /// Passed to <paramref name="work"/>; cancels the waits between attempts and the commit: once it is cancelled the
    /// attempt is rolled back rather than committed.
    /// </param>
    /// <returns>The result of the attempt that committed.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="work"/> is null.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">A transaction is already open on the connection; the unit of work ended its transaction itself, or committed part of it, and then met SQLITE_BUSY or SQLITE_LOCKED; or it rolled its transaction back itself, began another that it left open, or closed the connection; or the retry strategy asked for another attempt after one whose unit of work had committed itself and then failed (see the remarks of <see cref="RunInTransaction(Action{SaverDbTransaction}, bool)"/>).</exception>
    /// <exception cref="SqliteException">A transient error outlasted every retry, or SQLite reported another error.</exception>
    public async Task<T> RunInTransactionAsync<T>(
        Func<SaverDbTransaction, CancellationToken, Task<T>> work,
        bool deferred = false,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(work);
        var (opened, rental) = await OpenForUnitOfWork(async: true, cancellationToken).ConfigureAwait(false);
        try
        {
            return await Executor.Strategy.ExecuteAsync(
                static (state, token) => state.Connection.RunOnceAsync(state.Work, state.Run, state.Rental, token),
                (Connection: this, Work: work, Run: new UnitOfWorkRun(deferred), Rental: rental),
                cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (opened)
            {
                Close();
            }
        }
    }

    /// <summary>
    /// Begins a transaction for <see cref="DbConnection.BeginTransaction(IsolationLevel)"/>, as Microsoft.Data.Sqlite
    /// does: <see cref="IsolationLevel.ReadUncommitted"/> begins a deferred one (<c>BEGIN</c>, as
    /// <see cref="BeginTransaction(bool)"/> with <c>deferred: true</c>: no write gate, no lock until the first
    /// statement), every other level an IMMEDIATE one (see <see cref="BeginTransaction()"/>). SQLite transactions are
    /// serializable, so every transaction reports <see cref="IsolationLevel.Serializable"/>; <c>PRAGMA
    /// read_uncommitted</c> is not set.
    /// </summary>
    /// <param name="isolationLevel">
    /// <see cref="IsolationLevel.Unspecified"/>, <see cref="IsolationLevel.ReadUncommitted"/>,
    /// <see cref="IsolationLevel.ReadCommitted"/>, <see cref="IsolationLevel.RepeatableRead"/> or
    /// <see cref="IsolationLevel.Serializable"/>.
    /// </param>
    /// <returns>The transaction; commit it, or dispose it to roll back.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="isolationLevel"/> is another level.</exception>
    /// <exception cref="InvalidOperationException">The connection is closed or already has a transaction.</exception>
    /// <exception cref="SqliteException">SQLite could not begin the transaction.</exception>
    protected override DbTransaction BeginDbTransaction(IsolationLevel isolationLevel)
        => BeginTransaction(isolationLevel, IsDeferred(isolationLevel));

    /// <summary>
    /// Begins a transaction as <see cref="BeginDbTransaction"/> does, waiting for the write gate and between retries
    /// without blocking a thread.
    /// </summary>
    /// <param name="isolationLevel">The level, as for <see cref="BeginDbTransaction"/>.</param>
    /// <param name="cancellationToken">Cancels the waits for the write gate and between retries.</param>
    /// <returns>The transaction; commit it, or dispose it to roll back.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="isolationLevel"/> is not one of those allowed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="InvalidOperationException">The connection is closed or already has a transaction.</exception>
    /// <exception cref="SqliteException">SQLite could not begin the transaction.</exception>
    protected override ValueTask<DbTransaction> BeginDbTransactionAsync(IsolationLevel isolationLevel, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<DbTransaction>(cancellationToken); // as DbConnection's own, Microsoft.Data.Sqlite's
        }

        var begin = BeginDbTransactionCoreAsync(isolationLevel, cancellationToken);
        if (!begin.IsCompleted)
        {
            InFlight(begin); // an execution started while the BEGIN waits runs after it, in its transaction
        }

        return new ValueTask<DbTransaction>(begin);
    }

    private async Task<DbTransaction> BeginDbTransactionCoreAsync(IsolationLevel isolationLevel, CancellationToken cancellationToken)
        => await BeginTransactionCore(isolationLevel, IsDeferred(isolationLevel), retry: true, async: true, cancellationToken).ConfigureAwait(false);

    /// <inheritdoc />
    protected override DbCommand CreateDbCommand() => CreateCommand();

    /// <inheritdoc />
    protected override DbProviderFactory DbProviderFactory => SaverProviderFactory.Instance;

    /// <summary>
    /// Closes the connection. Called by the finalizer of a connection garbage collected while open, it hands the
    /// physical connection back to the pool, which closes it (rolling back any transaction), frees its slot and
    /// counts and logs the leak.
    /// </summary>
    /// <param name="disposing">Whether <c>Dispose()</c> was called, rather than the finalizer.</param>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _disposed = true;
            Interlocked.MemoryBarrier(); // pairs with OnOpened's: one of the two sees the other's write
            Close();
        }
        else if (_physical is { } leaked)
        {
            _physical = null;
            _dataSource!.Pool.ReclaimLeaked(leaked);
        }

        base.Dispose(disposing);
    }

    private static void CheckIsolationLevel(IsolationLevel isolationLevel)
    {
        if (isolationLevel is IsolationLevel.Chaos or IsolationLevel.Snapshot || !Enum.IsDefined(isolationLevel))
        {
            throw new ArgumentOutOfRangeException(
                nameof(isolationLevel),
                isolationLevel,
                "SQLite transactions are serializable: use Serializable, Unspecified, ReadCommitted, RepeatableRead or ReadUncommitted (all run serializable).");
        }
    }

    /// <summary>
    /// Whether <see cref="DbConnection.BeginTransaction(IsolationLevel)"/> begins deferred: for ReadUncommitted only,
    /// as Microsoft.Data.Sqlite does, so that a reading transaction does not hold up writers.
    /// </summary>
    private static bool IsDeferred(IsolationLevel isolationLevel) => isolationLevel == IsolationLevel.ReadUncommitted;

    private void ThrowIfInTransaction(PhysicalConnection physical)
    {
        physical.RetryFailedRollback(leaveGate: true);
        if (physical.WriteOpenForReader)
        {
            throw Executor.WriteOpenForReader();
        }

        if (Transaction is not null || physical.InTransaction)
        {
            throw new InvalidOperationException("A transaction is already open on this connection; SQLite does not nest transactions (use the transaction's savepoints: Save, Rollback(name), Release).");
        }
    }

    /// <summary>
    /// Begins a transaction once the connection's earlier asynchronous executions have ended, in the rental a unit of
    /// work runs in when it gives one (see <see cref="OpenForUnitOfWork"/>), else in that of the wait, or of now; the
    /// transaction keeps it for its later calls (see <see cref="BeginCall"/>).
    /// </summary>
    private async ValueTask<SaverDbTransaction> BeginTransactionCore(
        IsolationLevel isolationLevel,
        bool deferred,
        bool retry,
        bool async,
        CancellationToken cancellationToken,
        int? rental = null)
    {
        CheckIsolationLevel(isolationLevel);
        var deadline = CommandDeadline.StartDefault(Options.DefaultTimeout); // before the wait, which counts against it
        var waitedIn = await AfterEarlierWithinDefaultTimeout(deadline, async, cancellationToken).ConfigureAwait(false);
        rental ??= waitedIn ?? Volatile.Read(ref _rentals); // before the physical connection (see InRental)
        var physical = GetOpenPhysical(nameof(BeginTransaction));
        ThrowIfInTransaction(physical);
        var call = BeginCall(physical, rental);
        var linked = RenterCalls.Link(call, cancellationToken, out var token);
        try
        {
            if (async)
            {
                ExecutionOn.Value = this; // a call the strategy's callbacks make is nested in this one (see EarlierAsyncExecution)
                await Executor.BeginAsync(physical, deferred, retry, deadline, token).ConfigureAwait(false);
            }
            else
            {
                Executor.Begin(physical, deferred, retry, deadline, token);
            }

            if (physical.Calls.ClosedDuring(call))
            {
                // Rolled back by the call itself, which still runs: Close, waiting for it, would, but not once it has
                // given up waiting (a call outlasting its bound), as it may have by the time the call ends.
                physical.TryRollback();
                physical.ReleaseGateUnlessTransactionKept();
                throw physical.Calls.EndedByCloseError(call, null);
            }

            return Transaction = new SaverDbTransaction(this, physical, rental.Value);
        }
        catch (OperationCanceledException cancelled) when (physical.Calls.Ended(cancelled, call, cancellationToken) is { } ended)
        {
            throw ended;
        }
        catch (SqliteException interrupted) when (physical.Calls.Interrupted(interrupted, call, token, cancellationToken) is { } ended)
        {
            throw ended; // the BEGIN was interrupted (by Close, or by the token): no transaction began
        }
        finally
        {
            linked?.Dispose();
            physical.Calls.End();
        }
    }

    /// <summary>
    /// Opens the connection for a unit of work if it is closed, or else waits for its earlier asynchronous executions
    /// (see <see cref="AfterEarlierWithinDefaultTimeout"/>), and checks it has no transaction.
    /// </summary>
    /// <returns>
    /// Whether it opened the connection, and the rental the unit of work runs in: each attempt's transaction begins in
    /// it or is refused, as a call of a connection closed meanwhile (see <see cref="BeginCall"/>).
    /// </returns>
    private async ValueTask<(bool Opened, int Rental)> OpenForUnitOfWork(bool async, CancellationToken cancellationToken)
    {
        var opened = _physical is null;
        int? waitedIn = null;
        if (opened && async)
        {
            await OpenAsync(cancellationToken).ConfigureAwait(false);
        }
        else if (opened)
        {
            Open();
        }
        else
        {
            waitedIn = await AfterEarlierWithinDefaultTimeout(CommandDeadline.StartDefault(Options.DefaultTimeout), async, cancellationToken).ConfigureAwait(false);
        }

        var rental = waitedIn ?? Volatile.Read(ref _rentals); // before the physical connection (see InRental)
        try
        {
            ThrowIfInTransaction(GetOpenPhysical(nameof(RunInTransaction)));
        }
        catch
        {
            if (opened)
            {
                Close();
            }

            throw;
        }

        return (opened, rental);
    }

    /// <summary>
    /// Sets <paramref name="physical"/>'s <see cref="PhysicalConnection.UnitOfWorkAttempt"/> as a call of the renter in
    /// <paramref name="rental"/>, unless Close, perhaps from another thread, has taken the physical connection since (its
    /// return clears the token): another renter, or this connection opened again, may have it by now. <see langword="false"/> then.
    /// </summary>
    private bool TrySetUnitOfWorkAttempt(PhysicalConnection physical, int rental, CancellationToken attempt)
    {
        if (TryBeginCall(physical, rental) is null)
        {
            return false;
        }

        physical.UnitOfWorkAttempt = attempt;
        physical.Calls.End();
        return true;
    }

    /// <summary>
    /// One attempt at a unit of work: begin (one try; the caller's strategy retries the whole), run, commit. An
    /// attempt whose own transaction meets SQLITE_BUSY or SQLITE_LOCKED (see <see cref="MetBusyItself"/>) sets
    /// <paramref name="run"/>'s Deferred to false, so the next attempt takes the write lock up front. None runs after
    /// one that committed something itself and failed (see <see cref="UnitOfWorkRun"/>), nor after one that succeeded
    /// (see <see cref="RunsNothingAfterSuccess"/>).
    /// </summary>
    private T RunOnce<T>(Func<SaverDbTransaction, T> work, UnitOfWorkRun run, int rental, CancellationToken cancellationToken)
    {
        run.ThrowIfEnded();
        try
        {
            // The strategy's token for the attempt (a Polly timeout's): it ends the BEGIN's waits, as in RunOnceAsync,
            // and those of the statements of the unit of work, whose delegate takes no token.
            using var transaction = Synchronously.Result(BeginTransactionCore(IsolationLevel.Serializable, run.Deferred, retry: false, async: false, cancellationToken, rental));
            var physical = transaction.Physical;
            if (!TrySetUnitOfWorkAttempt(physical, rental, cancellationToken))
            {
                throw RenterCalls.ClosedDuringCall(null); // by another thread, right after the BEGIN
            }

            var commits = physical.Commits;
            T result;
            try
            {
                result = work(transaction);
            }
            catch (Exception error) when (EndedByWork(transaction, physical, commits))
            {
                NotRunAgain(run, committed: transaction.Committed || physical.Commits != commits, error);
                throw;
            }
            finally
            {
                TrySetUnitOfWorkAttempt(physical, rental, default); // not once the connection was closed: another renter may have it
            }

            ThrowIfClosedByWork(transaction);
            var committedByWork = physical.Commits != commits; // read before RunInTransaction's own commit
            ThrowIfEndedByWork(transaction, physical, rental, run, committedByWork);
            if (!transaction.IsCompleted)
            {
                try
                {
                    // CommitAsync completes synchronously; with the attempt's token its waits for readers end as in RunOnceAsync.
                    Synchronously.Wait(new ValueTask(transaction.CommitAsync(cancellationToken)));
                }
                catch (InvalidOperationException) when (transaction.EndedByClose && !committedByWork)
                {
                    ThrowIfClosedByWork(transaction); // a Close on another thread since the check above: not "Commit was called"
                    throw;
                }
                catch (Exception error) when (committedByWork)
                {
                    NotRunAgain(run, committed: true, error);
                    throw;
                }
            }

            return result;
        }
        catch (SqliteException error) when (MetBusyItself(error))
        {
            run.Deferred = false;
            throw;
        }
    }

    /// <summary>
    /// Whether a unit of work's busy error came from its own transaction: a stale snapshot (SQLITE_BUSY_SNAPSHOT), or
    /// a busy error a command met on this connection. A deferred transaction that has read gets SQLITE_BUSY at once
    /// when it writes while another connection holds the write lock (SQLite's busy handler does not wait then), so
    /// only an IMMEDIATE attempt waits for it. A busy error met on another connection (one the unit of work writes
    /// through, say) keeps it deferred: an IMMEDIATE attempt would hold the write gate that connection waits for.
    /// </summary>
    private bool MetBusyItself(SqliteException error)
        => error.SqliteExtendedErrorCode == Executor.BusySnapshot || ReferenceEquals(error, _physical?.BusyInTransaction);

    private async ValueTask<T> RunOnceAsync<T>(
        Func<SaverDbTransaction, CancellationToken, Task<T>> work, UnitOfWorkRun run, int rental, CancellationToken cancellationToken)
    {
        run.ThrowIfEnded();
        try
        {
            await using var transaction = await BeginTransactionCore(IsolationLevel.Serializable, run.Deferred, retry: false, async: true, cancellationToken, rental).ConfigureAwait(false);
            var physical = transaction.Physical;
            if (transaction.IsCompleted || !InRental(physical, rental))
            {
                throw RenterCalls.ClosedDuringCall(null); // as in RunOnce
            }

            var commits = physical.Commits;
            T result;
            try
            {
                result = await work(transaction, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception error) when (EndedByWork(transaction, physical, commits))
            {
                NotRunAgain(run, committed: transaction.Committed || physical.Commits != commits, error);
                throw;
            }

            ThrowIfClosedByWork(transaction);
            var committedByWork = physical.Commits != commits; // read before RunInTransaction's own commit
            ThrowIfEndedByWork(transaction, physical, rental, run, committedByWork);
            if (!transaction.IsCompleted)
            {
                try
                {
                    await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (InvalidOperationException) when (transaction.EndedByClose && !committedByWork)
                {
                    ThrowIfClosedByWork(transaction); // as in RunOnce
                    throw;
                }
                catch (Exception error) when (committedByWork)
                {
                    NotRunAgain(run, committed: true, error);
                    throw;
                }
            }

            return result;
        }
        catch (SqliteException error) when (MetBusyItself(error))
        {
            run.Deferred = false;
            throw;
        }
    }

    /// <summary>
    /// Whether a unit of work ended its transaction itself (Commit, Rollback, closing the connection) or committed
    /// part of it, by a <c>COMMIT</c> sent as SQL, even in a batch that begins another (<c>COMMIT; BEGIN</c>).
    /// </summary>
    private static bool EndedByWork(SaverDbTransaction transaction, PhysicalConnection physical, long commitsAtBegin)
        => transaction.IsCompleted || physical.Commits != commitsAtBegin;

    /// <summary>
    /// For a unit of work that ended its transaction itself, or committed part of it, and then failed with
    /// <paramref name="error"/>: SQLITE_BUSY or SQLITE_LOCKED becomes an <see cref="InvalidOperationException"/> saying
    /// it is not run again, which the built-in policy does not retry; then, and when it <paramref name="committed"/>
    /// something, the run refuses another attempt (see <see cref="UnitOfWorkRun.EndedByWork"/>). The caller rethrows
    /// any other error as it is (after a rollback, which kept nothing, another attempt may run).
    /// </summary>
    /// <exception cref="InvalidOperationException"><paramref name="error"/> is transient.</exception>
    private static void NotRunAgain(UnitOfWorkRun run, bool committed, Exception error)
    {
        var transient = SaverRetryStrategy.IsTransient(error);
        if (committed || transient)
        {
            run.EndedByWork(error);
        }

        if (transient)
        {
            var why = committed
                ? "since what it committed would be applied twice: let RunInTransaction commit"
                : "as it would end its transaction the same way: let RunInTransaction end it (throw from the delegate to abandon the unit of work)";
            throw new InvalidOperationException($"The unit of work ended its transaction itself (Commit, Rollback, a COMMIT sent as SQL, closing the connection) and then failed ({error.Message}). RunInTransaction does not run it again, {why}.", error);
        }
    }

    /// <summary>
    /// Refuses to report as committed a unit of work whose delegate returned after ending its transaction itself
    /// without committing it (the transaction's Rollback, or disposing it), or after beginning another transaction,
    /// which is rolled back: left open, it would keep the write gate from every other writer of the process (not the
    /// library's own write held open for a reader, which commits as the reader closes; nor anything once Close has
    /// handed the connection on, having rolled back what was this rental's). Either way the run is over, whatever the
    /// retry strategy (see <see cref="UnitOfWorkRun"/>).
    /// </summary>
    private void ThrowIfEndedByWork(SaverDbTransaction transaction, PhysicalConnection physical, int rental, UnitOfWorkRun run, bool committedByWork)
    {
        if (!transaction.IsCompleted)
        {
            return;
        }

        InvalidOperationException? refusal = null;
        if (TryBeginCall(physical, rental) is not null)
        {
            try
            {
                if (!physical.WriteOpenForReader && (Transaction is not null || physical.InTransaction))
                {
                    Transaction?.Dispose(); // rolls it back and leaves the gate; one begun as SQL is rolled back here
                    physical.TryRollback();
                    physical.ReleaseGateUnlessTransactionKept();
                    var committed = transaction.Committed || committedByWork ? " (what the delegate committed before stays committed)" : string.Empty;
                    refusal = new InvalidOperationException(
                        $"The unit of work ended its transaction itself and began another (BeginTransaction, or a BEGIN sent as SQL), which it left open: RunInTransaction rolled that one back{committed}. Let RunInTransaction end the transaction it began, and begin no other in the delegate.");
                }
            }
            finally
            {
                physical.Calls.End();
            }
        }

        refusal ??= transaction.Committed ? null : new InvalidOperationException(
            $"The unit of work rolled its transaction back itself (the transaction's Rollback, or disposing it): nothing it wrote in it was committed{(committedByWork ? " (what it wrote after it, outside it, was)" : string.Empty)}, and RunInTransaction does not run it again. To abandon a unit of work, throw an exception from the delegate: RunInTransaction rolls back and rethrows it.");
        if (refusal is not null)
        {
            run.EndedByWork(refusal);
            throw refusal;
        }
    }

    /// <summary>
    /// Refuses to report a unit of work as committed when its connection was closed while it ran (by the unit of work,
    /// with a reader opened with <see cref="CommandBehavior.CloseConnection"/>, say, or from another thread), which
    /// rolled its transaction back.
    /// </summary>
    private static void ThrowIfClosedByWork(SaverDbTransaction transaction)
    {
        if (transaction.EndedByClose)
        {
            throw new InvalidOperationException(
                "The connection was closed while the unit of work ran (by the unit of work, with a reader opened with CommandBehavior.CloseConnection, say, or from another thread), which rolled its transaction back: nothing it wrote in it was committed. RunInTransaction does not run it again; keep the connection open until RunInTransaction returns.");
        }
    }

    /// <summary>The data source of the connection string; a connection with no connection string has none.</summary>
    /// <exception cref="InvalidOperationException">No connection string was set.</exception>
    private SaverDataSource GetDataSource()
        => _dataSource ?? throw new InvalidOperationException("The ConnectionString property has not been set: it needs at least a Data Source.");

    private ConnectionPool Pool() => GetDataSource().Pool;

    private void OnOpened(PhysicalConnection physical)
    {
        Volatile.Write(ref _rentals, _rentals + 1);
        Volatile.Write(ref _physical, physical); // after the count (see InRental)
        EndOpening();
        Interlocked.MemoryBarrier();
        if (_disposed)
        {
            // Disposed while OpenAsync waited for the pool, on another thread: nothing else would close it, and its
            // finalizer is suppressed. Close returns it once, whichever thread gets there first.
            Close();
            ObjectDisposedException.ThrowIf(true, this);
        }

        OnStateChange(Opened);
    }

    /// <summary>
    /// The record of <see cref="AfterBoth"/>: its task completes when the first listener finds both tasks ended (a task
    /// is marked completed before its continuations run), which then lets go of them.
    /// </summary>
    private sealed class BothEnded
    {
        private Task? _earlier;
        private Task? _execution;
        private readonly TaskCompletionSource _ended;

        public BothEnded(Task earlier, Task execution)
        {
            _earlier = earlier;
            _execution = execution;
            _ended = new TaskCompletionSource(this); // the task's AsyncState leads back here (see Pending)
        }

        /// <summary>Completes once both tasks have.</summary>
        public Task Ended => _ended.Task;

        public static void OneEnded(Task ended, object? both)
        {
            var self = (BothEnded)both!;
            if (Volatile.Read(ref self._earlier) is { IsCompleted: true }
                && Volatile.Read(ref self._execution) is { IsCompleted: true }
                && self._ended.TrySetResult())
            {
                Volatile.Write(ref self._earlier, null);
                Volatile.Write(ref self._execution, null);
            }
        }

        /// <summary>Whether every task of <paramref name="task"/> has ended (see <see cref="Pending"/>).</summary>
        public static bool HasEnded(Task task) => Pending(task) is null;

        /// <summary>
        /// A task of <paramref name="task"/> that has not ended, or <see langword="null"/> once all have: it has
        /// completed, or it is a record's whose tasks have all ended, down the chain of records (each the earlier task
        /// of the next) while their listeners have not run yet (they may be queued behind a caller's continuation that
        /// blocks the thread).
        /// </summary>
        public static Task? Pending(Task task)
        {
            var current = task;
            while (!current.IsCompleted)
            {
                if (current.AsyncState is not BothEnded record)
                {
                    return current;
                }

                if (Volatile.Read(ref record._execution) is not { } execution || Volatile.Read(ref record._earlier) is not { } earlier)
                {
                    continue; // the record has just completed: its task is, before its fields are cleared
                }

                if (!execution.IsCompleted)
                {
                    return execution;
                }

                current = earlier;
            }

            return null;
        }
    }
}
