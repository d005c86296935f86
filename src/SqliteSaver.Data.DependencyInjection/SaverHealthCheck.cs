using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using SqliteSaver.Data.Pooling;
using SqliteSaver.Data.Wal;

namespace SqliteSaver.Data.DependencyInjection;

/// <summary>
/// Opens a connection and runs <c>SELECT 1</c>, then compares the <c>-wal</c> file with Journal Size Limit. When the pool
/// is exhausted it does not queue for a connection: it reads the WAL status on the data source's checkpoint
/// connection, which is outside the pool, to tell an exhausted pool (Degraded) from a database that cannot be opened.
/// The data source is resolved as the check runs, so that one that cannot be built (or a container already disposed)
/// makes the check fail rather than throw.
/// </summary>
internal sealed class SaverHealthCheck(IServiceProvider services) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        SaverDataSource dataSource;
        try
        {
            dataSource = services.GetRequiredService<SaverDataSource>();
        }
        catch (Exception exception)
        {
            var description = exception is ObjectDisposedException ? Disposed : $"The data source cannot be built: {exception.Message}";
            return new HealthCheckResult(context.Registration.FailureStatus, description, exception);
        }

        var data = new Dictionary<string, object>();
        var failed = "The database cannot be opened"; // what the step running now says when it fails
        try
        {
            // Connections still closing hold slots only until they are closed: an open waits that long, no longer.
            var exhausted = dataSource.Pool.Renters() >= dataSource.Statistics.MaxPoolSize;
            PoolTimeoutException? timedOut = null;
            if (!exhausted)
            {
                try
                {
                    await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
                    failed = "SELECT 1 failed"; // a resilience pipeline refused it (an open circuit), say: the file opened
                    await SelectOneAsync(connection, cancellationToken).ConfigureAwait(false);
                }
                catch (PoolTimeoutException exception)
                {
                    // The pool filled up after the look above: busy, not broken. Any other TimeoutException (the
                    // connection initializer's, say) is a failure.
                    timedOut = exception;
                }
            }

            // Synchronous, and it may open the checkpoint connection: its waits for a lock end with the token, and the
            // check with it, whatever else the opening waits for (a synchronous connection initializer's wait).
            WalStatus? wal = null;
            failed = "The WAL status cannot be read";

            try
            {
                var status = await Task.Run(() => dataSource.GetWalStatus(cancellationToken), cancellationToken).WaitAsync(cancellationToken).ConfigureAwait(false);
                data["wal_bytes"] = status.WalFileBytes;
                wal = status;
            }
            catch (ConnectionsBusyException)
            {
                // A connection stayed inside SQLite (a long query, say), or only connections rented before a clear are
                // open, so the checkpoint connection did not open: busy, not broken; the WAL is not looked at this time.
            }

            var statistics = AddStatistics(dataSource, data); // as the check leaves the pool
            if (timedOut is not null)
            {
                return HealthCheckResult.Degraded($"Every pooled connection stayed in use: {timedOut.Message}", timedOut, data);
            }

            if (exhausted)
            {
                return HealthCheckResult.Degraded(
                    Invariant($"Every pooled connection is in use ({statistics.InUse} of Max Pool Size={statistics.MaxPoolSize}) and {statistics.Waiting} {(statistics.Waiting == 1 ? "caller waits" : "callers wait")}."),
                    data: data);
            }

            var limit = new SaverConnectionStringBuilder(dataSource.ConnectionString).JournalSizeLimit;
            if (wal is { JournalMode: "wal", WalFileBytes: var walBytes } && limit >= 0 && walBytes > limit)
            {
                return HealthCheckResult.Degraded(
                    Invariant($"The -wal file is {walBytes} bytes, over Journal Size Limit={limit}: long readers or writers keep checkpoints from resetting it."),
                    data: data);
            }

            return HealthCheckResult.Healthy(data: data);
        }
        catch (Exception exception) when (!cancellationToken.IsCancellationRequested)
        {
            AddStatistics(dataSource, data);
            var description = dataSource.IsDisposed ? Disposed : $"{failed}: {exception.Message}";
            return new HealthCheckResult(context.Registration.FailureStatus, description, exception, data);
        }
    }

    /// <summary>What a check of a data source disposed before it ran, or while it ran, reports.</summary>
    private const string Disposed = "The data source was disposed: the application is stopping, or something disposed it.";

    /// <summary>Adds the pool's statistics of this moment to <paramref name="data"/>, and returns them.</summary>
    private static SaverDataSourceStatistics AddStatistics(SaverDataSource dataSource, Dictionary<string, object> data)
    {
        var statistics = dataSource.Statistics;
        data["total"] = statistics.Total;
        data["idle"] = statistics.Idle;
        data["in_use"] = statistics.InUse;
        data["waiting"] = statistics.Waiting;
        data["max_pool_size"] = statistics.MaxPoolSize;
        return statistics;
    }

    private static async Task SelectOneAsync(SaverDbConnection connection, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1";
        await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
