using System.Collections.Frozen;
using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Configuration;

/// <summary>
/// Every connection-string keyword the library accepts. Lookup is case-insensitive and ignores spaces, so
/// <c>Max Pool Size</c>, <c>MaxPoolSize</c> and <c>max pool size</c> are one keyword.
/// </summary>
internal static class Keywords
{
    private const long MaxSeconds = int.MaxValue / 1000;

    // Passed to Microsoft.Data.Sqlite.
    public static readonly KeywordSpec DataSource = KeywordSpec.Text("Data Source", string.Empty, "Filename");
    public static readonly KeywordSpec Mode = KeywordSpec.Enum<SqliteOpenMode>("Mode", SqliteOpenMode.ReadWriteCreate);
    public static readonly KeywordSpec Cache = KeywordSpec.Enum<SqliteCacheMode>("Cache", SqliteCacheMode.Default);
    public static readonly KeywordSpec Password = KeywordSpec.Text("Password", string.Empty);
    public static readonly KeywordSpec ForeignKeys = KeywordSpec.Boolean("Foreign Keys", null);
    public static readonly KeywordSpec RecursiveTriggers = KeywordSpec.Boolean("Recursive Triggers", false);
    public static readonly KeywordSpec DefaultTimeout = KeywordSpec.Integer("Default Timeout", 30, 0, MaxSeconds, "Command Timeout");
    public static readonly KeywordSpec Vfs = KeywordSpec.Text("Vfs", null);

    // Pool.
    public static readonly KeywordSpec Pooling = KeywordSpec.Boolean("Pooling", true);
    public static readonly KeywordSpec MaxPoolSize = KeywordSpec.Integer("Max Pool Size", 16, 1, 1024);
    public static readonly KeywordSpec MinPoolSize = KeywordSpec.Integer("Min Pool Size", 0, 0, 1024);
    public static readonly KeywordSpec PoolTimeout = KeywordSpec.Number("Pool Timeout", 30, 0, MaxSeconds);
    public static readonly KeywordSpec ConnectionIdleLifetime = KeywordSpec.Number("Connection Idle Lifetime", 300, 0, MaxSeconds);
    public static readonly KeywordSpec StatementCacheSize = KeywordSpec.Integer("Statement Cache Size", 128, 0, 65536);

    // PRAGMAs, applied once per physical connection.
    public static readonly KeywordSpec BusyTimeout = KeywordSpec.Integer("Busy Timeout", 5000, 0, int.MaxValue);
    public static readonly KeywordSpec JournalMode = KeywordSpec.Enum<Data.JournalMode>("Journal Mode", Data.JournalMode.Wal);
    public static readonly KeywordSpec Synchronous = KeywordSpec.Enum<SynchronousMode>("Synchronous", SynchronousMode.Normal);
    public static readonly KeywordSpec CacheSize = KeywordSpec.Integer("Cache Size", null, int.MinValue, int.MaxValue);
    public static readonly KeywordSpec MmapSize = KeywordSpec.Integer("Mmap Size", null, 0, long.MaxValue);
    public static readonly KeywordSpec TempStore = KeywordSpec.Enum<TempStoreMode>("Temp Store", null);
    public static readonly KeywordSpec JournalSizeLimit = KeywordSpec.Integer("Journal Size Limit", 64L * 1024 * 1024, -1, long.MaxValue);
    public static readonly KeywordSpec WalAutocheckpoint = KeywordSpec.Integer("Wal Autocheckpoint", 1000, 0, int.MaxValue);

    // Retry.
    public static readonly KeywordSpec Retry = KeywordSpec.Integer("Retry", 5, 0, 100);
    public static readonly KeywordSpec BaseDelay = KeywordSpec.Number("Base Delay", 0.05, 0, 3600);
    public static readonly KeywordSpec MaxDelay = KeywordSpec.Number("Max Delay", 2, 0, 3600);
    public static readonly KeywordSpec Jitter = KeywordSpec.Number("Jitter", 0.25, 0, 1);
    public static readonly KeywordSpec WriteGate = KeywordSpec.Boolean("Write Gate", true);

    // WAL maintenance.
    public static readonly KeywordSpec CheckpointInterval = KeywordSpec.Number("Checkpoint Interval", 60, 0, MaxSeconds);
    public static readonly KeywordSpec CheckpointMode = KeywordSpec.Enum<Data.CheckpointMode>("Checkpoint Mode", Data.CheckpointMode.Passive);
    public static readonly KeywordSpec CheckpointOnClose = KeywordSpec.Boolean("Checkpoint On Close", true);

    /// <summary>All keywords, in the order they are documented and written into normalized connection strings.</summary>
    public static readonly IReadOnlyList<KeywordSpec> All =
    [
        DataSource, Mode, Cache, Password, ForeignKeys, RecursiveTriggers, DefaultTimeout, Vfs,
        Pooling, MaxPoolSize, MinPoolSize, PoolTimeout, ConnectionIdleLifetime, StatementCacheSize,
        BusyTimeout, JournalMode, Synchronous, CacheSize, MmapSize, TempStore, JournalSizeLimit, WalAutocheckpoint,
        Retry, BaseDelay, MaxDelay, Jitter, WriteGate,
        CheckpointInterval, CheckpointMode, CheckpointOnClose,
    ];

    private static readonly FrozenDictionary<string, KeywordSpec> ByCompactName = All
        .SelectMany(spec => spec.Aliases.Prepend(spec.Name).Select(Compact).Distinct(StringComparer.OrdinalIgnoreCase).Select(name => (Name: name, Spec: spec)))
        .ToFrozenDictionary(pair => pair.Name, pair => pair.Spec, StringComparer.OrdinalIgnoreCase);

    /// <summary>Finds the keyword that <paramref name="keyword"/> names, in any case and spacing, or by alias.</summary>
    /// <exception cref="ArgumentException">
    /// The keyword is not supported; the message lists those that are. It does not repeat the value, which may be a
    /// secret given under a misspelt or unsupported name (<c>Pwd</c>, say).
    /// </exception>
    public static KeywordSpec Resolve(string keyword)
    {
        ArgumentNullException.ThrowIfNull(keyword);
        if (TryResolve(keyword, out var spec))
        {
            return spec;
        }

        throw new ArgumentException(
            $"Connection-string keyword '{keyword}' is not supported. Supported keywords: {string.Join(", ", All.Select(k => k.Name))}.",
            nameof(keyword));
    }

    public static bool TryResolve(string keyword, out KeywordSpec spec)
        => ByCompactName.TryGetValue(Compact(keyword), out spec!);

    private static string Compact(string keyword) => keyword.Replace(" ", string.Empty, StringComparison.Ordinal);
}
