namespace SqliteSaver.Data.Resilience;

/// <summary>What a command's SQL does, which decides how it may be run again after SQLITE_BUSY.</summary>
internal enum CommandKind
{
    /// <summary>Only reads: run as it is, and again as a whole on a transient error.</summary>
    Read,

    /// <summary>Writes: run inside a transaction of the library's own (gate, BEGIN IMMEDIATE, COMMIT), so a failed attempt is rolled back whole and can run again.</summary>
    Write,

    /// <summary>
    /// Writes only to the connection's own temp database (temporary tables), which no other connection can lock: run
    /// inside a deferred transaction of the library's own, without the write gate, so a failed attempt is rolled back
    /// whole and can run again.
    /// </summary>
    TempWrite,

    /// <summary>One statement that must not run inside a transaction (BEGIN, COMMIT, VACUUM, PRAGMA, ATTACH, ...): run as it is; SQLite undoes a failed statement, so it can run again.</summary>
    Standalone,

    /// <summary>Several statements, some of which must not run inside a transaction: run once, as they are.</summary>
    Unprotected,
}
