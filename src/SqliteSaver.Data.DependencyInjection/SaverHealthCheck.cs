using System.Globalization;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using SqliteSaver.Data.Pooling;

namespace SqliteSaver.Data.DependencyInjection;

/// <summary>
/// Opens a connection and runs <c>SELECT 1</c>, then compares the <c>-wal</c> file with Journal Size Limit. When the pool
/// is exhausted it does not queue for a connection: it reads the WAL status on the data source's checkpoint
/// connection, which is outside the pool, to tell an exhausted pool (Degraded) from a database that cannot be opened.
/// </summary>
internal sealed class SaverHealthCheck(SaverDataSource dataSource) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object>();
        try
        {
            // Connections still closing hold slots only until they are closed: an open waits that long, no longer.
            var exhausted = dataSource.Pool.Renters() >= dataSource.Statistics.MaxPoolSize;
            PoolTimeoutException? timedOut = null;
            if (!exhausted)
            {
                try
                {
                    await SelectOneAsync(cancellationToken).ConfigureAwait(false);
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
            var wal = await Task.Run(() => dataSource.GetWalStatus(cancellationToken), cancellationToken).WaitAsync(cancellationToken).ConfigureAwait(false);
            data["wal_bytes"] = wal.WalFileBytes;
            var statistics = AddStatistics(data); // as the check leaves the pool
            if (timedOut is not null)
            {
                return HealthCheckResult.Degraded($"Every pooled connection stayed in use: {timedOut.Message}", timedOut, data);
            }

            if (exhausted)
            {
                return HealthCheckResult.Degraded(
                    Invariant($"Every pooled connection is in use ({statistics.InUse} of Max Pool Size={statistics.MaxPoolSize}) and {statistics.Waiting} callers wait."),
                    data: data);
            }

            var limit = new SaverConnectionStringBuilder(dataSource.ConnectionString).JournalSizeLimit;
            if (wal.JournalMode == "wal" && limit >= 0 && wal.WalFileBytes > limit)
            {
                return HealthCheckResult.Degraded(
                    Invariant($"The -wal file is {wal.WalFileBytes} bytes, over Journal Size Limit={limit}: long readers or writers keep checkpoints from resetting it."),
                    data: data);
            }

            return HealthCheckResult.Healthy(data: data);
        }
        catch (Exception exception) when (!cancellationToken.IsCancellationRequested)
        {
            AddStatistics(data);
            return new HealthCheckResult(context.Registration.FailureStatus, $"The database cannot be opened: {exception.Message}", exception, data);
        }
    }

    /// <summary>Adds the pool's statistics of this moment to <paramref name="data"/>, and returns them.</summary>
    private SaverDataSourceStatistics AddStatistics(Dictionary<string, object> data)
    {
        var statistics = dataSource.Statistics;
        data["total"] = statistics.Total;
        data["idle"] = statistics.Idle;
        data["in_use"] = statistics.InUse;
        data["waiting"] = statistics.Waiting;
        data["max_pool_size"] = statistics.MaxPoolSize;
        return statistics;
    }

    private async Task SelectOneAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1";
        await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
