using System.Data.Common;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Configuration;
using SQLitePCL;

namespace SqliteSaver.Cli.Database;

/// <summary>Checks a database path before use and opens it, turning "not a database" into bad input.</summary>
internal static class DatabaseFile
{
    /// <summary>The full path of an existing file (see <see cref="Full"/>).</summary>
    /// <exception cref="BadInputException">The path is empty, a <c>file:</c> URI or a directory, or the file does not exist.</exception>
    public static string RequireExisting(string path)
    {
        var full = RequireNotDirectory(path);
        if (Exists(full))
        {
            return full;
        }

        throw new BadInputException(path.StartsWith('-')
            ? $"{path}: no such file, nor an option of this command (see --help)"
            : $"{path}: no such file");
    }

    /// <summary>The full path (see <see cref="Full"/>) of a file that exists or can be created in an existing folder.</summary>
    /// <exception cref="BadInputException">The path is empty, a <c>file:</c> URI or a directory, or its folder does not exist.</exception>
    public static string RequireCreatable(string path)
    {
        var full = RequireNotDirectory(path);
        return Exists(full) || Directory.Exists(Path.GetDirectoryName(FilePath.Real(full)))
            ? full
            : throw new BadInputException($"{path}: the folder does not exist");
    }

    /// <summary>
    /// <paramref name="path"/> made full as the library makes a Data Source full, so that the tool opens the file the
    /// library would: against the current directory, any <c>..</c> left for the operating system (after a symbolic
    /// link it leaves the folder the link leads to).
    /// </summary>
    public static string Full(string path) => FilePath.Full(path);

    /// <summary>Whether the file exists, through any symbolic links (one whose target is missing names a missing file).</summary>
    public static bool Exists(string path) => File.Exists(FilePath.Real(path));

    /// <summary>SQLITE_READONLY_ROLLBACK: a read-only connection met a hot journal it may not roll back.</summary>
    private const int ReadOnlyRollback = 776;

    /// <summary>SQLITE_READONLY_DIRECTORY: SQLite could not create a file it needs beside the database.</summary>
    private const int ReadOnlyDirectory = 1544;

    /// <summary>
    /// Opens a plain connection without pooling (<see cref="SqliteOpenMode.ReadOnly"/> and
    /// <see cref="SqliteOpenMode.ReadWrite"/> never create the file), with SQLite's busy timeout set, and reads the
    /// database header within it, not within Microsoft.Data.Sqlite's 30 s of retries.
    /// </summary>
    /// <exception cref="BadInputException">The file is not a SQLite database.</exception>
    /// <exception cref="SqliteException">The database stayed locked past <paramref name="busyTimeout"/>, or another error.</exception>
    public static SqliteConnection OpenPlain(string path, SqliteOpenMode mode, int busyTimeout)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Mode = mode, Pooling = false }.ConnectionString);
        try
        {
            connection.Open();
            var handle = connection.Handle!;
            raw.sqlite3_busy_timeout(handle, busyTimeout);
            var rc = raw.sqlite3_exec(handle, "PRAGMA schema_version");
            if (rc == raw.SQLITE_NOTADB)
            {
                throw new BadInputException($"{path}: not a SQLite database");
            }

            if (rc != raw.SQLITE_OK && raw.sqlite3_extended_errcode(handle) == ReadOnlyRollback)
            {
                throw new BadInputException(
                    $"{path}: a writer that crashed left a hot journal ({path}-journal), which SQLite must roll back before anyone reads the database, and it cannot on a read-only connection; 'sqlite-saver checkpoint {path}', or any read-write open, rolls it back");
            }

            if (rc != raw.SQLITE_OK && raw.sqlite3_extended_errcode(handle) == ReadOnlyDirectory)
            {
                throw new SqliteException(
                    $"SQLite Error 8: 'attempt to write a readonly database': SQLite must create files beside {path} (the -wal and -shm files of a database in WAL mode, which reading needs too), and this user may not create files in {Path.GetDirectoryName(path)}.",
                    rc,
                    ReadOnlyDirectory);
            }

            ThrowIfLocked(rc, path, busyTimeout);
            SqliteException.ThrowExceptionForRC(rc, handle);
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>SQLite's "database is locked", saying which file and how long the command waited (for a cron job's log, say).</summary>
    /// <exception cref="SqliteException">SQLITE_BUSY: <paramref name="rc"/> is.</exception>
    public static void ThrowIfLocked(int rc, string path, int busyTimeout)
    {
        if (rc == raw.SQLITE_BUSY)
        {
            throw new SqliteException(
                $"SQLite Error 5: 'database is locked': another connection held a lock on {path} for longer than this command waits ({busyTimeout} ms).",
                rc);
        }
    }

    /// <summary>Opens a connection and reads the database header, so a file that is not SQLite fails here.</summary>
    /// <exception cref="BadInputException">The file is not a SQLite database.</exception>
    public static T Open<T>(string path, Func<T> create)
        where T : DbConnection
    {
        var connection = create();
        try
        {
            connection.Open();
            using var header = connection.CreateCommand();
            header.CommandText = "PRAGMA schema_version";
            header.ExecuteScalar();
            return connection;
        }
        catch (SqliteException exception) when (exception.SqliteErrorCode == raw.SQLITE_NOTADB)
        {
            connection.Dispose();
            throw new BadInputException($"{path}: not a SQLite database");
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Whether another connection holds the database's write lock right now: tries <c>BEGIN IMMEDIATE</c> without
    /// waiting on a read-write connection of its own and rolls back. Null when the file cannot be opened for writing.
    /// With <paramref name="keepWal"/> that connection, if it closes last, leaves the <c>-wal</c> file as it is, where
    /// SQLite would copy its frames into the database and delete it. In rollback-journal mode a writer that commits
    /// keeps readers out too: the connection's first read then meets SQLITE_BUSY, which means the lock is held.
    /// </summary>
    public static bool? IsWriteLocked(string path, bool keepWal)
    {
        SqliteConnection connection;
        try
        {
            connection = OpenPlain(path, SqliteOpenMode.ReadWrite, busyTimeout: 0);
        }
        catch (SqliteException error) when (error.SqliteErrorCode == raw.SQLITE_BUSY)
        {
            return true;
        }

        using (connection)
        {
            return IsWriteLocked(connection.Handle!, keepWal);
        }
    }

    private static bool? IsWriteLocked(sqlite3 handle, bool keepWal)
    {
        if (keepWal)
        {
            const int NoCheckpointOnClose = 1006; // SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE
            SqliteException.ThrowExceptionForRC(raw.sqlite3_db_config(handle, NoCheckpointOnClose, 1, out _), handle);
        }

        if (raw.sqlite3_db_readonly(handle, "main") == 1)
        {
            return null;
        }

        var rc = raw.sqlite3_exec(handle, "BEGIN IMMEDIATE");
        if (rc == raw.SQLITE_BUSY)
        {
            return true;
        }

        SqliteException.ThrowExceptionForRC(rc, handle);
        SqliteException.ThrowExceptionForRC(raw.sqlite3_exec(handle, "ROLLBACK"), handle);
        return false;
    }

    private static string RequireNotDirectory(string path)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new BadInputException("the database path is empty");
        }

        if (path.StartsWith("file:", StringComparison.OrdinalIgnoreCase))
        {
            // SQLite would read it as a URI, and the tool's checks as a file name: give the path, or ./file:x for a file so named.
            throw new BadInputException($"{path}: a file: URI; give the database's path instead (./{path} for a file whose name starts with 'file:')");
        }

        var full = Full(path);
        return Directory.Exists(FilePath.Real(full)) ? throw new BadInputException($"{path}: is a directory, not a database file") : full;
    }
}
