namespace SqliteSaver.Data.Wal;

/// <summary>
/// The checkpoint connection did not open because the pool's connections could not say whether the database file at
/// the path is still theirs (see <see cref="Pooling.ConnectionPool.FileMoved"/>): one stayed inside SQLite on another
/// thread, or only connections rented before a clear are open. The pool is busy, not broken, as the health check
/// reports it.
/// </summary>
internal sealed class ConnectionsBusyException(string message) : InvalidOperationException(message);
