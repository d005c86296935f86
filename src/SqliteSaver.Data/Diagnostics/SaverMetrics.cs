using System.Diagnostics.Metrics;

namespace SqliteSaver.Data.Diagnostics;

/// <summary>
/// The library's instruments on the Meter "SqliteSaver.Data": OpenTelemetry's database-client connection-pool metrics
/// (tagged <c>db.client.connection.pool.name</c>) and the library's own. The observable ones are read from every live
/// data source only when a listener collects them; the others are recorded only while one listens.
/// </summary>
internal static class SaverMetrics
{
    public const string MeterName = "SqliteSaver.Data";
    public const string PoolNameTag = "db.client.connection.pool.name";

    private static readonly Meter Meter = new(MeterName, typeof(SaverMetrics).Assembly.GetName().Version?.ToString());

    // Bucket boundaries for durations in seconds, from 50 µs to 10 s (OpenTelemetry's defaults are meant for milliseconds).
    private static readonly InstrumentAdvice<double> Seconds = new()
    {
        HistogramBucketBoundaries = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    };

    public static readonly Counter<long> Timeouts = Meter.CreateCounter<long>(
        "db.client.connection.timeouts", "{timeout}", "Times a caller gave up waiting for a pooled connection (Pool Timeout).");

    public static readonly Histogram<double> CreateTime = Meter.CreateHistogram<double>(
        "db.client.connection.create_time", "s", "Time to open a physical connection and apply its PRAGMAs and initializer.", tags: null, advice: Seconds);

    public static readonly Histogram<double> WaitTime = Meter.CreateHistogram<double>(
        "db.client.connection.wait_time", "s", "Time to obtain an open connection from the pool.", tags: null, advice: Seconds);

    public static readonly Histogram<double> UseTime = Meter.CreateHistogram<double>(
        "db.client.connection.use_time", "s", "Time between renting a connection and returning it.", tags: null, advice: Seconds);

    public static readonly Counter<long> Retries = Meter.CreateCounter<long>(
        "sqlitesaver.retries", "{retry}", "Attempts run again after SQLITE_BUSY or SQLITE_LOCKED by the built-in retry policy.");

    public static readonly Counter<long> TransientErrors = Meter.CreateCounter<long>(
        "sqlitesaver.transient_errors", "{error}", "SQLITE_BUSY and SQLITE_LOCKED errors seen by the built-in retry policy.");

    public static readonly Counter<long> RetriesExhausted = Meter.CreateCounter<long>(
        "sqlitesaver.retries_exhausted", "{error}", "Work that still failed with SQLITE_BUSY or SQLITE_LOCKED after every retry.");

    public static readonly Counter<long> LockTimeouts = Meter.CreateCounter<long>(
        "sqlitesaver.lock_timeouts", "{timeout}", "Commands whose CommandTimeout, and BeginTransaction calls whose Default Timeout, ran out while they waited for a lock, in the process's write queue or for another connection's lock.");

    public static readonly Histogram<double> WriteGateWaitTime = Meter.CreateHistogram<double>(
        "sqlitesaver.write_gate.wait_time", "s", "Time a writer waited in the process's write queue.", tags: null, advice: Seconds);

    public static readonly Counter<long> Checkpoints = Meter.CreateCounter<long>(
        "sqlitesaver.checkpoints", "{checkpoint}", "WAL checkpoints the data source ran (connection.Checkpoint is not counted), tagged by mode, trigger and whether they came back busy.");

    public static readonly Histogram<long> CheckpointFrames = Meter.CreateHistogram<long>(
        "sqlitesaver.checkpoint.frames", "{frame}", "WAL frames copied back into the database by a checkpoint.");

    public static readonly Counter<long> StatementCacheLookups = Meter.CreateCounter<long>(
        "sqlitesaver.statement_cache.lookups", "{lookup}", "Executions that looked for a prepared statement for their text on their physical connection, tagged with whether one was kept.");

    static SaverMetrics()
    {
        Meter.CreateObservableUpDownCounter(
            "db.client.connection.count", ObserveCount, "{connection}", "Physical connections open, by state (idle or used).");
        Meter.CreateObservableUpDownCounter(
            "db.client.connection.max", () => Observe(static s => s.Options.MaxPoolSize), "{connection}", "Max Pool Size.");
        Meter.CreateObservableUpDownCounter(
            "db.client.connection.idle.min", () => Observe(static s => s.Options.MinPoolSize), "{connection}", "Min Pool Size.");
        Meter.CreateObservableUpDownCounter(
            "db.client.connection.pending_requests", () => Observe(static s => s.Pool.Counts().Waiting), "{request}", "Callers waiting for a pooled connection.");
        Meter.CreateObservableGauge(
            "sqlitesaver.wal.size", ObserveWalSize, "By", "Size of the -wal file of each database in WAL mode.");
    }

    private static IEnumerable<Measurement<int>> ObserveCount()
    {
        foreach (var dataSource in SaverDataSource.LiveDataSources)
        {
            var (_, idle, inUse, _) = dataSource.Pool.Counts();
            var pool = dataSource.Telemetry.PoolTag;
            yield return new Measurement<int>(idle, pool, new("db.client.connection.state", "idle"));
            yield return new Measurement<int>(inUse, pool, new("db.client.connection.state", "used"));
        }
    }

    private static IEnumerable<Measurement<int>> Observe(Func<SaverDataSource, int> read)
    {
        foreach (var dataSource in SaverDataSource.LiveDataSources)
        {
            yield return new Measurement<int>(read(dataSource), dataSource.Telemetry.PoolTag);
        }
    }

    private static IEnumerable<Measurement<long>> ObserveWalSize()
    {
        foreach (var dataSource in SaverDataSource.LiveDataSources)
        {
            if (dataSource.Options is { MaintainsWal: true, DatabaseFile: { } file })
            {
                // The checkpoint connection's, once it opened: a link on the path may lead elsewhere since the string was
                // first used (repointed, and the pool cleared).
                var wal = new FileInfo(dataSource.Checkpointer.WalPath ?? file + "-wal");
                yield return new Measurement<long>(wal.Exists ? wal.Length : 0, dataSource.Telemetry.PoolTag);
            }
        }
    }
}
