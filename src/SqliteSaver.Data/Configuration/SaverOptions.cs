using System.Globalization;
using System.Text;
using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Configuration;

/// <summary>
/// The settings of one data source, parsed and validated once from its connection string. Immutable.
/// </summary>
internal sealed class SaverOptions
{
    private SaverOptions(SaverConnectionStringBuilder builder)
    {
        DataSource = NormalizeDataSource(builder.DataSource);
        Mode = builder.Mode;
        IsMemory = DataSource == ":memory:" || Mode == SqliteOpenMode.Memory;
        DefaultTimeout = builder.DefaultTimeout;
        Pooling = builder.Pooling;
        MaxPoolSize = builder.MaxPoolSize;
        MinPoolSize = builder.MinPoolSize;
        PoolTimeout = builder.PoolTimeout;
        ConnectionIdleLifetime = builder.ConnectionIdleLifetime;
        StatementCacheSize = builder.StatementCacheSize;
        BusyTimeout = builder.BusyTimeout;
        JournalMode = builder.JournalMode;
        Retry = builder.Retry;
        BaseDelay = builder.BaseDelay;
        MaxDelay = builder.MaxDelay;
        Jitter = builder.Jitter;
        WriteGate = builder.WriteGate;
        JournalSizeLimit = builder.JournalSizeLimit;
        WalAutocheckpoint = builder.WalAutocheckpoint;
        CheckpointInterval = builder.CheckpointInterval;
        CheckpointMode = builder.CheckpointMode;
        CheckpointOnClose = builder.CheckpointOnClose;

        if (MinPoolSize > MaxPoolSize)
        {
            throw new ArgumentException(
                FormattableString.Invariant(
                    $"Connection-string keyword 'Min Pool Size' ({MinPoolSize}) must not exceed 'Max Pool Size' ({MaxPoolSize})."),
                Keywords.MinPoolSize.Name);
        }

        if (BaseDelay > MaxDelay)
        {
            throw new ArgumentException(
                FormattableString.Invariant(
                    $"Connection-string keyword 'Base Delay' ({BaseDelay.TotalSeconds} s) must not exceed 'Max Delay' ({MaxDelay.TotalSeconds} s)."),
                Keywords.BaseDelay.Name);
        }

        PoolKey = BuildPoolKey(builder, DataSource);
        InnerConnectionString = BuildInnerConnectionString(builder, DataSource, IsMemory && DataSource == ":memory:");
        PragmaSql = BuildPragmaSql(builder);
    }

    /// <summary>The database path: a full path for files, as given for <c>:memory:</c> and URIs.</summary>
    public string DataSource { get; }

    public SqliteOpenMode Mode { get; }

    /// <summary>Whether the database lives in memory and dies with its last connection.</summary>
    public bool IsMemory { get; }

    public int DefaultTimeout { get; }

    public bool Pooling { get; }

    public int MaxPoolSize { get; }

    public int MinPoolSize { get; }

    public TimeSpan PoolTimeout { get; }

    public TimeSpan ConnectionIdleLifetime { get; }

    public int StatementCacheSize { get; }

    public TimeSpan BusyTimeout { get; }

    public JournalMode JournalMode { get; }

    public int Retry { get; }

    public TimeSpan BaseDelay { get; }

    public TimeSpan MaxDelay { get; }

    public double Jitter { get; }

    public bool WriteGate { get; }

    public long JournalSizeLimit { get; }

    public int WalAutocheckpoint { get; }

    public TimeSpan CheckpointInterval { get; }

    public CheckpointMode CheckpointMode { get; }

    public bool CheckpointOnClose { get; }

    /// <summary>Whether the database is a file this library keeps in WAL mode, so that checkpoints apply to it.</summary>
    public bool MaintainsWal => JournalMode == JournalMode.Wal && !IsMemory && Mode != SqliteOpenMode.ReadOnly && DataSource.Length > 0;

    /// <summary>Every keyword with its canonical value, in a fixed order: equal settings give equal keys.</summary>
    public string PoolKey { get; }

    /// <summary>The connection string for the Microsoft.Data.Sqlite connections underneath (its pooling off).</summary>
    public string InnerConnectionString { get; }

    /// <summary>The PRAGMAs run once on each new physical connection, busy_timeout first. Built from parsed values only.</summary>
    public string PragmaSql { get; }

    /// <summary>Parses and validates a connection string.</summary>
    /// <exception cref="ArgumentException">A keyword is unknown, a value is invalid, or two values contradict each other.</exception>
    public static SaverOptions Parse(string connectionString)
        => new(new SaverConnectionStringBuilder(connectionString));

    private static string NormalizeDataSource(string dataSource)
    {
        if (dataSource.Length == 0
            || dataSource == ":memory:"
            || dataSource.StartsWith("file:", StringComparison.OrdinalIgnoreCase))
        {
            return dataSource;
        }

        return Path.GetFullPath(dataSource);
    }

    private static string BuildPoolKey(SaverConnectionStringBuilder builder, string dataSource)
    {
        var key = new StringBuilder();
        foreach (var spec in Keywords.All)
        {
            var value = spec == Keywords.DataSource ? dataSource : builder.GetText(spec);
            key.Append(spec.Name).Append('=').Append(value).Append('\u001f');
        }

        return key.ToString();
    }

    private static string BuildInnerConnectionString(SaverConnectionStringBuilder builder, string dataSource, bool privateMemory)
    {
        var inner = new SqliteConnectionStringBuilder
        {
            DataSource = dataSource,
            Mode = builder.Mode,
            Cache = builder.Cache,
            Password = builder.Password,
            ForeignKeys = builder.ForeignKeys,
            RecursiveTriggers = builder.RecursiveTriggers,
            DefaultTimeout = builder.DefaultTimeout,
            Vfs = builder.Vfs,
            Pooling = false,
        };

        if (privateMemory)
        {
            // ":memory:" would give every physical connection a database of its own. A uniquely named database in
            // SQLite's memdb VFS is one database for the whole pool, alive while the pool keeps a connection open,
            // and unlike a shared-cache one it honours busy_timeout instead of failing at once with SQLITE_LOCKED.
            inner.DataSource = "file:/saver-memory-" + Guid.NewGuid().ToString("N") + "?vfs=memdb";
            inner.Mode = SqliteOpenMode.ReadWriteCreate;
        }

        return inner.ConnectionString;
    }

    private static string BuildPragmaSql(SaverConnectionStringBuilder builder)
    {
        var sql = new StringBuilder();
        void Pragma(string name, string value) => sql.Append("PRAGMA ").Append(name).Append(" = ").Append(value).Append(';');
        static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);

        Pragma("busy_timeout", Number((long)builder.BusyTimeout.TotalMilliseconds));
        if (builder.Mode != SqliteOpenMode.ReadOnly)
        {
            Pragma("journal_mode", builder.JournalMode.ToString().ToUpperInvariant());
        }

        Pragma("synchronous", builder.Synchronous.ToString().ToUpperInvariant());
        if (builder.CacheSize is { } cacheSize)
        {
            Pragma("cache_size", Number(cacheSize));
        }

        if (builder.MmapSize is { } mmapSize)
        {
            Pragma("mmap_size", Number(mmapSize));
        }

        if (builder.TempStore is { } tempStore)
        {
            Pragma("temp_store", tempStore.ToString().ToUpperInvariant());
        }

        Pragma("journal_size_limit", Number(builder.JournalSizeLimit));
        Pragma("wal_autocheckpoint", Number(builder.WalAutocheckpoint));
        return sql.ToString();
    }
}
