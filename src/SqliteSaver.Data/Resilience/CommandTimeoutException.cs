using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// SQLITE_BUSY raised when a command's CommandTimeout ran out while it waited for the write lock: in the process's
/// write queue, or for a lock another connection held (see <see cref="CommandDeadline"/>). It keeps code 5 so that
/// existing handlers of "database is locked" catch it, but it is not transient: the wait already spent the caller's
/// time budget, so no retry strategy runs it again.
/// </summary>
internal sealed class CommandTimeoutException(string message) : SqliteException(message, 5, 5);
