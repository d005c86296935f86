namespace SqliteSaver.Data;

/// <summary>How a WAL checkpoint copies frames back into the database (SQLite's <c>sqlite3_wal_checkpoint_v2</c> modes).</summary>
public enum CheckpointMode
{
    /// <summary>Checkpoints as many frames as possible without waiting for readers or writers.</summary>
    Passive,

    /// <summary>Waits (through the busy handler) for the writer and for readers on old snapshots, then checkpoints every frame.</summary>
    Full,

    /// <summary>Like <see cref="Full"/>, then also waits until no reader uses the WAL so the next writer restarts it from the beginning.</summary>
    Restart,

    /// <summary>Like <see cref="Restart"/>, then also truncates the <c>-wal</c> file to zero bytes.</summary>
    Truncate,
}
