namespace SqliteSaver.Data;

/// <summary>What a WAL checkpoint did, as SQLite reports it.</summary>
/// <param name="Busy">
/// <see langword="true"/> when a FULL, RESTART or TRUNCATE checkpoint could not finish because a reader or writer
/// stayed busy past the busy timeout, or when another connection was running a checkpoint (in any mode; both counts
/// are then -1).
/// </param>
/// <param name="LogFrames">Frames in the WAL, or -1 when the database is not in WAL mode or another checkpoint was running.</param>
/// <param name="CheckpointedFrames">
/// Frames of the WAL copied back into the database, by this checkpoint or an earlier one since the WAL last started
/// over; -1 when the database is not in WAL mode or another checkpoint was running.
/// </param>
public readonly record struct CheckpointResult(bool Busy, int LogFrames, int CheckpointedFrames);
