using System.Globalization;
using System.Text;
using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Configuration;

/// <summary>
/// The settings of one data source, parsed and validated once from its connection string. Immutable.
/// </summary>
internal sealed class SaverOptions
{
    private const string DataDirectoryMacro = "|DataDirectory|";

    private readonly string _innerConnectionString;
    private readonly string? _memoryName;

    private SaverOptions(SaverConnectionStringBuilder builder, string? dataDirectory)
    {
        if (builder.DataSource.Length == 0)
        {
            // SQLite would give each physical connection a temporary database of its own.
            throw new ArgumentException(
                "Connection-string keyword 'Data Source' is missing or empty: give a file path, :memory: or a file: URI.",
                Keywords.DataSource.Name);
        }

        // Microsoft.Data.Sqlite opens a Data Source with Mode=Memory as the URI "file:" + Data Source, whose escapes and
        // parameters SQLite reads as any URI's (my%20db is "my db"; ?cache=private, ?mode=rwc replace the keywords).
        var source = builder.Mode == SqliteOpenMode.Memory && !IsUri(builder.DataSource) ? "file:" + builder.DataSource : builder.DataSource;

        // A URI's parameters, read once: its mode, cache and vfs replace the keywords' (a URI is no path to normalize).
        var uriParameters = IsUri(source) ? UriParameters(source) : [];
        SharedCache = uriParameters.TryGetValue("cache", out var uriCache) ? uriCache == "shared" : builder.Cache == SqliteCacheMode.Shared;

        // The name of an in-memory database is no path: SQLite finds a shared one by that very name across the process.
        (IsMemory, var privateMemory, var sharedMemoryName) = InMemory(source, uriParameters, builder.Mode, SharedCache, builder.Vfs);
        FollowsDataDirectory = !IsMemory && ReadsDataDirectory(source);
        DataSource = IsMemory ? builder.DataSource : NormalizeDataSource(source, dataDirectory);
        DatabaseFile = IsMemory ? null : FileOf(DataSource);
        DatabasePath = IsMemory ? null : IsUri(DataSource) ? FilePath.Full(UriPath(DataSource)) : DataSource;
        GateKey = DatabaseFile ?? sharedMemoryName;
        DefaultTimeout = builder.DefaultTimeout;
        Pooling = builder.Pooling;
        // Without pooling there is no pool to size: as with Microsoft.Data.Sqlite, no limit unless one is given.
        MaxPoolSize = Pooling || builder.ContainsKey(Keywords.MaxPoolSize.Name) ? builder.MaxPoolSize : int.MaxValue;
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
                    $"Connection-string keyword 'Min Pool Size' ({MinPoolSize}) must not exceed 'Max Pool Size' ({MaxPoolSize}{(builder.ContainsKey(Keywords.MaxPoolSize.Name) ? string.Empty : ", its default")}): lower Min Pool Size or raise Max Pool Size."),
                Keywords.MinPoolSize.Name);
        }

        if (BaseDelay > MaxDelay)
        {
            throw new ArgumentException(
                FormattableString.Invariant(
                    $"Connection-string keyword 'Base Delay' ({BaseDelay.TotalSeconds} s{(builder.ContainsKey(Keywords.BaseDelay.Name) ? string.Empty : ", its default")}) must not exceed 'Max Delay' ({MaxDelay.TotalSeconds} s{(builder.ContainsKey(Keywords.MaxDelay.Name) ? string.Empty : ", its default")}): lower Base Delay or raise Max Delay."),
                Keywords.BaseDelay.Name);
        }

        PoolKey = BuildPoolKey(builder, DatabaseFile is not null && IsUri(DataSource) ? PoolKeyUri(DataSource) : DataSource, MaxPoolSize);
        _innerConnectionString = BuildInnerConnectionString(builder, DataSource);
        // Without pooling each connection opens a private in-memory database of its own, as SQLite gives it.
        DatabasePerConnection = privateMemory && !Pooling;
        _memoryName = privateMemory && Pooling ? "/saver-memory-" + Guid.NewGuid().ToString("N") : null;
        PragmaSql = BuildPragmaSql(builder, journalMode: true);
        ReadOnlyPragmaSql = BuildPragmaSql(builder, journalMode: false);
        ReadOnly = builder.Mode == SqliteOpenMode.ReadOnly || uriParameters.GetValueOrDefault("mode") == "ro";
        if (privateMemory && ReadOnly)
        {
            // SQLite would open an empty database that nothing can ever write; pooled, it would not even be read-only.
            var keyword = builder.Mode == SqliteOpenMode.ReadOnly ? Keywords.Mode.Name : Keywords.DataSource.Name;
            throw new ArgumentException(
                $"Connection-string keyword '{keyword}' opens the private in-memory database '{DataSource}' read-only, which leaves it empty for good: drop Mode=ReadOnly (or mode=ro), or name a shared one (file:name?mode=memory&cache=shared) that another connection writes.",
                keyword);
        }
    }

    /// <summary>The database path: a full path for files (see <see cref="FilePath.Full"/>), as given for <c>:memory:</c> and URIs.</summary>
    public string DataSource { get; }

    /// <summary>
    /// Whether <see cref="DataSource"/> was made full against the application domain's <c>DataDirectory</c>, or would
    /// be once that is set: a relative path, or one that begins with <c>|DataDirectory|</c> (see <see cref="NormalizeDataSource"/>).
    /// </summary>
    public bool FollowsDataDirectory { get; }

    /// <summary>
    /// The full path of the database file, its links resolved (see <see cref="FilePath.Real"/>), for a path or a
    /// <c>file:</c> URI; null for an in-memory database.
    /// </summary>
    public string? DatabaseFile { get; }

    /// <summary>The full path of the database file as written (see <see cref="FilePath.Full"/>); null for an in-memory database.</summary>
    public string? DatabasePath { get; }

    /// <summary>
    /// What names the database across the process, for the write gate every data source on it shares: the file's
    /// full path, or the name of an in-memory database SQLite shares by name; null for a private in-memory one.
    /// </summary>
    public string? GateKey { get; }

    /// <summary>Whether the database lives in memory and dies with its last connection.</summary>
    public bool IsMemory { get; }

    /// <summary>Whether the pool keeps a database in memory of its own (a pooled <c>:memory:</c>: see <see cref="InnerConnectionString"/>).</summary>
    public bool PrivateMemory => _memoryName is not null;

    public int DefaultTimeout { get; }

    public bool Pooling { get; }

    /// <summary>Most physical connections open at once: Max Pool Size; <see cref="int.MaxValue"/> without pooling unless it is given.</summary>
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
    public bool MaintainsWal => JournalMode == JournalMode.Wal && DatabaseFile is not null && !ReadOnly;

    /// <summary>Every keyword with its canonical value, in a fixed order: equal settings give equal keys.</summary>
    public string PoolKey { get; }

    /// <summary>
    /// The connection string for the Microsoft.Data.Sqlite connections underneath (their pooling off) of a pool
    /// generation. An in-memory database that SQLite would give each connection on its own is instead a uniquely
    /// named database in SQLite's memdb VFS, one for each generation, so that a cleared pool starts an empty one even
    /// while a connection of the old generation is still rented.
    /// </summary>
    /// <param name="generation">The pool generation.</param>
    public string InnerConnectionString(int generation)
        => _memoryName is null
            ? _innerConnectionString
            : new SqliteConnectionStringBuilder(_innerConnectionString)
            {
                // Unlike a shared-cache database, a memdb one honours busy_timeout instead of failing at once with
                // SQLITE_LOCKED.
                DataSource = "file:" + _memoryName + "-" + generation.ToString(CultureInfo.InvariantCulture) + "?vfs=memdb",
                Mode = SqliteOpenMode.ReadWriteCreate,
                Cache = SqliteCacheMode.Default,
            }.ConnectionString;

    /// <summary>
    /// The connection string for the checkpointer's own connection: <see cref="InnerConnectionString"/> of generation
    /// 0, but a database file is opened with a private cache even where the pool's connections share one (the
    /// <c>Cache=Shared</c> keyword or a <c>cache=shared</c> URI parameter), since SQLite refuses a checkpoint
    /// (SQLITE_LOCKED) on a shared cache while any other connection of that cache has a transaction open.
    /// </summary>
    public string CheckpointerConnectionString
        => DatabaseFile is null
            ? InnerConnectionString(generation: 0)
            : new SqliteConnectionStringBuilder(_innerConnectionString)
            {
                DataSource = IsUri(DataSource) ? WithPrivateCache(DataSource) : DataSource,
                Cache = SqliteCacheMode.Private,
            }.ConnectionString;

    /// <summary>
    /// The PRAGMAs run once on each new physical connection, after its busy timeout is set (see <see cref="BusyTimeout"/>).
    /// Built from parsed values only.
    /// </summary>
    public string PragmaSql { get; }

    /// <summary>
    /// <see cref="PragmaSql"/> without the journal mode, for a connection SQLite opened read-only (<c>Mode=ReadOnly</c>,
    /// <c>mode=ro</c> in a URI, or a file it may not write), which cannot switch it and fails trying.
    /// </summary>
    public string ReadOnlyPragmaSql { get; }

    /// <summary>Whether each connection has a database of its own (a private in-memory one without pooling): writers never meet.</summary>
    public bool DatabasePerConnection { get; }

    /// <summary>Whether the database is opened read-only: <c>Mode=ReadOnly</c>, or <c>mode=ro</c> last in a <c>file:</c> URI.</summary>
    public bool ReadOnly { get; }

    /// <summary>Whether the pool's connections share a cache: <c>Cache=Shared</c>, or <c>cache=shared</c> in a <c>file:</c> URI (which replaces the keyword).</summary>
    public bool SharedCache { get; }

    /// <summary>Parses and validates a connection string.</summary>
    /// <param name="connectionString">The connection string.</param>
    /// <param name="dataDirectory">
    /// The application domain's <c>DataDirectory</c> value to open a relative Data Source against (see
    /// <see cref="DataDirectoryOfTheMoment"/>), when the caller has read it already.
    /// </param>
    /// <exception cref="ArgumentException">A keyword is unknown, a value is invalid, or two values contradict each other.</exception>
    public static SaverOptions Parse(string connectionString, string? dataDirectory)
        => new(new SaverConnectionStringBuilder(connectionString), dataDirectory);

    /// <summary><see cref="Parse(string, string?)"/> against the application domain's <c>DataDirectory</c> of the moment.</summary>
    /// <exception cref="ArgumentException">A keyword is unknown, a value is invalid, or two values contradict each other.</exception>
    public static SaverOptions Parse(string connectionString) => Parse(connectionString, DataDirectoryOfTheMoment());

    /// <summary>
    /// A file path made full (see <see cref="FilePath"/>), as Microsoft.Data.Sqlite opens it: against the application
    /// domain's <c>DataDirectory</c> value (<paramref name="directory"/>) when that is set (a relative path, and a leading <c>|DataDirectory|</c>),
    /// else against the current directory. A leading <c>|DataDirectory|</c> stands for the application's base directory
    /// when that is not set, where Microsoft.Data.Sqlite would open a file named so, and a separator after it is dropped,
    /// so that the rest is not taken for a rooted path (Microsoft.Data.Sqlite opens <c>/app.db</c> for
    /// <c>|DataDirectory|/app.db</c>).
    /// </summary>
    private static string NormalizeDataSource(string dataSource, string? directory)
    {
        if (dataSource.Length == 0
            || dataSource == ":memory:"
            || IsUri(dataSource))
        {
            return dataSource;
        }

        if (dataSource.StartsWith(DataDirectoryMacro, StringComparison.OrdinalIgnoreCase))
        {
            var rest = dataSource[DataDirectoryMacro.Length..].TrimStart('/', '\\'); // so that "|DataDirectory|\app.db" is no rooted path
            dataSource = Path.Combine(directory ?? AppContext.BaseDirectory, rest);
        }
        else if (directory is not null && ReadsDataDirectory(dataSource))
        {
            dataSource = Path.Combine(directory, dataSource);
        }

        return FilePath.Full(dataSource);
    }

    /// <summary>
    /// Whether a Data Source (not in memory) is made full against the application domain's <c>DataDirectory</c> when
    /// that is set (see <see cref="NormalizeDataSource"/>): one that begins with <c>|DataDirectory|</c>, or a relative
    /// path (not <c>:memory:</c> in any case, which Microsoft.Data.Sqlite leaves alone).
    /// </summary>
    private static bool ReadsDataDirectory(string dataSource)
        => dataSource.Length > 0 && !IsUri(dataSource)
            && (dataSource.StartsWith(DataDirectoryMacro, StringComparison.OrdinalIgnoreCase)
                || (!Path.IsPathRooted(dataSource) && !dataSource.Equals(":memory:", StringComparison.OrdinalIgnoreCase)));

    /// <summary>
    /// The application domain's <c>DataDirectory</c> value, which Microsoft.Data.Sqlite reads at each open;
    /// <see langword="null"/> when it is not set, or empty.
    /// </summary>
    internal static string? DataDirectoryOfTheMoment()
        => AppDomain.CurrentDomain.GetData("DataDirectory") is string { Length: > 0 } directory ? directory : null;

    /// <summary>
    /// Max Pool Size is the resolved limit (without pooling, no limit unless given), so that strings with equal
    /// meaning share a key; Data Source is <paramref name="dataSource"/>. Each value is preceded by its length, so
    /// that no value (a file name, a password) can spell out the rest of another string's key.
    /// </summary>
    private static string BuildPoolKey(SaverConnectionStringBuilder builder, string dataSource, int maxPoolSize)
    {
        var key = new StringBuilder();
        foreach (var spec in Keywords.All)
        {
            var value = spec == Keywords.DataSource ? dataSource
                : spec == Keywords.MaxPoolSize ? maxPoolSize.ToString(CultureInfo.InvariantCulture)
                : builder.GetText(spec) ?? string.Empty;
            key.Append(spec.Name).Append('=').Append(value.Length).Append(':').Append(value).Append('\u001f');
        }

        return key.ToString();
    }

    /// <summary>Whether a Data Source is taken for a <c>file:</c> URI here: the scheme in any case.</summary>
    private static bool IsUri(string dataSource) => dataSource.StartsWith("file:", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// A <c>file:</c> URI as SQLite reads it, for the pool key: an empty or <c>localhost</c> authority is none, so
    /// that <c>file:/p/a.db</c>, <c>file:///p/a.db</c> and <c>file://localhost/p/a.db</c> share a pool. Nothing else
    /// is rewritten: decoding escapes or resolving <c>..</c> could make spellings of two files one (<c>%FF</c>, which
    /// SQLite decodes to a byte, and <c>%25FF</c>; <c>link/..</c>, which SQLite resolves through the link).
    /// </summary>
    private static string PoolKeyUri(string dataSource)
    {
        const string Localhost = "//localhost/";
        var rest = dataSource.AsSpan(5);
        var path = rest.StartsWith(Localhost, StringComparison.Ordinal) ? rest[(Localhost.Length - 1)..]
            : rest.StartsWith("///", StringComparison.Ordinal) ? rest[2..]
            : [];

        // A path that starts with "//" is kept with its authority: without it, it would read as an authority itself.
        return path.IsEmpty || path.StartsWith("//", StringComparison.Ordinal) ? dataSource : string.Concat(dataSource.AsSpan(0, 5), path);
    }

    /// <summary>
    /// Whether a data source is an in-memory database, and whether SQLite would give each connection to it a database
    /// of its own: <c>:memory:</c>, or a <c>file:</c> URI (as <c>Mode=Memory</c> opens any Data Source) naming
    /// <c>:memory:</c>, <c>mode=memory</c> or <c>vfs=memdb</c> (or the <c>Vfs=memdb</c> keyword) without
    /// <c>cache=shared</c> (a memdb name that starts with a slash is shared too, see <see cref="MemdbShares"/>, unless in
    /// memory mode, which leaves the VFS out); its name is read up to a <c>%00</c>, as SQLite reads it; a URI's <c>mode</c> parameter
    /// replaces the Mode keyword, as in SQLite (<paramref name="parameters"/> are a URI's, <paramref name="sharedCache"/>
    /// is <see cref="SharedCache"/>). A shared one has a name, which says whether it is a memdb or a shared-cache
    /// database (different databases even under one name).
    /// </summary>
    private static (bool Memory, bool Private, string? SharedName) InMemory(
        string dataSource, Dictionary<string, string> parameters, SqliteOpenMode mode, bool sharedCache, string? vfs)
    {
        if (dataSource == ":memory:")
        {
            return (true, true, null);
        }

        var memdbKeyword = vfs == "memdb"; // SQLite finds a VFS by its exact name, as the URI's below
        if (!IsUri(dataSource))
        {
            var isPrivate = memdbKeyword && !sharedCache && !MemdbShares(dataSource);
            return (memdbKeyword, isPrivate, memdbKeyword && !isPrivate ? SharedMemoryName(memdb: true, dataSource) : null);
        }

        var path = UntilNul(UriPath(dataSource)); // SQLite reads the decoded name as a C string
        // In memory mode, or under the name :memory:, SQLite keeps the database in its pager and opens no file, so the
        // memdb VFS, which shares a name that starts with "/", is never asked.
        var inPager = (parameters.TryGetValue("mode", out var uriMode) ? uriMode == "memory" : mode == SqliteOpenMode.Memory) || path == ":memory:";
        var memdb = !inPager && (parameters.TryGetValue("vfs", out var uriVfs) ? uriVfs == "memdb" : memdbKeyword);
        if (!inPager && !memdb)
        {
            return (false, false, null);
        }

        var uriPrivate = !(sharedCache || (memdb && MemdbShares(path)));
        return (true, uriPrivate, uriPrivate ? null : SharedMemoryName(memdb, path));
    }

    /// <summary>
    /// A <c>file:</c> URI's query parameters as SQLite reads them: up to a <c>#</c>, split at <c>&amp;</c>, names and
    /// values percent-decoded (a <c>%00</c> ending them) and case-sensitive, the last of a name replacing those before it.
    /// </summary>
    private static Dictionary<string, string> UriParameters(string uri)
    {
        var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
        var start = uri.IndexOfAny(['?', '#']);
        if (start < 0 || uri[start] == '#')
        {
            return parameters;
        }

        var end = uri.IndexOf('#', start);
        foreach (var parameter in uri[(start + 1)..(end < 0 ? uri.Length : end)].Split('&'))
        {
            var equals = parameter.IndexOf('=', StringComparison.Ordinal);
            var name = equals < 0 ? parameter : parameter[..equals];
            parameters[UntilNul(Uri.UnescapeDataString(name))] = equals < 0 ? string.Empty : UntilNul(Uri.UnescapeDataString(parameter[(equals + 1)..]));
        }

        return parameters;
    }

    /// <summary><paramref name="text"/> up to its first NUL: SQLite reads a decoded URI name or value as a C string, so a <c>%00</c> ends it.</summary>
    private static string UntilNul(string text) => text.IndexOf('\0', StringComparison.Ordinal) is >= 0 and var nul ? text[..nul] : text;

    /// <summary>Whether SQLite's memdb VFS shares a database of this name across the process: one of two characters or more that starts with a slash or a backslash.</summary>
    private static bool MemdbShares(string name) => name.Length > 1 && name[0] is '/' or '\\';

    /// <summary>A key for a shared in-memory database that no file path can equal.</summary>
    private static string SharedMemoryName(bool memdb, string name) => (memdb ? "\u001fmemdb:" : "\u001fshared:") + name;

    /// <summary>
    /// The file a Data Source names, its links resolved (see <see cref="FilePath.Real"/>): of a path (already made full),
    /// or of the path of a <c>file:</c> URI, which must be full. Resolved when the string is first parsed, for the write
    /// gate: a link repointed later is followed by SQLite (it is given the path as written), not by the gate.
    /// </summary>
    /// <exception cref="ArgumentException">A <c>file:</c> URI's path is relative or empty.</exception>
    private static string FileOf(string dataSource)
    {
        if (!IsUri(dataSource))
        {
            return FilePath.Real(dataSource);
        }

        var path = UriPath(dataSource);
        if (!Path.IsPathFullyQualified(path))
        {
            // Each physical connection would resolve a relative path against the current directory of the moment it
            // opens, and SQLite gives each one a temporary database of its own for an empty one.
            throw new ArgumentException(
                $"Connection-string keyword 'Data Source' is the file: URI '{dataSource}' with {(path.Length == 0 ? "no" : "a relative")} path: give a full path (file:/path/to/app.db) or a plain relative path.",
                Keywords.DataSource.Name);
        }

        if (path.Contains('\0', StringComparison.Ordinal))
        {
            // A plain path cannot hold one: the connection-string builder refuses embedded NULs.
            throw new ArgumentException(
                $"Connection-string keyword 'Data Source' is the file: URI '{dataSource}', whose path holds a NUL character (%00), which no file name can.",
                Keywords.DataSource.Name);
        }

        return FilePath.Real(path); // the file itself, as for a plain path
    }

    /// <summary>The path of a <c>file:</c> URI: after an empty or <c>localhost</c> authority, before the query, percent-decoded.</summary>
    private static string UriPath(string uri)
    {
        var path = uri[5..];
        var end = path.IndexOfAny(['?', '#']);
        path = end < 0 ? path : path[..end];
        if (path.StartsWith("//", StringComparison.Ordinal))
        {
            var slash = path.IndexOf('/', 2);
            path = slash < 0 ? string.Empty : path[slash..];
        }

        return Uri.UnescapeDataString(path);
    }

    private static string BuildInnerConnectionString(SaverConnectionStringBuilder builder, string dataSource)
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
        return inner.ConnectionString;
    }

    private static string BuildPragmaSql(SaverConnectionStringBuilder builder, bool journalMode)
    {
        var sql = new StringBuilder();
        void Pragma(string name, string value) => sql.Append("PRAGMA ").Append(name).Append(" = ").Append(value).Append(';');
        static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);

        if (journalMode)
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

    /// <summary>
    /// A <c>file:</c> URI with <c>cache=private</c> as its last parameter, which SQLite reads in place of any cache
    /// parameter before it, however spelled (<c>cache=%73hared</c>).
    /// </summary>
    private static string WithPrivateCache(string uri)
    {
        var fragment = uri.IndexOf('#', StringComparison.Ordinal);
        var query = uri[..(fragment < 0 ? uri.Length : fragment)];
        return string.Concat(query, query.Contains('?', StringComparison.Ordinal) ? "&" : "?", "cache=private", fragment < 0 ? string.Empty : uri[fragment..]);
    }
}
