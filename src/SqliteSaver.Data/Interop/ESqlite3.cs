using System.Runtime.InteropServices;
using SQLitePCL;

namespace SqliteSaver.Data.Interop;

/// <summary>
/// Functions of e_sqlite3, the library SQLitePCLRaw's e_sqlite3 provider (the one SqliteSaver.Data depends on) calls,
/// that SQLitePCLRaw does not expose. Call them only when <see cref="Available"/>: otherwise the handles would belong
/// to another copy of SQLite.
/// </summary>
internal static class ESqlite3
{
    /// <summary>SQLITE_TXN_NONE, what <see cref="sqlite3_txn_state"/> reports for a connection with no transaction.</summary>
    private const int TxnNone = 0;

    private const int SqliteOk = 0;

    /// <summary>SQLITE_FCNTL_HAS_MOVED: whether the database file is no longer at its path.</summary>
    private const int FcntlHasMoved = 20;

    private static readonly Lazy<bool> IsAvailable = new(IsSqlitePclRawsLibrary);

    /// <summary>
    /// Whether "e_sqlite3" as this assembly loads it is the very library SQLitePCLRaw calls, by the address of its
    /// version string. A DllImportResolver on SQLitePCLRaw's provider, or another provider, would otherwise give this
    /// class a second copy of SQLite, uninitialized, to call with the first copy's handles.
    /// </summary>
    public static bool Available => IsAvailable.Value;

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    public static extern int sqlite3_busy_handler(IntPtr db, IntPtr callback, IntPtr argument);

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    public static extern int sqlite3_busy_timeout(IntPtr db, int milliseconds);

    /// <summary>Sets what <c>last_insert_rowid()</c> reports on the connection.</summary>
    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    public static extern void sqlite3_set_last_insert_rowid(IntPtr db, long rowid);

    /// <summary>The transaction state of a connection's databases, all of them with a null <paramref name="schema"/>.</summary>
    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    public static extern int sqlite3_txn_state(IntPtr db, IntPtr schema);

    /// <summary>
    /// Whether an open connection holds a transaction, a read one that an unfinished statement keeps included; not
    /// known, and taken as no, when this class cannot be called (see <see cref="Available"/>).
    /// </summary>
    public static bool HoldsTransaction(sqlite3 db)
        => Available && !db.IsClosed && sqlite3_txn_state(db.DangerousGetHandle(), IntPtr.Zero) != TxnNone;

    /// <summary>
    /// Whether a statement of an open connection is running (stepped and not reset: an open reader's, the library's
    /// or one on Microsoft.Data.Sqlite's connection underneath); not known, and taken as no, when this class cannot be
    /// called (see <see cref="Available"/>).
    /// </summary>
    public static bool AnyStatementRunning(sqlite3 db)
        => Available && !db.IsClosed && NextRunning(db.DangerousGetHandle(), IntPtr.Zero) != IntPtr.Zero;

    /// <summary>
    /// For each column of the connection's one running statement (stepped and not reset: an open reader's), whether
    /// SQLite reads it from no table (an expression). <see langword="null"/> when that is not known: no running
    /// statement, more than one (which is the reader's is not known), one with another number of columns, or this
    /// class cannot be called (see <see cref="Available"/>). Raw pointers, never SQLitePCLRaw's handles, which own
    /// their statements.
    /// </summary>
    public static bool[]? ColumnsWithoutTable(sqlite3 db, int fieldCount)
    {
        if (!Available || db.IsClosed)
        {
            return null;
        }

        var handle = db.DangerousGetHandle();
        var running = NextRunning(handle, IntPtr.Zero);
        if (running == IntPtr.Zero || NextRunning(handle, running) != IntPtr.Zero || sqlite3_column_count(running) != fieldCount)
        {
            return null;
        }

        var withoutTable = new bool[fieldCount];
        for (var column = 0; column < fieldCount; column++)
        {
            withoutTable[column] = sqlite3_column_table_name(running, column) == IntPtr.Zero;
        }

        return withoutTable;
    }

    /// <summary>
    /// Whether SQLite finds that the database file a connection opened is no longer at its path (another file was moved
    /// over it, or it was deleted: <c>SQLITE_FCNTL_HAS_MOVED</c>); <see langword="null"/> while another thread is
    /// inside SQLite on the connection (its mutex is not waited for: it may be held for as long as a busy handler or an
    /// application function runs). False also where this cannot be known at all: the connection has no mutex (SQLite
    /// not in serialized mode), the VFS does not say (Windows, memdb), the connection was closed, or this class cannot
    /// be called (see <see cref="Available"/>). The handle is kept from being closed meanwhile, as its owner may close
    /// it on another thread.
    /// </summary>
    public static bool? FileMoved(sqlite3 db)
    {
        if (!Available)
        {
            return false;
        }

        var added = false;
        try
        {
            db.DangerousAddRef(ref added);
            var handle = db.DangerousGetHandle();
            var mutex = sqlite3_db_mutex(handle);
            if (mutex == IntPtr.Zero)
            {
                return false;
            }

            if (sqlite3_mutex_try(mutex) != SqliteOk)
            {
                return null;
            }

            try
            {
                return sqlite3_file_control(handle, "main\0"u8, FcntlHasMoved, out var moved) == SqliteOk && moved != 0;
            }
            finally
            {
                sqlite3_mutex_leave(mutex);
            }
        }
        catch (ObjectDisposedException)
        {
            return false; // closed
        }
        finally
        {
            if (added)
            {
                db.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Whether the database attached as <paramref name="schema"/> lives in SQLite's memdb VFS (by the VFS name
    /// <c>SQLITE_FCNTL_VFSNAME</c> gives); <see langword="false"/> where this class cannot be called (see
    /// <see cref="Available"/>), as nothing can then be told.
    /// </summary>
    public static unsafe bool InMemdb(sqlite3 db, string schema)
    {
        if (!Available)
        {
            return false;
        }

        const int FcntlVfsName = 12;
        var name = System.Text.Encoding.UTF8.GetBytes(schema + "\0");
        IntPtr vfs = 0;
        fixed (byte* schemaName = name)
        {
            if (sqlite3_file_control(db.DangerousGetHandle(), schemaName, FcntlVfsName, &vfs) != SqliteOk || vfs == 0)
            {
                return false; // no file open: a database in SQLite's pager (":memory:"), or a temporary one not yet used
            }
        }

        try
        {
            return Marshal.PtrToStringUTF8(vfs)?.StartsWith("memdb", StringComparison.Ordinal) == true;
        }
        finally
        {
            sqlite3_free(vfs);
        }
    }

    /// <summary>The connection's first running statement (see <see cref="AnyStatementRunning"/>) after <paramref name="after"/> (from the first with zero); zero when none is.</summary>
    private static IntPtr NextRunning(IntPtr db, IntPtr after)
    {
        var statement = sqlite3_next_stmt(db, after);
        while (statement != IntPtr.Zero && sqlite3_stmt_busy(statement) == 0)
        {
            statement = sqlite3_next_stmt(db, statement);
        }

        return statement;
    }

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    private static extern IntPtr sqlite3_next_stmt(IntPtr db, IntPtr statement);

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    private static extern IntPtr sqlite3_db_mutex(IntPtr db);

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    private static extern int sqlite3_mutex_try(IntPtr mutex);

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    private static extern void sqlite3_mutex_leave(IntPtr mutex);

    private static unsafe int sqlite3_file_control(IntPtr db, ReadOnlySpan<byte> schema, int operation, out int value)
    {
        value = 0;
        fixed (byte* name = schema)
        fixed (int* result = &value)
        {
            return sqlite3_file_control(db, name, operation, result);
        }
    }

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    private static extern unsafe int sqlite3_file_control(IntPtr db, byte* schema, int operation, int* value);

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl, EntryPoint = "sqlite3_file_control")]
    private static extern unsafe int sqlite3_file_control(IntPtr db, byte* schema, int operation, IntPtr* value);

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    private static extern void sqlite3_free(IntPtr memory);

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    private static extern int sqlite3_stmt_busy(IntPtr statement);

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    private static extern int sqlite3_column_count(IntPtr statement);

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    private static extern IntPtr sqlite3_column_table_name(IntPtr statement, int column);

    private static unsafe bool IsSqlitePclRawsLibrary()
    {
        try
        {
            fixed (byte* theirs = raw.sqlite3_libversion())
            {
                return theirs != null && theirs == sqlite3_libversion();
            }
        }
        catch (Exception)
        {
            return false; // no e_sqlite3 to load here (DllNotFoundException, EntryPointNotFoundException ...)
        }
    }

    [DllImport("e_sqlite3", CallingConvention = CallingConvention.Cdecl)]
    private static extern unsafe byte* sqlite3_libversion();
}
