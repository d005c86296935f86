using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data;

/// <summary>
/// Decides how work that failed with a transient SQLite error is run again: the built-in exponential backoff
/// (from the connection string's Retry, Base Delay, Max Delay and Jitter), or another engine such as a Polly
/// pipeline (package SqliteSaver.Data.Polly), set with <see cref="SaverDataSourceBuilder.UseRetryStrategy"/>.
/// </summary>
/// <remarks>
/// The library calls a strategy only for work that is safe to run again: a whole autocommit write whose effects were
/// rolled back, a read or a single standalone statement (which has no effect when it fails), a <c>BEGIN IMMEDIATE</c>,
/// the PRAGMAs applied to a new physical connection, or a whole
/// <see cref="SaverDbConnection.RunInTransaction(Action{SaverDbTransaction}, bool)"/> unit of work. An attempt signals
/// failure by throwing; a strategy runs it again only for errors where <see cref="IsTransient"/> is true and lets
/// every other exception through unchanged. A strategy set with <see cref="SaverDataSourceBuilder.UseRetryStrategy"/>
/// that asks for another attempt after one that succeeded gets that attempt's result again, without anything run
/// again, and sees each result wrapped in a value it cannot dispose.
/// </remarks>
public abstract class SaverRetryStrategy
{
    /// <summary>Whether <paramref name="exception"/> is SQLITE_BUSY or SQLITE_LOCKED (any extended code), which waiting can cure.</summary>
    /// <param name="exception">The exception to classify.</param>
    /// <returns>
    /// <see langword="true"/> for a <see cref="SqliteException"/> with primary code 5 or 6, except the one raised
    /// when a command's whole CommandTimeout was spent waiting for the write lock.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="exception"/> is null.</exception>
    public static bool IsTransient(Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        return exception is SqliteException sqlite and not Resilience.CommandTimeoutException && (sqlite.SqliteErrorCode & 0xFF) is 5 or 6;
    }

    /// <summary>Runs <paramref name="attempt"/> until it succeeds or the strategy gives up, blocking during delays.</summary>
    /// <typeparam name="TState">What the attempt needs, passed without a closure.</typeparam>
    /// <typeparam name="TResult">What the attempt returns.</typeparam>
    /// <param name="attempt">One attempt; it throws on failure.</param>
    /// <param name="state">Passed to every attempt.</param>
    /// <param name="cancellationToken">Cancels waiting between attempts.</param>
    /// <returns>The result of the attempt that succeeded.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public abstract TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken);

    /// <summary>Runs <paramref name="attempt"/> until it succeeds or the strategy gives up, waiting without blocking a thread.</summary>
    /// <typeparam name="TState">What the attempt needs, passed without a closure.</typeparam>
    /// <typeparam name="TResult">What the attempt returns.</typeparam>
    /// <param name="attempt">One attempt; it throws on failure.</param>
    /// <param name="state">Passed to every attempt.</param>
    /// <param name="cancellationToken">Cancels waiting between attempts.</param>
    /// <returns>The result of the attempt that succeeded.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public abstract ValueTask<TResult> ExecuteAsync<TState, TResult>(
        Func<TState, CancellationToken, ValueTask<TResult>> attempt,
        TState state,
        CancellationToken cancellationToken);
}
