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
    public static readonly KeywordSpec Mode = KeywordSpec.Enum<SqliteOpenMode>("Mode", SqliteOpenMode.ReadWriteCreate, numbered: true);
    public static readonly KeywordSpec Cache = KeywordSpec.Enum<SqliteCacheMode>("Cache", SqliteCacheMode.Default, numbered: true);
    public static readonly KeywordSpec Password = KeywordSpec.Text("Password", string.Empty);
    public static readonly KeywordSpec ForeignKeys = KeywordSpec.Boolean("Foreign Keys", null);
    public static readonly KeywordSpec RecursiveTriggers = KeywordSpec.Boolean("Recursive Triggers", false);
    public static readonly KeywordSpec DefaultTimeout = KeywordSpec.Integer("Default Timeout", 30, 0, MaxSeconds, "seconds", "Command Timeout");
    public static readonly KeywordSpec Vfs = KeywordSpec.Text("Vfs", null);

    // Pool.
    public static readonly KeywordSpec Pooling = KeywordSpec.Boolean("Pooling", true);
    public static readonly KeywordSpec MaxPoolSize = KeywordSpec.Integer("Max Pool Size", 16, 1, 1024, "connections");
    public static readonly KeywordSpec MinPoolSize = KeywordSpec.Integer("Min Pool Size", 0, 0, 1024, "connections");
    public static readonly KeywordSpec PoolTimeout = KeywordSpec.Number("Pool Timeout", 30, 0, MaxSeconds, "seconds");
    public static readonly KeywordSpec ConnectionIdleLifetime = KeywordSpec.Number("Connection Idle Lifetime", 300, 0, MaxSeconds, "seconds");
    public static readonly KeywordSpec StatementCacheSize = KeywordSpec.Integer("Statement Cache Size", 128, 0, 65536, "statements");

    // PRAGMAs, applied once per physical connection.
    public static readonly KeywordSpec BusyTimeout = KeywordSpec.Integer("Busy Timeout", 5000, 0, int.MaxValue, "milliseconds");
    public static readonly KeywordSpec JournalMode = KeywordSpec.Enum<Data.JournalMode>("Journal Mode", Data.JournalMode.Wal);
    public static readonly KeywordSpec Synchronous = KeywordSpec.Enum<SynchronousMode>("Synchronous", SynchronousMode.Normal);
    public static readonly KeywordSpec CacheSize = KeywordSpec.Integer("Cache Size", null, int.MinValue, int.MaxValue, "pages (KiB when negative)");
    public static readonly KeywordSpec MmapSize = KeywordSpec.Integer("Mmap Size", null, 0, long.MaxValue, "bytes");
    public static readonly KeywordSpec TempStore = KeywordSpec.Enum<TempStoreMode>("Temp Store", null);
    public static readonly KeywordSpec JournalSizeLimit = KeywordSpec.Integer("Journal Size Limit", 64L * 1024 * 1024, -1, long.MaxValue, "bytes");
    public static readonly KeywordSpec WalAutocheckpoint = KeywordSpec.Integer("Wal Autocheckpoint", 1000, 0, int.MaxValue, "pages");

    // Retry.
    public static readonly KeywordSpec Retry = KeywordSpec.Integer("Retry", 5, 0, 100, "retries");
    public static readonly KeywordSpec BaseDelay = KeywordSpec.Number("Base Delay", 0.05, 0, 3600, "seconds");
    public static readonly KeywordSpec MaxDelay = KeywordSpec.Number("Max Delay", 2, 0, 3600, "seconds");
    public static readonly KeywordSpec Jitter = KeywordSpec.Number("Jitter", 0.25, 0, 1, string.Empty);
    public static readonly KeywordSpec WriteGate = KeywordSpec.Boolean("Write Gate", true);

    // WAL maintenance.
    public static readonly KeywordSpec CheckpointInterval = KeywordSpec.Number("Checkpoint Interval", 60, 0, MaxSeconds, "seconds");
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

        var nearest = Nearest(keyword);
        var guess = nearest.Count == 0 ? string.Empty : $" Did you mean {string.Join(" or ", nearest.Select(name => $"'{name}'"))}?";
        throw new ArgumentException(
            $"Connection-string keyword '{keyword}' is not supported.{guess} Supported keywords (in any case, spaces optional): {string.Join(", ", All.Select(Described))}.",
            nameof(keyword));
    }

    private static string Described(KeywordSpec spec)
        => spec.Aliases.Count == 0 ? spec.Name : $"{spec.Name} (or {string.Join(", ", spec.Aliases)})";

    /// <summary>
    /// The keywords (or aliases) <paramref name="keyword"/> is likely a misspelling of: those nearest it, at most two
    /// edits from it and at most a third of its letters (none for a name of two letters).
    /// </summary>
    private static List<string> Nearest(string keyword)
    {
        var compact = Compact(keyword).ToUpperInvariant();
        var allowed = Math.Min(2, compact.Length / 3);
        var candidates = All
            .SelectMany(spec => spec.Aliases.Prepend(spec.Name))
            .Select(name => (Name: name, Distance: EditDistance(compact, Compact(name).ToUpperInvariant())))
            .Where(candidate => candidate.Distance <= allowed)
            .ToList();
        if (candidates.Count == 0)
        {
            return [];
        }

        var nearest = candidates.Min(candidate => candidate.Distance);
        return candidates.Where(candidate => candidate.Distance == nearest).Select(candidate => candidate.Name).ToList();
    }

    /// <summary>
    /// The fewest insertions, deletions, substitutions and swaps of two neighbouring letters that turn one into the other
    /// (optimal string alignment): "Retyr" is one edit from "Retry", as a typist's slip is.
    /// </summary>
    private static int EditDistance(string a, string b)
    {
        var beforePrevious = new int[b.Length + 1];
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
                current[j] = Math.Min(substitution, Math.Min(previous[j], current[j - 1]) + 1);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                {
                    current[j] = Math.Min(current[j], beforePrevious[j - 2] + 1);
                }
            }

            (beforePrevious, previous, current) = (previous, current, beforePrevious);
        }

        return previous[b.Length];
    }

    public static bool TryResolve(string keyword, out KeywordSpec spec)
        => ByCompactName.TryGetValue(Compact(keyword), out spec!);

    private static string Compact(string keyword) => keyword.Replace(" ", string.Empty, StringComparison.Ordinal);
}
