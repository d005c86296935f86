namespace SqliteSaver.Data.Wal;

/// <summary>
/// The checkpoint connection did not open because a connection of the pool stayed inside SQLite on another thread,
/// so it could not say whether the database file at the path is still its own (see
/// <see cref="Pooling.ConnectionPool.FileMoved"/>): the pool is busy, not broken, as the health check reports it.
/// </summary>
internal sealed class ConnectionsBusyException(string message) : InvalidOperationException(message);
