namespace SqliteSaver.Data.Contention;

/// <summary>The connection layers compared, each with its own defaults.</summary>
internal enum Stack
{
    /// <summary>SqliteSaver.Data with its defaults.</summary>
    Saver,

    /// <summary>Microsoft.Data.Sqlite with its defaults (WAL switched on once).</summary>
    Plain,

    /// <summary>Microsoft.Data.Sqlite with <c>PRAGMA busy_timeout</c> set on every connection.</summary>
    PlainBusyTimeout,
}
