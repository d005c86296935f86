using SqliteSaver.Data.Configuration;

namespace SqliteSaver.Data;

/// <summary>
/// Builds a <see cref="SaverDataSource"/> with settings a connection string cannot carry: the clock that times
/// retries and idle pruning, and the retry engine.
/// </summary>
/// <example>
/// <code>
/// var dataSource = new SaverDataSourceBuilder("Data Source=app.db;Retry=8")
///     .UseTimeProvider(TimeProvider.System)
///     .Build();
/// </code>
/// </example>
public sealed class SaverDataSourceBuilder
{
    private TimeProvider _timeProvider = TimeProvider.System;
    private SaverRetryStrategy? _retryStrategy;

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

    /// <summary>Sets the clock for retry delays and idle pruning (a fake one makes backoff schedules exact in tests).</summary>
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
        => SaverDataSource.Create(ConnectionString, SaverOptions.Parse(ConnectionString), _timeProvider, _retryStrategy);
}
