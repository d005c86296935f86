using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Threading;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// Opens one data source's physical connections: the SQLite connection, its PRAGMAs, then the application's
/// connection initializer, timed and logged. A connection whose initializer fails is closed and the error thrown.
/// </summary>
/// <param name="options">The data source's options.</param>
/// <param name="strategy">Retries the PRAGMAs while the database is locked.</param>
/// <param name="initializer">The application's connection initializer, if any.</param>
/// <param name="telemetry">Times and logs each opening.</param>
/// <param name="committed">Called after each transaction a connection opened here commits, with the pages it wrote (see <see cref="PhysicalConnection.Open"/>).</param>
internal sealed class PhysicalConnectionFactory(
    SaverOptions options,
    SaverRetryStrategy strategy,
    Func<SqliteConnection, CancellationToken, Task>? initializer,
    Telemetry telemetry,
    Action<int> committed)
{
    /// <summary>Opens a connection, running an asynchronous initializer to completion on this thread.</summary>
    /// <exception cref="SqliteException">SQLite could not open the database or apply a PRAGMA.</exception>
    public PhysicalConnection Open(int generation)
        => Synchronously.Result(OpenCore(generation, options.InnerConnectionString(generation), async: false, CancellationToken.None));

    /// <summary>
    /// Opens the checkpointer's own connection (see <see cref="SaverOptions.CheckpointerConnectionString"/>), in
    /// generation 0, blocking; <paramref name="cancellationToken"/> ends the PRAGMAs' waits for a lock and between
    /// their attempts, and is handed to the initializer.
    /// </summary>
    /// <exception cref="SqliteException">SQLite could not open the database or apply a PRAGMA.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public PhysicalConnection OpenForCheckpoints(CancellationToken cancellationToken)
        => Synchronously.Result(OpenCore(generation: 0, options.CheckpointerConnectionString, async: false, cancellationToken));

    /// <summary>Opens a connection, awaiting an asynchronous initializer.</summary>
    /// <exception cref="SqliteException">SQLite could not open the database or apply a PRAGMA.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the PRAGMAs waited for a lock or between their attempts, or during the initializer.</exception>
    public ValueTask<PhysicalConnection> OpenAsync(int generation, CancellationToken cancellationToken)
        => OpenCore(generation, options.InnerConnectionString(generation), async: true, cancellationToken);

    private async ValueTask<PhysicalConnection> OpenCore(int generation, string connectionString, bool async, CancellationToken cancellationToken)
    {
        var started = telemetry.StartOpening();
        var connection = await PhysicalConnection.Open(options, connectionString, strategy, generation, committed, async, cancellationToken).ConfigureAwait(false);
        try
        {
            if (initializer is not null)
            {
                if (async)
                {
                    await initializer(connection.Sqlite, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    Synchronously.WithoutContext(
                        static state => state.Initializer(state.Connection, state.Token),
                        (Initializer: initializer, Connection: connection.Sqlite, Token: cancellationToken)).GetAwaiter().GetResult();
                }

                if (connection.MemdbAttachedSinceNoted(initializer: true) is { } schema)
                {
                    throw connection.RefuseMemdbAttachment(schema, "The connection initializer");
                }
            }

            connection.RememberOpened(initialized: initializer is not null);
            if (options.Pooling)
            {
                connection.RememberPragmas(); // for its later renters
                connection.RememberTempSchema();
            }
        }
        catch
        {
            connection.Dispose();
            throw;
        }

        telemetry.Opened(connection.Id, started);
        return connection;
    }
}
