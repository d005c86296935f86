using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// The Microsoft.Data.Sqlite command inside a <see cref="SaverDbCommand"/>, holding the <see cref="SaverDbConnection"/>
/// it runs for. A reader holds its command, so a reader still in use keeps its connection from being garbage
/// collected, and so from having its physical connection taken back as leaked while the reader steps on it.
/// </summary>
internal sealed class OwnedSqliteCommand : SqliteCommand
{
    public SaverDbConnection? Owner { get; set; }
}
