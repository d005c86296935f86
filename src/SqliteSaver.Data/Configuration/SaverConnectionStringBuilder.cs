using System.Data.Common;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Configuration;

namespace SqliteSaver.Data;

/// <summary>
/// Builds and parses SqliteSaver.Data connection strings, with a typed property per keyword.
/// </summary>
/// <remarks>
/// Keywords are case-insensitive, every multi-word keyword is also accepted without spaces
/// (<c>Max Pool Size</c> or <c>MaxPoolSize</c>), and values are validated as they are set: an unknown keyword
/// or a malformed or out-of-range value throws an <see cref="ArgumentException"/> that names the keyword, the
/// value and what is allowed. Values are stored in a canonical form, so <see cref="DbConnectionStringBuilder.ConnectionString"/>
/// round-trips.
/// </remarks>
[SuppressMessage("Design", "CA1010", Justification = "DbConnectionStringBuilder's collection shape is fixed by ADO.NET.")]
public sealed class SaverConnectionStringBuilder : DbConnectionStringBuilder
{
    // The connection string the constructor parses, while it does: ADO.NET's parser hands a "Key=" with no value to
    // Remove, which must then refuse an unknown keyword as the indexer does, and hands keywords over in lower case.
    private string? _parsing;

    /// <summary>Creates an empty builder; every keyword has its default.</summary>
    public SaverConnectionStringBuilder()
    {
    }

    /// <summary>Creates a builder from a connection string.</summary>
    /// <param name="connectionString">The connection string to parse.</param>
    /// <exception cref="ArgumentException">The string is malformed, a keyword is unknown or a value is invalid.</exception>
    public SaverConnectionStringBuilder(string? connectionString)
    {
        _parsing = connectionString ?? string.Empty;
        try
        {
            ConnectionString = _parsing;
        }
        catch (ArgumentException malformed) when (malformed.ParamName is null) // the keywords' own errors name the keyword
        {
            throw new ArgumentException(
                $"The connection string is malformed: {malformed.Message} It is a list of keyword=value parts separated by ';' (a value with ';' or a quote in it is quoted: 'a;b' or \"it's\"), and a part without '=' (such as 'Max Pool Size' alone) is not one.",
                nameof(connectionString),
                malformed);
        }
        finally
        {
            _parsing = null;
        }
    }

    /// <summary>
    /// Gets or sets a keyword's value in connection-string terms: text (enum values by name), a boolean, a whole
    /// number, or a number of seconds. Getting a keyword that is not set returns its default (<see langword="null"/>
    /// where it has none). Setting <see langword="null"/>, or an empty text for a keyword that takes text, removes the keyword.
    /// </summary>
    /// <param name="keyword">The keyword, in any case, with or without spaces, or an alias.</param>
    /// <exception cref="ArgumentException">The keyword is unknown or the value is invalid.</exception>
    [AllowNull]
    public override object this[string keyword]
    {
        get => GetTyped(Keywords.Resolve(keyword))!;
        set
        {
            var spec = Resolve(keyword);

            // An empty text is no setting: the connection string "Key=" parses as a removal, so storing it would not round-trip.
            if (value is null || (spec.Kind == KeywordKind.Text && value is string { Length: 0 }))
            {
                base.Remove(spec.Name);
            }
            else
            {
                base[spec.Name] = spec.Normalize(value, keyword);
            }
        }
    }

    /// <summary>The database file path (also <c>DataSource</c>, alias <c>Filename</c>); <c>:memory:</c> for an in-memory database.</summary>
    public string DataSource
    {
        get => GetText(Keywords.DataSource) ?? string.Empty;
        set => this[Keywords.DataSource.Name] = value;
    }

    /// <summary>How the database file is opened. Default <see cref="SqliteOpenMode.ReadWriteCreate"/>.</summary>
    public SqliteOpenMode Mode
    {
        get => Enum.Parse<SqliteOpenMode>(GetText(Keywords.Mode)!);
        set => this[Keywords.Mode.Name] = value;
    }

    /// <summary>The SQLite cache mode. Default <see cref="SqliteCacheMode.Default"/>.</summary>
    public SqliteCacheMode Cache
    {
        get => Enum.Parse<SqliteCacheMode>(GetText(Keywords.Cache)!);
        set => this[Keywords.Cache.Name] = value;
    }

    /// <summary>The encryption key; needs a SQLite build with encryption (the bundled e_sqlite3 has none).</summary>
    public string Password
    {
        get => GetText(Keywords.Password) ?? string.Empty;
        set => this[Keywords.Password.Name] = value;
    }

    /// <summary><c>PRAGMA foreign_keys</c> on each physical connection; <see langword="null"/> (the default) leaves SQLite's setting.</summary>
    public bool? ForeignKeys
    {
        get => GetText(Keywords.ForeignKeys) is { } text ? bool.Parse(text) : null;
        set => this[Keywords.ForeignKeys.Name] = value;
    }

    /// <summary><c>PRAGMA recursive_triggers</c> on each physical connection. Default <see langword="false"/>.</summary>
    public bool RecursiveTriggers
    {
        get => bool.Parse(GetText(Keywords.RecursiveTriggers)!);
        set => this[Keywords.RecursiveTriggers.Name] = value;
    }

    /// <summary>
    /// The default <see cref="DbCommand.CommandTimeout"/> in seconds (alias <c>Command Timeout</c>): how long in all a
    /// command or <c>BeginTransaction</c> waits for locks (the process's write queue, another connection's lock,
    /// between retries) before failing with SQLITE_BUSY. Default 30; 0 means no limit but Busy Timeout and Retry.
    /// </summary>
    public int DefaultTimeout
    {
        get => GetInt32(Keywords.DefaultTimeout);
        set => this[Keywords.DefaultTimeout.Name] = value;
    }

    /// <summary>The name of the SQLite VFS to use; <see langword="null"/> (the default) uses SQLite's default VFS.</summary>
    public string? Vfs
    {
        get => GetText(Keywords.Vfs);
        set => this[Keywords.Vfs.Name] = value;
    }

    /// <summary>Whether physical connections are kept open and reused. Default <see langword="true"/>.</summary>
    public bool Pooling
    {
        get => bool.Parse(GetText(Keywords.Pooling)!);
        set => this[Keywords.Pooling.Name] = value;
    }

    /// <summary>The most physical connections the pool opens at once, 1 to 1024. Default 16.</summary>
    public int MaxPoolSize
    {
        get => GetInt32(Keywords.MaxPoolSize);
        set => this[Keywords.MaxPoolSize.Name] = value;
    }

    /// <summary>
    /// Physical connections kept open however long they are unused, 0 to <see cref="MaxPoolSize"/>: idle pruning closes
    /// none while this many or fewer are open, rented ones included (as in Npgsql). Default 0.
    /// </summary>
    public int MinPoolSize
    {
        get => GetInt32(Keywords.MinPoolSize);
        set => this[Keywords.MinPoolSize.Name] = value;
    }

    /// <summary>How long Open waits for a connection when the pool is exhausted (keyword in seconds). Default 30 s; zero waits without limit.</summary>
    public TimeSpan PoolTimeout
    {
        get => GetSeconds(Keywords.PoolTimeout);
        set => this[Keywords.PoolTimeout.Name] = value.TotalSeconds;
    }

    /// <summary>How long a physical connection above <see cref="MinPoolSize"/> may stay idle before it is closed (keyword in seconds). Default 300 s; zero keeps idle connections open.</summary>
    public TimeSpan ConnectionIdleLifetime
    {
        get => GetSeconds(Keywords.ConnectionIdleLifetime);
        set => this[Keywords.ConnectionIdleLifetime.Name] = value.TotalSeconds;
    }

    /// <summary>
    /// How many prepared commands each physical connection keeps, by command text, for the next command with the same
    /// text, 0 to 65536; 0 prepares every command afresh. Default 128.
    /// </summary>
    public int StatementCacheSize
    {
        get => GetInt32(Keywords.StatementCacheSize);
        set => this[Keywords.StatementCacheSize.Name] = value;
    }

    /// <summary>
    /// <c>PRAGMA busy_timeout</c>: how long SQLite itself waits for a lock before reporting SQLITE_BUSY (keyword in
    /// whole milliseconds: a time set here is rounded up, so a positive one never becomes 0, no wait). Default 5000 ms.
    /// </summary>
    /// <exception cref="ArgumentException">The time is negative, or above <see cref="int.MaxValue"/> milliseconds.</exception>
    public TimeSpan BusyTimeout
    {
        get => TimeSpan.FromMilliseconds(GetInt64(Keywords.BusyTimeout));
        set => this[Keywords.BusyTimeout.Name] = value < TimeSpan.Zero ? value.TotalMilliseconds : (long)Math.Ceiling(value.TotalMilliseconds);
    }

    /// <summary><c>PRAGMA journal_mode</c>. Default <see cref="Data.JournalMode.Wal"/>; not applied with <c>Mode=ReadOnly</c>.</summary>
    public JournalMode JournalMode
    {
        get => Enum.Parse<JournalMode>(GetText(Keywords.JournalMode)!);
        set => this[Keywords.JournalMode.Name] = value;
    }

    /// <summary><c>PRAGMA synchronous</c>. Default <see cref="SynchronousMode.Normal"/>.</summary>
    public SynchronousMode Synchronous
    {
        get => Enum.Parse<SynchronousMode>(GetText(Keywords.Synchronous)!);
        set => this[Keywords.Synchronous.Name] = value;
    }

    /// <summary><c>PRAGMA cache_size</c>: pages if positive, KiB if negative; <see langword="null"/> (the default) leaves SQLite's setting.</summary>
    public int? CacheSize
    {
        get => GetText(Keywords.CacheSize) is { } text ? int.Parse(text, CultureInfo.InvariantCulture) : null;
        set => this[Keywords.CacheSize.Name] = value;
    }

    /// <summary><c>PRAGMA mmap_size</c> in bytes; <see langword="null"/> (the default) leaves SQLite's setting.</summary>
    public long? MmapSize
    {
        get => GetText(Keywords.MmapSize) is { } text ? long.Parse(text, CultureInfo.InvariantCulture) : null;
        set => this[Keywords.MmapSize.Name] = value;
    }

    /// <summary><c>PRAGMA temp_store</c>; <see langword="null"/> (the default) leaves SQLite's setting.</summary>
    public TempStoreMode? TempStore
    {
        get => GetText(Keywords.TempStore) is { } text ? Enum.Parse<TempStoreMode>(text) : null;
        set => this[Keywords.TempStore.Name] = value;
    }

    /// <summary><c>PRAGMA journal_size_limit</c> in bytes: the size a WAL or journal file is truncated to after a checkpoint or transaction. Default 64 MiB; -1 for no limit.</summary>
    public long JournalSizeLimit
    {
        get => GetInt64(Keywords.JournalSizeLimit);
        set => this[Keywords.JournalSizeLimit.Name] = value;
    }

    /// <summary><c>PRAGMA wal_autocheckpoint</c> in pages. Default 1000; 0 turns SQLite's automatic checkpoints off.</summary>
    public int WalAutocheckpoint
    {
        get => GetInt32(Keywords.WalAutocheckpoint);
        set => this[Keywords.WalAutocheckpoint.Name] = value;
    }

    /// <summary>Attempts after the first when SQLite reports BUSY or LOCKED, 0 to 100. Default 5; 0 turns retry off.</summary>
    public int Retry
    {
        get => GetInt32(Keywords.Retry);
        set => this[Keywords.Retry.Name] = value;
    }

    /// <summary>The delay before the first retry (keyword in seconds); later delays double up to <see cref="MaxDelay"/>. Default 0.05 s.</summary>
    public TimeSpan BaseDelay
    {
        get => GetSeconds(Keywords.BaseDelay);
        set => this[Keywords.BaseDelay.Name] = value.TotalSeconds;
    }

    /// <summary>
    /// The longest delay between two attempts (keyword in seconds) before <see cref="Jitter"/> spreads it, so a delay
    /// is at most MaxDelay x (1 + Jitter); at least <see cref="BaseDelay"/>. Default 2 s.
    /// </summary>
    public TimeSpan MaxDelay
    {
        get => GetSeconds(Keywords.MaxDelay);
        set => this[Keywords.MaxDelay.Name] = value.TotalSeconds;
    }

    /// <summary>The fraction, 0 to 1, by which each retry delay is randomly spread. Default 0.25.</summary>
    public double Jitter
    {
        get => double.Parse(GetText(Keywords.Jitter)!, CultureInfo.InvariantCulture);
        set => this[Keywords.Jitter.Name] = value;
    }

    /// <summary>
    /// Whether writers in this process queue in order for the database's write lock instead of competing through
    /// SQLite's busy handler (a newcomer may pass the queue until its longest waiter has waited 4 ms). Default
    /// <see langword="true"/>.
    /// </summary>
    public bool WriteGate
    {
        get => bool.Parse(GetText(Keywords.WriteGate)!);
        set => this[Keywords.WriteGate.Name] = value;
    }

    /// <summary>
    /// How often the background checkpointer checkpoints a WAL database (keyword in seconds). Default 60 s; zero
    /// turns it off.
    /// </summary>
    public TimeSpan CheckpointInterval
    {
        get => GetSeconds(Keywords.CheckpointInterval);
        set => this[Keywords.CheckpointInterval.Name] = value.TotalSeconds;
    }

    /// <summary>
    /// The mode of the background checkpointer's checkpoints. Default <see cref="Data.CheckpointMode.Passive"/>;
    /// whatever it is, a <c>-wal</c> file larger than <see cref="JournalSizeLimit"/> gets a TRUNCATE checkpoint.
    /// </summary>
    public CheckpointMode CheckpointMode
    {
        get => Enum.Parse<CheckpointMode>(GetText(Keywords.CheckpointMode)!);
        set => this[Keywords.CheckpointMode.Name] = value;
    }

    /// <summary>
    /// Whether a TRUNCATE checkpoint runs as the pool's last connection closes (the pool is cleared or disposed, idle
    /// pruning closes it, or without pooling its renter does), leaving the files small and consistent. Default
    /// <see langword="true"/>.
    /// </summary>
    public bool CheckpointOnClose
    {
        get => bool.Parse(GetText(Keywords.CheckpointOnClose)!);
        set => this[Keywords.CheckpointOnClose.Name] = value;
    }

    /// <inheritdoc />
    /// <exception cref="ArgumentNullException"><paramref name="keyword"/> is null.</exception>
    public override bool ContainsKey(string keyword)
        => TryResolve(keyword, out var spec) && base.ContainsKey(spec.Name);

    /// <inheritdoc />
    /// <exception cref="ArgumentNullException"><paramref name="keyword"/> is null.</exception>
    public override bool Remove(string keyword)
        => _parsing is not null ? base.Remove(Resolve(keyword).Name) : TryResolve(keyword, out var spec) && base.Remove(spec.Name);

    /// <inheritdoc />
    /// <exception cref="ArgumentNullException"><paramref name="keyword"/> is null.</exception>
    public override bool ShouldSerialize(string keyword)
        => TryResolve(keyword, out var spec) && base.ShouldSerialize(spec.Name);

    /// <inheritdoc />
    /// <exception cref="ArgumentNullException"><paramref name="keyword"/> is null.</exception>
    public override bool TryGetValue(string keyword, [MaybeNullWhen(false)] out object value)
    {
        if (TryResolve(keyword, out var spec))
        {
            value = GetTyped(spec)!;
            return true;
        }

        value = null;
        return false;
    }

    /// <summary>
    /// <see cref="Keywords.Resolve"/>, whose error for an unknown keyword names it, while the constructor parses, as the
    /// connection string spells it (<c>Max Pool Sise</c>, not <c>max pool sise</c>).
    /// </summary>
    /// <exception cref="ArgumentException">The keyword is unknown.</exception>
    private KeywordSpec Resolve(string keyword)
        => TryResolve(keyword, out var spec) ? spec : Keywords.Resolve(_parsing is { } text ? AsWritten(text, keyword) : keyword);

    /// <summary>
    /// <paramref name="keyword"/> as <paramref name="text"/> spells it: the first part whose keyword matches it in any
    /// case, quoted values skipped (<c>'a;b=c'</c>, <c>"it''s"</c>); <paramref name="keyword"/> itself when none does.
    /// </summary>
    private static string AsWritten(string text, string keyword)
    {
        for (var at = 0; text.IndexOf('=', at) is var equals and >= 0;)
        {
            if (text.AsSpan(at, equals - at).Trim() is var key && key.Equals(keyword, StringComparison.OrdinalIgnoreCase))
            {
                return key.ToString();
            }

            var value = equals + 1;
            while (value < text.Length && char.IsWhiteSpace(text[value]))
            {
                value++;
            }

            if (value < text.Length && text[value] is '\'' or '"')
            {
                var quote = text[value++];
                while (value < text.Length && (text[value] != quote || (value + 1 < text.Length && text[value + 1] == quote)))
                {
                    value += text[value] == quote ? 2 : 1; // a doubled quote is one quote of the value
                }
            }

            if (value >= text.Length || text.IndexOf(';', value) is not (>= 0 and var end))
            {
                break;
            }

            at = end + 1;
        }

        return keyword;
    }

    /// <summary>Finds a keyword's spec; <see langword="false"/> for an unknown keyword.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="keyword"/> is null.</exception>
    private static bool TryResolve(string keyword, out KeywordSpec spec)
    {
        ArgumentNullException.ThrowIfNull(keyword);
        return Keywords.TryResolve(keyword, out spec);
    }

    /// <summary>The canonical text of a keyword's value: the one set, else its default.</summary>
    internal string? GetText(KeywordSpec spec)
        => base.TryGetValue(spec.Name, out var value) ? (string)value : spec.Default;

    internal int GetInt32(KeywordSpec spec) => int.Parse(GetText(spec)!, CultureInfo.InvariantCulture);

    internal long GetInt64(KeywordSpec spec) => long.Parse(GetText(spec)!, CultureInfo.InvariantCulture);

    /// <summary>
    /// A number of seconds as a <see cref="TimeSpan"/>, rounded up to whole ticks so that no positive value becomes
    /// zero. Reckoned in decimal from the text, where binary floating point made 0.07 a hair over 700,000 ticks, which
    /// rounding up made a tick more (Pool Timeout=0.0700001 s in its message); one too small for a decimal is a tick.
    /// </summary>
    internal TimeSpan GetSeconds(KeywordSpec spec)
    {
        var text = GetText(spec)!;
        var ticks = (long)Math.Ceiling(decimal.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture) * TimeSpan.TicksPerSecond);
        return TimeSpan.FromTicks(ticks == 0 && double.Parse(text, CultureInfo.InvariantCulture) > 0 ? 1 : ticks);
    }

    /// <summary>A keyword's value in connection-string terms: text, a boolean, a whole number or a number of seconds.</summary>
    private object? GetTyped(KeywordSpec spec) => GetText(spec) is not { } text
        ? null
        : spec.Kind switch
        {
            KeywordKind.Boolean => bool.Parse(text),
            KeywordKind.Integer => long.Parse(text, CultureInfo.InvariantCulture),
            KeywordKind.Number => double.Parse(text, CultureInfo.InvariantCulture),
            _ => text,
        };
}
