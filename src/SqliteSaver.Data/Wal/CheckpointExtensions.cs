using System.Data;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace SqliteSaver.Data;

/// <summary>WAL checkpoints on an open <see cref="SaverDbConnection"/> or <see cref="SqliteConnection"/>.</summary>
public static class CheckpointExtensions
{
    /// <summary>
    /// Runs a WAL checkpoint of the <c>main</c> database with SQLite's <c>sqlite3_wal_checkpoint_v2</c> semantics.
    /// </summary>
    /// <param name="connection">An open <see cref="SaverDbConnection"/> or <see cref="SqliteConnection"/>.</param>
    /// <param name="mode">The checkpoint mode; <see cref="CheckpointMode.Passive"/> by default.</param>
    /// <returns>
    /// SQLite's figures; <see cref="CheckpointResult.Busy"/> when the checkpoint could not finish within the busy
    /// timeout. On a database not in WAL mode both frame counts are -1 and nothing throws.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="connection"/> is neither a SaverDbConnection nor a SqliteConnection.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="mode"/> is not a defined <see cref="CheckpointMode"/>.</exception>
    /// <exception cref="InvalidOperationException">The connection is closed.</exception>
    /// <exception cref="SqliteException">SQLite reported an error other than busy.</exception>
    public static CheckpointResult Checkpoint(this DbConnection connection, CheckpointMode mode = CheckpointMode.Passive)
    {
        ArgumentNullException.ThrowIfNull(connection);
        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Use Passive, Full, Restart or Truncate.");
        }

        var handle = connection switch
        {
            SaverDbConnection saver => saver.GetOpenPhysical(nameof(Checkpoint)).Handle,
            SqliteConnection { State: ConnectionState.Open } sqlite => sqlite.Handle!,
            SqliteConnection => throw new InvalidOperationException("Checkpoint requires an open connection."),
            _ => throw new ArgumentException(
                $"Checkpoint runs on a SaverDbConnection or a SqliteConnection, not on a {connection.GetType().Name}.",
                nameof(connection)),
        };

        var rc = raw.sqlite3_wal_checkpoint_v2(handle, "main", (int)mode, out var logFrames, out var checkpointedFrames);
        if (rc != raw.SQLITE_BUSY)
        {
            SqliteException.ThrowExceptionForRC(rc, handle);
        }

        return new CheckpointResult(rc == raw.SQLITE_BUSY, logFrames, checkpointedFrames);
    }

    /// <summary>
    /// Runs a WAL checkpoint (see <see cref="Checkpoint"/>). SQLite has no asynchronous I/O: the checkpoint runs on
    /// the calling thread, after <paramref name="cancellationToken"/> is checked.
    /// </summary>
    /// <param name="connection">An open <see cref="SaverDbConnection"/> or <see cref="SqliteConnection"/>.</param>
    /// <param name="mode">The checkpoint mode; <see cref="CheckpointMode.Passive"/> by default.</param>
    /// <param name="cancellationToken">Checked before the checkpoint starts.</param>
    /// <returns>SQLite's figures (see <see cref="Checkpoint"/>).</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="connection"/> is neither a SaverDbConnection nor a SqliteConnection.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="mode"/> is not a defined <see cref="CheckpointMode"/>.</exception>
    /// <exception cref="InvalidOperationException">The connection is closed.</exception>
    /// <exception cref="SqliteException">SQLite reported an error other than busy.</exception>
    public static Task<CheckpointResult> CheckpointAsync(
        this DbConnection connection,
        CheckpointMode mode = CheckpointMode.Passive,
        CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<CheckpointResult>(cancellationToken);
        }

        try
        {
            return Task.FromResult(connection.Checkpoint(mode));
        }
        catch (Exception exception)
        {
            return Task.FromException<CheckpointResult>(exception);
        }
    }
}
