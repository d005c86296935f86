using System.Collections.Concurrent;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Pooling;
using SqliteSaver.Data.Resilience;
using SqliteSaver.Data.Wal;

namespace SqliteSaver.Data;

/// <summary>
/// Everything the library keeps for one database: the parsed options and the pool of open physical connections.
/// The modern ADO.NET entry point: create one per database at start-up, keep it for the life of the application,
/// and open connections from it.
/// </summary>
/// <remarks>
/// <see cref="SaverDbConnection"/>s built from a connection string share a process-wide data source per normalized
/// connection string; a data source from <see cref="Create(string)"/> has a pool of its own that lives until it is disposed.
/// One from <see cref="SaverProviderFactory.CreateDataSource"/> opens connections from that process-wide data source, as
/// Microsoft.Data.Sqlite's does from its pool, and disposing it does nothing (but for a pooled <c>:memory:</c> database).
/// </remarks>
public sealed class SaverDataSource : DbDataSource
{
    /// <summary>The most connection strings <see cref="GetShared"/> remembers; one past them is parsed at each open.</summary>
    internal const int MaxSharedConnectionStrings = 4096;

    private static readonly ConcurrentDictionary<string, SaverDataSource> SharedByConnectionString = new();
    private static readonly ConcurrentDictionary<string, SaverDataSource> SharedByPoolKey = new();
    private static readonly ConcurrentDictionary<SaverDataSource, byte> Live = new();
    private static readonly Dictionary<string, WeakReference<WriteGate>> GatesByDatabase = new(StringComparer.Ordinal);

    private readonly string _connectionString;
    private readonly bool _onSharedPool; // see ForFactory: disposing it does nothing
    private int _disposed;

    static SaverDataSource()
    {
        // Close every pool when the process exits normally, so SQLite can checkpoint and remove its -wal and -shm files.
        AppDomain.CurrentDomain.ProcessExit += static (_, _) => ClearAll();
    }

    private SaverDataSource(
        string connectionString,
        SaverOptions options,
        TimeProvider time,
        SaverRetryStrategy? retryStrategy = null,
        ILoggerFactory? loggerFactory = null,
        Func<SqliteConnection, CancellationToken, Task>? initializer = null,
        string? name = null)
    {
        _connectionString = connectionString;
        Options = options;
        Telemetry = new Telemetry(name ?? DefaultName(connectionString), loggerFactory ?? NullLoggerFactory.Instance, time);
        retryStrategy = retryStrategy is null ? new RetryPolicy(options, time, Telemetry) : new RunsNothingAfterSuccess(retryStrategy);
        var factory = new PhysicalConnectionFactory(options, retryStrategy, initializer, Telemetry, pages => Checkpointer!.Committed(pages));
        Pool = new ConnectionPool(options, time, factory, Telemetry, (last, drained) => Checkpointer!.LastClosing(last, drained));
        var gate = CreateGate(options);
        Checkpointer = new Checkpointer(options, factory, Telemetry, time, Pool, gate);
        Executor = new Executor(retryStrategy, gate, Telemetry);
        Live.TryAdd(this, 0);
    }

    /// <summary>A data source on the pool and checkpointer of <paramref name="shared"/> (see <see cref="ForFactory"/>).</summary>
    private SaverDataSource(SaverDataSource shared, string connectionString)
    {
        _connectionString = connectionString;
        _onSharedPool = true;
        Options = shared.Options;
        Telemetry = shared.Telemetry;
        Pool = shared.Pool;
        Checkpointer = shared.Checkpointer;
        Executor = shared.Executor;
    }

    /// <summary>The connection string this data source was created from, exactly as given.</summary>
    public override string ConnectionString => _connectionString;

    internal SaverOptions Options { get; }

    internal ConnectionPool Pool { get; }

    internal Executor Executor { get; }

    internal Checkpointer Checkpointer { get; }

    internal Telemetry Telemetry { get; }

    /// <summary>Every data source not yet disposed, shared or not, for the metrics' observable instruments.</summary>
    internal static ICollection<SaverDataSource> LiveDataSources => Live.Keys;

    /// <summary>Connection strings <see cref="GetShared"/> remembers (at most <see cref="MaxSharedConnectionStrings"/>).</summary>
    internal static int SharedConnectionStringCount => SharedByConnectionString.Count;

    /// <summary>Entries in the table of shared write gates, collected ones not yet pruned included.</summary>
    internal static int SharedGateCount
    {
        get
        {
            lock (GatesByDatabase)
            {
                return GatesByDatabase.Count;
            }
        }
    }

    /// <summary>
    /// The name of this data source in metrics (tag <c>db.client.connection.pool.name</c>) and logs: the one given to
    /// <see cref="SaverDataSourceBuilder.Name"/>, else the connection string without its Password.
    /// </summary>
    public string Name => Telemetry.PoolName;

    /// <summary>A snapshot of the pool and of what this data source has counted since it was created.</summary>
    public SaverDataSourceStatistics Statistics
    {
        get
        {
            var (open, idle, inUse, waiting) = Pool.Counts();
            var last = Checkpointer.Last;
            return new SaverDataSourceStatistics
            {
                Total = open,
                Idle = idle,
                InUse = inUse,
                Waiting = waiting,
                MaxPoolSize = Options.MaxPoolSize,
                Timeouts = Telemetry.Timeouts,
                Retries = Telemetry.Retries,
                TransientErrors = Telemetry.TransientErrors,
                RetriesExhausted = Telemetry.RetriesExhausted,
                LockTimeouts = Telemetry.LockTimeouts,
                Leaked = Telemetry.Leaked,
                LastCheckpointResult = last?.Result,
                LastCheckpointTime = last?.Time,
            };
        }
    }

    /// <summary>The result of the last checkpoint run by this data source (background or <see cref="Checkpoint(CheckpointMode)"/>), if any.</summary>
    public CheckpointResult? LastCheckpointResult => Checkpointer.Last?.Result;

    /// <summary>When the last checkpoint run by this data source finished.</summary>
    public DateTimeOffset? LastCheckpointTime => Checkpointer.Last?.Time;

    /// <summary>Why the last background checkpoint failed; <see langword="null"/> once one succeeds again.</summary>
    public Exception? LastCheckpointError => Checkpointer.LastError;

    /// <summary>Creates a data source with a pool of its own.</summary>
    /// <param name="connectionString">The connection string; see <see cref="SaverConnectionStringBuilder"/> for its keywords.</param>
    /// <returns>A new data source; dispose it to close its connections.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="connectionString"/> is null.</exception>
    /// <exception cref="ArgumentException">A keyword is unknown or a value is invalid.</exception>
    public static SaverDataSource Create(string connectionString)
    {
        ArgumentNullException.ThrowIfNull(connectionString);
        return new SaverDataSource(connectionString, SaverOptions.Parse(connectionString), TimeProvider.System);
    }

    /// <summary>
    /// A data source for <see cref="SaverProviderFactory.CreateDataSource"/>: its connections rent from the process-wide
    /// data source of the connection string, as a <see cref="SaverDbConnection"/> built from it does, and disposing it
    /// does nothing, as with Microsoft.Data.Sqlite's data source, which code that swaps the factory may create for
    /// every call and never dispose; its Clear clears that pool. For a pooled <c>:memory:</c> database, a data source
    /// with a pool, and so a database, of its own, as one per test would have with Microsoft.Data.Sqlite.
    /// </summary>
    /// <exception cref="ArgumentException">A keyword is unknown or a value is invalid.</exception>
    internal static SaverDataSource ForFactory(string connectionString)
    {
        var options = SaverOptions.Parse(connectionString);
        return options.PrivateMemory
            ? new SaverDataSource(connectionString, options, TimeProvider.System) // a database of its own, as README promises
            : new SaverDataSource(GetShared(connectionString), connectionString);
    }

    /// <summary>Creates a data source with a pool of its own, for <see cref="SaverDataSourceBuilder"/>.</summary>
    internal static SaverDataSource Create(
        string connectionString,
        TimeProvider time,
        SaverRetryStrategy? retryStrategy,
        ILoggerFactory? loggerFactory,
        Func<SqliteConnection, CancellationToken, Task>? initializer,
        string? name)
        => new(connectionString, SaverOptions.Parse(connectionString), time, retryStrategy, loggerFactory, initializer, name);

    /// <summary>Creates a closed connection that rents from this data source's pool.</summary>
    /// <returns>A new connection, not yet open.</returns>
    public new SaverDbConnection CreateConnection() => new(this);

    /// <summary>Rents an open connection from this data source's pool.</summary>
    /// <returns>An open connection; dispose it to return it.</returns>
    /// <exception cref="TimeoutException">Every pooled connection stayed in use for longer than Pool Timeout.</exception>
    /// <exception cref="Microsoft.Data.Sqlite.SqliteException">A new physical connection could not be opened.</exception>
    /// <exception cref="ObjectDisposedException">The data source was disposed.</exception>
    public new SaverDbConnection OpenConnection()
    {
        var connection = CreateConnection();
        connection.Open();
        return connection;
    }

    /// <summary>Rents an open connection from this data source's pool, waiting without blocking a thread.</summary>
    /// <param name="cancellationToken">Cancels the wait for a free connection.</param>
    /// <returns>An open connection; dispose it to return it.</returns>
    /// <exception cref="TimeoutException">Every pooled connection stayed in use for longer than Pool Timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="Microsoft.Data.Sqlite.SqliteException">A new physical connection could not be opened.</exception>
    /// <exception cref="ObjectDisposedException">The data source was disposed.</exception>
    public new async ValueTask<SaverDbConnection> OpenConnectionAsync(CancellationToken cancellationToken = default)
    {
        var connection = CreateConnection();
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        return connection;
    }

    /// <summary>
    /// Closes every idle physical connection now and every rented one when it is returned, releasing the database
    /// file. With Checkpoint On Close, a TRUNCATE checkpoint runs once the last connection has closed. The data
    /// source stays usable and opens new connections on demand.
    /// </summary>
    public void Clear()
    {
        Checkpointer.StopOpening(); // its Close would wait for it
        Pool.Clear();
        Checkpointer.Close(CloseReason.Cleared);
    }

    /// <summary>
    /// Runs a WAL checkpoint on a connection the data source keeps for checkpoints, outside the pool, so it works
    /// even while the caller holds every pooled connection. It waits at most 250 ms for another checkpoint to end, and
    /// at most 250 ms for each lock it then needs (the writer's, each reader's). The first one, or the first since the
    /// pool had no connection open, opens that connection, whose PRAGMAs wait for locks as a pooled connection's do.
    /// </summary>
    /// <param name="mode">The checkpoint mode; <see cref="CheckpointMode.Passive"/> by default.</param>
    /// <returns>SQLite's figures (see <see cref="CheckpointExtensions.Checkpoint"/>).</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="mode"/> is not a defined <see cref="CheckpointMode"/>.</exception>
    /// <exception cref="ObjectDisposedException">The data source was disposed.</exception>
    /// <exception cref="InvalidOperationException">
    /// The data source opens a WAL database read-only (Mode=ReadOnly or mode=ro); the pool was cleared while
    /// connections were rented, and only they are open (the file at the path may be a replacement, which a connection
    /// opened now would read with the old <c>-wal</c> file they keep); the checkpoint connection is to open while the
    /// database file the pool's connections have open was replaced or deleted, not cleared; or the pool was cleared
    /// while the checkpoint connection opened.
    /// </exception>
    /// <exception cref="Microsoft.Data.Sqlite.SqliteException">SQLite reported an error other than busy.</exception>
    public CheckpointResult Checkpoint(CheckpointMode mode = CheckpointMode.Passive) => Checkpoint(mode, CancellationToken.None);

    /// <summary>
    /// Runs <see cref="Checkpoint(CheckpointMode)"/> on the caller's thread (SQLite has no asynchronous I/O);
    /// <paramref name="cancellationToken"/> is checked before it starts, and ends the waits for another checkpoint here,
    /// of the checkpoint connection's opening (its PRAGMAs' waits for a lock and between attempts, its initializer) and
    /// of the checkpoint.
    /// </summary>
    /// <param name="mode">The checkpoint mode.</param>
    /// <param name="cancellationToken">Ends the checkpoint's waits.</param>
    /// <returns>SQLite's figures.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="mode"/> is not a defined <see cref="CheckpointMode"/>.</exception>
    /// <exception cref="ObjectDisposedException">The data source was disposed.</exception>
    /// <exception cref="InvalidOperationException">As for <see cref="Checkpoint(CheckpointMode)"/>.</exception>
    public Task<CheckpointResult> CheckpointAsync(CheckpointMode mode = CheckpointMode.Passive, CancellationToken cancellationToken = default)
        => CheckpointExtensions.AsTask(() => Checkpoint(mode, cancellationToken), cancellationToken);

    /// <summary>Runs a PASSIVE checkpoint as <see cref="CheckpointAsync(CheckpointMode, CancellationToken)"/> does.</summary>
    /// <param name="cancellationToken">Ends the checkpoint's waits.</param>
    /// <returns>SQLite's figures.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The data source was disposed.</exception>
    public Task<CheckpointResult> CheckpointAsync(CancellationToken cancellationToken)
        => CheckpointAsync(CheckpointMode.Passive, cancellationToken);

    /// <summary>
    /// The WAL's status (journal mode, <c>-wal</c> size and frames), read on the data source's checkpoint connection;
    /// from the <c>-wal</c> file's size alone, in the journal mode that connection last found, when a checkpoint keeps
    /// it past 250 ms, or when the pool was cleared while connections were rented and only they are open (that
    /// connection then opens nothing: see <see cref="Checkpoint(CheckpointMode)"/>). Until that connection has opened
    /// once there is no <c>-wal</c> path to fall back on, and a call that finds it opening waits for it to open.
    /// </summary>
    /// <returns>The status.</returns>
    /// <exception cref="ObjectDisposedException">The data source was disposed.</exception>
    /// <exception cref="InvalidOperationException">
    /// The pool was cleared while connections were rented, only they are open, and the checkpoint connection never
    /// opened; that connection is to open while the database file the pool's connections have open was replaced or
    /// deleted, not cleared; or the pool was cleared while it opened.
    /// </exception>
    public WalStatus GetWalStatus() => GetWalStatus(CancellationToken.None);

    /// <summary>
    /// <see cref="GetWalStatus()"/>, whose waits for the checkpoint connection (another call opening it, and its own
    /// opening: its PRAGMAs' waits for a lock) end with <paramref name="cancellationToken"/>, for the health check.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while it waited.</exception>
    internal WalStatus GetWalStatus(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        try
        {
            return Checkpointer.GetStatus(cancellationToken);
        }
        catch (InvalidOperationException exception) when (exception is not ObjectDisposedException && _disposed != 0)
        {
            throw DisposedMeanwhile();
        }
    }

    /// <summary>Whether the data source was disposed (or its disposal has begun).</summary>
    internal bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    private CheckpointResult Checkpoint(CheckpointMode mode, CancellationToken cancellationToken)
    {
        CheckpointExtensions.CheckMode(mode);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        CheckpointResult result;
        try
        {
            result = Checkpointer.Run(mode, cancellationToken);
        }
        catch (InvalidOperationException exception) when (exception is not ObjectDisposedException && _disposed != 0)
        {
            throw DisposedMeanwhile();
        }

        // Disposed while it waited for a background checkpoint: Dispose, not another checkpoint, is why it did not run.
        ObjectDisposedException.ThrowIf(_disposed != 0 && result == Checkpointer.AnotherCheckpointRuns, this);
        return result;
    }

    /// <summary>
    /// What a checkpoint or WAL status read that disposal overtook throws in place of the checkpointer's refusal: the
    /// pool, disposed first, counts the connections still rented as cleared, so the checkpointer will not open its own.
    /// </summary>
    private ObjectDisposedException DisposedMeanwhile() => new(GetType().FullName);

    /// <summary>
    /// The shared data source for a connection string, created on first use: one per pool (see
    /// <see cref="SaverOptions.PoolKey"/>), found by the string as given while the table of strings has room, so that
    /// an application that builds a string of its own for every open does not grow it without end. A string whose Data
    /// Source follows the application domain's DataDirectory (see <see cref="SaverOptions.FollowsDataDirectory"/>:
    /// Microsoft.Data.Sqlite opens it against that, read at each open; a test fixture may give each test a folder of
    /// its own) is found with the DataDirectory of the moment too, when that is set, read once for the key and the
    /// path; other strings never read it.
    /// </summary>
    /// <exception cref="ArgumentException">A keyword is unknown or a value is invalid.</exception>
    internal static SaverDataSource GetShared(string connectionString)
    {
        // Found by the string alone: made without a DataDirectory, or not following it.
        if (SharedByConnectionString.TryGetValue(connectionString, out var dataSource) && !dataSource.Options.FollowsDataDirectory)
        {
            return dataSource;
        }

        var directory = SaverOptions.DataDirectoryOfTheMoment();
        var keyWithDirectory = directory is null ? null : connectionString + "\0" + directory;
        if (keyWithDirectory is null ? dataSource is not null : SharedByConnectionString.TryGetValue(keyWithDirectory, out dataSource))
        {
            return dataSource!;
        }

        var options = SaverOptions.Parse(connectionString, directory);
        lock (SharedByPoolKey)
        {
            if (!SharedByPoolKey.TryGetValue(options.PoolKey, out dataSource))
            {
                dataSource = new SaverDataSource(connectionString, options, TimeProvider.System);
                SharedByPoolKey[options.PoolKey] = dataSource;
            }
        }

        var key = keyWithDirectory is not null && options.FollowsDataDirectory ? keyWithDirectory : connectionString;
        return SharedByConnectionString.Count < MaxSharedConnectionStrings ? SharedByConnectionString.GetOrAdd(key, dataSource) : dataSource;
    }

    /// <summary>
    /// Clears the pool of every data source in the process but those keeping a private in-memory database (see
    /// <see cref="SaverOptions.PrivateMemory"/>), which a clear empties, and which belongs to its data source alone.
    /// </summary>
    internal static void ClearAll()
    {
        foreach (var dataSource in Live.Keys.Where(dataSource => !dataSource.Options.PrivateMemory))
        {
            dataSource.Clear();
        }
    }

    /// <inheritdoc />
    protected override DbConnection CreateDbConnection() => CreateConnection();

    /// <summary>The connection string without its Password, so that a secret never reaches metrics or logs.</summary>
    private static string DefaultName(string connectionString)
    {
        var builder = new SaverConnectionStringBuilder(connectionString);
        builder.Remove(Keywords.Password.Name);
        return builder.ConnectionString;
    }

    /// <summary>
    /// One gate per database in the process (a file, or an in-memory database SQLite shares by name), shared by every
    /// data source on it; one of its own for a data source's private in-memory database; none where each connection
    /// has a database of its own.
    /// </summary>
    private static WriteGate? CreateGate(SaverOptions options) => !options.WriteGate || options.DatabasePerConnection
        ? null
        : options.GateKey is { } key ? SharedGate(key) : new WriteGate();

    /// <summary>
    /// The gate of the database <paramref name="key"/> names. The table holds gates weakly, so a gate lives as long as
    /// a data source or connection on its database does; the entries of collected gates go when a gate is added.
    /// </summary>
    private static WriteGate SharedGate(string key)
    {
        lock (GatesByDatabase)
        {
            if (GatesByDatabase.TryGetValue(key, out var entry) && entry.TryGetTarget(out var gate))
            {
                return gate;
            }

            foreach (var (name, weak) in GatesByDatabase)
            {
                if (!weak.TryGetTarget(out _))
                {
                    GatesByDatabase.Remove(name);
                }
            }

            gate = new WriteGate();
            GatesByDatabase[key] = new WeakReference<WriteGate>(gate);
            return gate;
        }
    }

    /// <summary>Disposes the data source as <see cref="DbDataSource.Dispose()"/> does; closing connections is synchronous in SQLite.</summary>
    /// <returns>A task that completes when the data source is disposed.</returns>
    protected override async ValueTask DisposeAsyncCore()
    {
        // DbDataSource's own DisposeAsyncCore does nothing, so "await using" would leave the pool open.
        Dispose();
        await base.DisposeAsyncCore().ConfigureAwait(false);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing && !_onSharedPool && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Live.TryRemove(this, out _);
            Checkpointer.StopOpening(); // as in Clear
            try
            {
                Pool.Dispose();
            }
            finally
            {
                Checkpointer.Dispose();
            }
        }

        base.Dispose(disposing);
    }
}
