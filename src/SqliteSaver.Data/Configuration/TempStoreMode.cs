namespace SqliteSaver.Data;

/// <summary>
/// Where SQLite keeps temporary tables and indices (<c>PRAGMA temp_store</c>).
/// </summary>
public enum TempStoreMode
{
    /// <summary>The compile-time default of the SQLite library.</summary>
    Default,

    /// <summary>Temporary storage in files.</summary>
    File,

    /// <summary>Temporary storage in memory.</summary>
    Memory,
}
