namespace SqliteSaver.Data;

/// <summary>
/// How often SQLite syncs to disk (<c>PRAGMA synchronous</c>), applied once to each physical connection.
/// </summary>
public enum SynchronousMode
{
    /// <summary>No syncs; an OS crash or power loss can corrupt the database.</summary>
    Off,

    /// <summary>In WAL mode: durable except for the last transactions before a power loss; never corrupt.</summary>
    Normal,

    /// <summary>Sync at every commit.</summary>
    Full,

    /// <summary>Like <see cref="Full"/>, also syncing the directory after a rollback journal is unlinked.</summary>
    Extra,
}
