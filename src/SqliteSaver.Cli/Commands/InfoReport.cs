namespace SqliteSaver.Cli.Commands;

/// <summary>What <c>info</c> prints with <c>--json</c>.</summary>
/// <param name="Database">The database file.</param>
/// <param name="SqliteVersion">The version of the SQLite library the tool runs.</param>
/// <param name="JournalMode">The database's journal mode, such as <c>wal</c> or <c>delete</c>.</param>
/// <param name="PageSize">Bytes per page.</param>
/// <param name="PageCount">Pages in the database.</param>
/// <param name="FreelistPages">Unused pages in the database file.</param>
/// <param name="DatabaseBytes">The database file's size.</param>
/// <param name="WalBytes">The <c>-wal</c> file's size; 0 when there is none.</param>
/// <param name="WalFrames">The frames of committed transactions in the WAL (see <see cref="Database.WalFile.CommittedFrames"/>).</param>
/// <param name="WriteLocked">
/// Whether another connection holds the write lock right now; null when the file cannot be opened for writing.
/// </param>
internal sealed record InfoReport(
    string Database,
    string SqliteVersion,
    string JournalMode,
    long PageSize,
    long PageCount,
    long FreelistPages,
    long DatabaseBytes,
    long WalBytes,
    long WalFrames,
    bool? WriteLocked);
