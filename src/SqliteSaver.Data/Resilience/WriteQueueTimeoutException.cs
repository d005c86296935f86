using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// SQLITE_BUSY raised when a writer waited its whole CommandTimeout in the process's write queue. It keeps code 5 so
/// that existing handlers of "database is locked" catch it, but it is not transient: the wait already spent the
/// caller's time budget, so no retry strategy runs it again.
/// </summary>
internal sealed class WriteQueueTimeoutException(string message) : SqliteException(message, 5, 5);
