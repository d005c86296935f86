namespace SqliteSaver.Data;

/// <summary>What a database's write-ahead log holds, as read by <see cref="CheckpointExtensions.GetWalStatus"/>.</summary>
/// <param name="JournalMode">SQLite's journal mode, such as <c>wal</c> or <c>delete</c>.</param>
/// <param name="WalFileBytes">The size of the <c>-wal</c> file in bytes; 0 when there is none.</param>
/// <param name="WalFrames">
/// The frames the <c>-wal</c> file has room for, from its size, checkpointed or not: after SQLite starts the file
/// over (once every frame has been copied back and no reader needs them) it writes it again from its start, so this
/// falls only when the file is truncated (TRUNCATE, or Journal Size Limit). A checkpoint's
/// <see cref="CheckpointResult.LogFrames"/> counts the frames of committed transactions in it.
/// </param>
public readonly record struct WalStatus(string JournalMode, long WalFileBytes, long WalFrames);
