using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Resilience;

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
    /// Whether it may go into the cache when returned: false when the cache keeps nothing (Statement Cache Size 0), for
    /// text longer than the cache keeps, and for one rented fresh for parameters that could bind one statement parameter
    /// twice. (A second command made while the kept one for its text was held is disposed on return all the same.)
    /// </summary>
    public bool Keepable { get; init; }

    /// <summary>
    /// The characters of text and bytes of blobs last bound to its statements: SQLite keeps its own copy of bound
    /// values until they are bound again.
    /// </summary>
    public long BoundValueLength { get; set; }

    /// <summary>Its place in the cache's order of use, while it is kept.</summary>
    public LinkedListNode<OwnedSqliteCommand>? Node { get; set; }

    /// <summary>What its text does, once classified for good (see <see cref="CommandClassifier"/>); null before.</summary>
    public CommandKind? Kind { get; set; }

    /// <summary>
    /// The version of the connection's temp schema a write's <see cref="Kind"/> was found against on a connection with
    /// temporary tables or triggers; -1 when it had none (see <see cref="Resilience.Executor"/>'s Classify).
    /// </summary>
    public long KindTempSchema { get; set; } = -1;

    /// <summary>
    /// Whether its latest execution ran its statements one by one, as written (<see cref="CommandKind.Unprotected"/>), so
    /// that those that ended and committed before a failure were kept; set as those statements begin to run, false
    /// until then.
    /// </summary>
    public bool RunsStatementByStatement { get; set; }

    /// <summary>Whether its text may set a PRAGMA (see <see cref="PhysicalConnection.MaySetPragmas"/>), worked out once.</summary>
    public bool MaySetPragmas => _maySetPragmas ??= PhysicalConnection.MaySetPragmas(CommandText);

    private bool? _maySetPragmas;
}
