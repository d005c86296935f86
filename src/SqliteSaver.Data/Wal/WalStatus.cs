namespace SqliteSaver.Data;

/// <summary>What a database's write-ahead log holds, as read by <see cref="CheckpointExtensions.GetWalStatus"/>.</summary>
/// <param name="JournalMode">SQLite's journal mode, such as <c>wal</c> or <c>delete</c>.</param>
/// <param name="WalFileBytes">The size of the <c>-wal</c> file in bytes; 0 when there is none.</param>
/// <param name="WalFrames">
/// The frames the <c>-wal</c> file holds, checkpointed or not: after a RESTART checkpoint SQLite overwrites the
/// file from its start, so this falls only when the file is truncated (TRUNCATE, or Journal Size Limit).
/// </param>
public readonly record struct WalStatus(string JournalMode, long WalFileBytes, long WalFrames);
