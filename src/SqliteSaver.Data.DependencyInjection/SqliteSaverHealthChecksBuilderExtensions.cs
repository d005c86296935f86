using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using SqliteSaver.Data.DependencyInjection;

namespace SqliteSaver.Data;

/// <summary>Adds a health check for the registered <see cref="SaverDataSource"/>.</summary>
public static class SqliteSaverHealthChecksBuilderExtensions
{
    /// <summary>
    /// Checks the <see cref="SaverDataSource"/> registered with
    /// <see cref="SqliteSaverServiceCollectionExtensions.AddSqliteSaverDataSource"/>: Healthy when a connection opens
    /// and <c>SELECT 1</c> runs; Degraded when every pooled connection is in use or the <c>-wal</c> file is over
    /// Journal Size Limit; <paramref name="failureStatus"/> (Unhealthy by default) when the database cannot be opened,
    /// or the data source cannot be built or was disposed.
    /// </summary>
    /// <param name="builder">The health checks builder.</param>
    /// <param name="name">The check's name.</param>
    /// <param name="failureStatus">The status reported when the check fails; Unhealthy when null.</param>
    /// <param name="tags">Tags to filter checks by.</param>
    /// <param name="timeout">
    /// How long the check may take; the host's default (none) when null. Give one shorter than the probe's: opening a new
    /// physical connection on a database another process keeps locked waits Busy Timeout per attempt (about 31 s with
    /// the defaults); the timeout ends those waits.
    /// </param>
    /// <returns>The health checks builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> or <paramref name="name"/> is null.</exception>
    public static IHealthChecksBuilder AddSqliteSaver(
        this IHealthChecksBuilder builder,
        string name = "sqlite-saver",
        HealthStatus? failureStatus = null,
        IEnumerable<string>? tags = null,
        TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(name);
        return builder.Add(new HealthCheckRegistration(
            name,
            static provider => new SaverHealthCheck(provider),
            failureStatus,
            tags,
            timeout));
    }
}
