namespace SqliteSaver.Data;

/// <summary>What a database's write-ahead log holds, as read by <see cref="CheckpointExtensions.GetWalStatus"/>.</summary>
/// <param name="JournalMode">SQLite's journal mode, such as <c>wal</c> or <c>delete</c>.</param>
/// <param name="WalFileBytes">The size of the <c>-wal</c> file in bytes; 0 when there is none.</param>
/// <param name="WalFrames">
/// The frames of committed transactions in the WAL, checkpointed or not, as a checkpoint counts them
/// (<see cref="CheckpointResult.LogFrames"/>): it falls when SQLite starts the file over, which a writer does once every
/// frame has been copied back and no reader needs them (at once after a RESTART or TRUNCATE checkpoint), and is 0 once
/// the file is truncated. Read from the file, without verifying checksums.
/// </param>
public readonly record struct WalStatus(string JournalMode, long WalFileBytes, long WalFrames);
