namespace SqliteSaver.Cli.Commands;

/// <summary>What <c>checkpoint</c> prints with <c>--json</c>.</summary>
/// <param name="Database">The database file.</param>
/// <param name="Mode">The checkpoint mode, in lower case.</param>
/// <param name="Busy">Whether the checkpoint could not finish because a reader or writer stayed busy past the busy timeout.</param>
/// <param name="LogFrames">Frames in the WAL; -1 when the database is not in WAL mode, or (with Busy) another connection's checkpoint kept running.</param>
/// <param name="CheckpointedFrames">Frames copied back into the database; -1 as for LogFrames.</param>
/// <param name="JournalMode">The database's journal mode.</param>
/// <param name="WalBytesBefore">The <c>-wal</c> file's size before the checkpoint (a TRUNCATE checkpoint reports 0 frames once it has emptied the file).</param>
/// <param name="WalBytes">The <c>-wal</c> file's size afterwards.</param>
internal sealed record CheckpointReport(
    string Database, string Mode, bool Busy, int LogFrames, int CheckpointedFrames, string JournalMode, long WalBytesBefore, long WalBytes);
