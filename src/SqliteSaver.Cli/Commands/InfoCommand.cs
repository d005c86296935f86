using System.CommandLine;
using System.Globalization;
using Microsoft.Data.Sqlite;
using SqliteSaver.Cli.Database;
using SqliteSaver.Data;
using SQLitePCL;

namespace SqliteSaver.Cli.Commands;

/// <summary><c>info</c>: what an existing database file holds, read without creating or changing it.</summary>
internal static class InfoCommand
{
    /// <summary>How long reading waits for another connection's lock, in milliseconds.</summary>
    private const int ReadBusyTimeout = 5000;

    public static Command Create()
    {
        var path = new Argument<string>("PATH") { Description = "The database file; it must exist (it is never created)." };
        var json = CommonOptions.Json();
        var command = new Command(
            "info",
            "Prints a database's journal mode, page size and count, free pages, file size, WAL size and frames, and the SQLite version, " +
            "read on a read-only connection. Then tells whether another connection holds the write lock right now: on a second, " +
            "read-write connection it tries BEGIN IMMEDIATE without waiting and rolls back at once (skipped when the file cannot be " +
            "opened for writing). The database is never created; SQLite may create its -wal and -shm files.")
        {
            Arguments = { path },
            Options = { json },
        };
        command.SetAction(parseResult =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var file = DatabaseFile.RequireExisting(parseResult.GetRequiredValue(path));
            var report = Read(file);
            if (parseResult.GetValue(json))
            {
                Json.Write(output, report);
            }
            else
            {
                Print(output, report);
            }

            return ExitCodes.Success;
        });
        return command;
    }

    private static InfoReport Read(string file)
    {
        string version;
        long pageSize, pageCount, freelist;
        WalStatus wal;
        string opened; // the file SQLite opened: the one a symbolic link points to, not the link
        using (var connection = DatabaseFile.OpenPlain(file, SqliteOpenMode.ReadOnly, ReadBusyTimeout))
        {
            // One read transaction, whose first read waits for a lock at most ReadBusyTimeout: the statements after it
            // then wait for none, where each would wait again, and Microsoft.Data.Sqlite retry it up to 30 s.
            var rc = raw.sqlite3_exec(connection.Handle, "BEGIN; PRAGMA schema_version");
            DatabaseFile.ThrowIfLocked(rc, file, ReadBusyTimeout);
            SqliteException.ThrowExceptionForRC(rc, connection.Handle);
            version = (string)Scalar(connection, "SELECT sqlite_version()");
            pageSize = (long)Scalar(connection, "PRAGMA page_size");
            pageCount = (long)Scalar(connection, "PRAGMA page_count");
            freelist = (long)Scalar(connection, "PRAGMA freelist_count");
            wal = connection.GetWalStatus();
            opened = raw.sqlite3_db_filename(connection.Handle, "main").utf8_to_string();
        }

        // Where SQLite keeps the -wal file: beside the file a symbolic link names, not beside the link.
        var walFrames = wal.WalFileBytes > 0 ? WalFile.CommittedFrames(opened + "-wal") : 0;
        // Checked after the read-only connection has closed, so that SQLite can remove the -wal and -shm files it may
        // create; but a -wal file that holds anything (left by a writer that crashed, say, committed or not) is left as
        // it is: info changes nothing.
        var writeLocked = DatabaseFile.IsWriteLocked(file, keepWal: wal.WalFileBytes > 0);
        return new InfoReport(file, version, wal.JournalMode, pageSize, pageCount, freelist, new FileInfo(opened).Length, wal.WalFileBytes, walFrames, writeLocked);
    }

    private static object Scalar(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar()!;
    }

    private static void Print(TextWriter output, InfoReport report)
    {
        var invariant = CultureInfo.InvariantCulture;
        output.WriteLine($"Database        {report.Database}");
        output.WriteLine($"SQLite          {report.SqliteVersion}");
        output.WriteLine($"Journal mode    {report.JournalMode}");
        output.WriteLine(string.Create(invariant, $"Pages           {report.PageCount} of {report.PageSize} bytes, {report.FreelistPages} free"));
        output.WriteLine(string.Create(invariant, $"File size       {Format.Bytes(report.DatabaseBytes)} ({report.DatabaseBytes} bytes)"));
        output.WriteLine(string.Create(invariant, $"WAL             {Format.Bytes(report.WalBytes)}, {report.WalFrames} frames"));
        output.WriteLine($"Write lock      {report.WriteLocked switch
        {
            true => "held by another connection right now",
            false => "free (BEGIN IMMEDIATE succeeded at once and was rolled back)",
            null => "not checked: the file cannot be opened for writing",
        }}");
    }
}
