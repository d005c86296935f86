using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// A Microsoft.Data.Sqlite command that runs <see cref="SaverDbCommand"/>s' text on one physical connection and stays
/// prepared there, in its <see cref="StatementCache"/>, between the commands that rent it.
/// </summary>
internal sealed class OwnedSqliteCommand : SqliteCommand
{
    /// <summary>Whether a <see cref="SaverDbCommand"/> holds it now, so that the cache must not hand it out again.</summary>
    public bool Rented { get; set; }

    /// <summary>
    /// Whether it may go back into the cache when returned: false for one rented while the kept one was in use, or
    /// for callers whose parameters could leave a statement parameter unbound (see <see cref="StatementCache.Rent"/>).
    /// </summary>
    public bool Keepable { get; set; }

    /// <summary>
    /// Whether the values last bound to its statements are larger than the cache keeps (SQLite holds its own copy of
    /// bound values until they are bound again).
    /// </summary>
    public bool BoundLargeValues { get; set; }

    /// <summary>Its place in the cache's order of use, while it is kept.</summary>
    public LinkedListNode<OwnedSqliteCommand>? Node { get; set; }
}
