using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;

namespace SqliteSaver.Data;

/// <summary>
/// Builds a <see cref="SaverDataSource"/> with settings a connection string cannot carry: a name, a logger factory,
/// code to run on each new physical connection, the clock that times retries and idle pruning, and the retry engine.
/// </summary>
/// <example>
/// <code>
/// var dataSource = new SaverDataSourceBuilder("Data Source=app.db;Retry=8")
///     .UseLoggerFactory(loggerFactory)
///     .UseConnectionInitializer(connection => connection.CreateFunction("twice", (long x) => 2 * x))
///     .Build();
/// </code>
/// </example>
public sealed class SaverDataSourceBuilder
{
    private TimeProvider _timeProvider = TimeProvider.System;
    private SaverRetryStrategy? _retryStrategy;
    private ILoggerFactory? _loggerFactory;
    private Func<SqliteConnection, CancellationToken, Task>? _initializer;

    /// <summary>Starts a builder from a connection string.</summary>
    /// <param name="connectionString">The connection string; see <see cref="SaverConnectionStringBuilder"/> for its keywords.</param>
    /// <exception cref="ArgumentException">A keyword is unknown or a value is invalid.</exception>
    public SaverDataSourceBuilder(string? connectionString = null)
    {
        ConnectionStringBuilder = new SaverConnectionStringBuilder(connectionString);
    }

    /// <summary>The connection string being built, with a typed property per keyword.</summary>
    public SaverConnectionStringBuilder ConnectionStringBuilder { get; }

    /// <summary>The connection string as it stands.</summary>
    public string ConnectionString => ConnectionStringBuilder.ConnectionString;

    /// <summary>
    /// The data source's name in metrics (tag <c>db.client.connection.pool.name</c>) and logs; by default the connection
    /// string without its Password.
    /// </summary>
    public string? Name { get; set; }

    /// <summary>
    /// Logs what the data source does through <paramref name="loggerFactory"/>: physical connections opened, replaced
    /// and closed, retries and checkpoints at Debug; retries exhausted, a CommandTimeout that ran out waiting for a
    /// lock, pool timeouts, leaked connections, background checkpoints that stay busy or fail and a WAL that stays
    /// over its limit at Warning.
    /// </summary>
    /// <param name="loggerFactory">The factory for the data source's loggers (categories <c>SqliteSaver.Data.*</c>).</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="loggerFactory"/> is null.</exception>
    public SaverDataSourceBuilder UseLoggerFactory(ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _loggerFactory = loggerFactory;
        return this;
    }

    /// <summary>
    /// Runs <paramref name="initializer"/> once on each new physical connection, after its PRAGMAs: the place for
    /// <c>CreateFunction</c>, <c>CreateCollation</c>, <c>LoadExtension</c> or PRAGMAs the connection string has no
    /// keyword for. If it throws, that physical connection is closed, its pool slot freed, and the exception reaches
    /// the caller of Open. The data source's checkpoint connection runs it too, as does the connection that keeps a
    /// pooled in-memory database alive. It must leave no transaction open. A commit hook it sets (SQLitePCLRaw's
    /// <c>sqlite3_commit_hook</c>) replaces the library's, which lets
    /// <see cref="SaverDbConnection.RunInTransaction(Action{SaverDbTransaction}, bool)"/> see a <c>COMMIT</c> sent as SQL.
    /// </summary>
    /// <param name="initializer">Sets up a physical connection; it must not close it.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="initializer"/> is null.</exception>
    public SaverDataSourceBuilder UseConnectionInitializer(Action<SqliteConnection> initializer)
    {
        ArgumentNullException.ThrowIfNull(initializer);
        _initializer = (connection, _) =>
        {
            initializer(connection);
            return Task.CompletedTask;
        };
        return this;
    }

    /// <summary>
    /// The asynchronous form of <see cref="UseConnectionInitializer(Action{SqliteConnection})"/>: awaited when a
    /// connection is opened with <c>OpenAsync</c>, with its cancellation token; a synchronous <c>Open</c>, the checkpoint
    /// connection and an in-memory database's keep-alive connection wait for it on their thread (so it must not need
    /// a synchronization context that thread is blocking).
    /// </summary>
    /// <param name="initializer">Sets up a physical connection; it must not close it.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="initializer"/> is null.</exception>
    public SaverDataSourceBuilder UseConnectionInitializer(Func<SqliteConnection, CancellationToken, Task> initializer)
    {
        ArgumentNullException.ThrowIfNull(initializer);
        _initializer = initializer;
        return this;
    }

    /// <summary>
    /// Sets the clock for retry delays, idle pruning, the background checkpoints' Checkpoint Interval (and the time
    /// they record) and the pool's metrics (a fake one makes backoff schedules exact in tests; with one that is never
    /// advanced, idle connections are never pruned and no background checkpoint runs).
    /// </summary>
    /// <param name="timeProvider">The clock.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="timeProvider"/> is null.</exception>
    public SaverDataSourceBuilder UseTimeProvider(TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        _timeProvider = timeProvider;
        return this;
    }

    /// <summary>
    /// Replaces the built-in backoff (Retry, Base Delay, Max Delay, Jitter) with another retry engine, such as a
    /// Polly pipeline from the SqliteSaver.Data.Polly package.
    /// </summary>
    /// <param name="retryStrategy">The engine that runs work again after transient errors.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="retryStrategy"/> is null.</exception>
    public SaverDataSourceBuilder UseRetryStrategy(SaverRetryStrategy retryStrategy)
    {
        ArgumentNullException.ThrowIfNull(retryStrategy);
        _retryStrategy = retryStrategy;
        return this;
    }

    /// <summary>Builds a data source with a pool of its own.</summary>
    /// <returns>A new data source; dispose it to close its connections.</returns>
    /// <exception cref="ArgumentException">The connection string's values contradict each other.</exception>
    public SaverDataSource Build()
        => SaverDataSource.Create(ConnectionString, _timeProvider, _retryStrategy, _loggerFactory, _initializer, Name);
}
