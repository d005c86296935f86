namespace SqliteSaver.Data;

/// <summary>
/// The SQLite journal mode applied once to each physical connection (<c>PRAGMA journal_mode</c>).
/// </summary>
public enum JournalMode
{
    /// <summary>Write-ahead logging: readers do not block the writer, the writer does not block readers.</summary>
    Wal,

    /// <summary>Rollback journal deleted at the end of each transaction (SQLite's own default).</summary>
    Delete,

    /// <summary>Rollback journal truncated to zero bytes at the end of each transaction.</summary>
    Truncate,

    /// <summary>Rollback journal kept and its header zeroed at the end of each transaction.</summary>
    Persist,

    /// <summary>Rollback journal kept in memory; a crash mid-transaction can corrupt the database.</summary>
    Memory,

    /// <summary>No rollback journal; ROLLBACK is undefined and a crash can corrupt the database.</summary>
    Off,
}
