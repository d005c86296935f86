using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// A Microsoft.Data.Sqlite command that runs a <see cref="SaverDbCommand"/>'s text on one physical connection and
/// stays prepared there in its <see cref="StatementCache"/>. While rented it holds the <see cref="SaverDbConnection"/>
/// it runs for: a reader holds its command, so a reader still in use keeps its connection from being garbage
/// collected, and so from having its physical connection taken back as leaked while the reader steps on it.
/// </summary>
internal sealed class OwnedSqliteCommand : SqliteCommand
{
    public SaverDbConnection? Owner { get; set; }

    /// <summary>Whether a command or reader is using it now, so that the cache must not hand it out again.</summary>
    public bool Rented { get; set; }

    /// <summary>When it was last given back, in the cache's own count of returns; the least recent is evicted first.</summary>
    public long LastUsed { get; set; }
}
