using System.Data;
using System.Data.Common;
using System.Diagnostics;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Interop;
using SqliteSaver.Data.Pooling;
using SqliteSaver.Data.Resilience;
using SqliteSaver.Data.Threading;
using SQLitePCL;

namespace SqliteSaver.Data;

/// <summary>WAL checkpoints on an open <see cref="SaverDbConnection"/> or <see cref="SqliteConnection"/>.</summary>
public static class CheckpointExtensions
{
    /// <summary>
    /// Runs a WAL checkpoint of the <c>main</c> database with SQLite's <c>sqlite3_wal_checkpoint_v2</c> semantics. On
    /// a <see cref="SaverDbConnection"/> it first waits for the connection's asynchronous executions not awaited yet,
    /// blocking the thread at most Default Timeout, as BeginTransaction does (CheckpointAsync awaits them).
    /// </summary>
    /// <param name="connection">An open <see cref="SaverDbConnection"/> or <see cref="SqliteConnection"/>.</param>
    /// <param name="mode">The checkpoint mode; <see cref="CheckpointMode.Passive"/> by default.</param>
    /// <returns>
    /// SQLite's figures; <see cref="CheckpointResult.Busy"/> when the checkpoint could not finish within the busy
    /// timeout (which it also spends waiting for another checkpoint to end: the data source's background one, say). On a
    /// database not in WAL mode both frame counts are -1 and nothing throws. A connection that has not read the
    /// database since it went to WAL (a <see cref="SqliteConnection"/> just opened) reads it once first, outside a
    /// transaction, as SQLite opens the WAL only then; it does so only when the <c>-wal</c> file holds something: with
    /// an empty or no <c>-wal</c> file there is nothing to copy, and such a connection answers -1 frames.
    /// </returns>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="connection"/> is neither a SaverDbConnection nor a SqliteConnection.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="mode"/> is not a defined <see cref="CheckpointMode"/>.</exception>
    /// <exception cref="InvalidOperationException">The connection is closed (or was closed while the checkpoint waited), has a transaction that has read or written or an open reader (a deferred transaction that has not yet read holds no lock, and the checkpoint runs), opened a WAL database read-only, or SQLite still cannot roll back a failed transaction on it.</exception>
    /// <exception cref="SqliteException">SQLite reported an error other than busy; or SQLITE_BUSY: on a <see cref="SaverDbConnection"/>, its asynchronous executions not awaited yet, which the checkpoint waits for, outlasted Default Timeout.</exception>
    public static CheckpointResult Checkpoint(this DbConnection connection, CheckpointMode mode = CheckpointMode.Passive)
    {
        ArgumentNullException.ThrowIfNull(connection);
        CheckMode(mode);
        return OnConnection(
            connection,
            nameof(Checkpoint),
            (handle, token) => token.CanBeCanceled
                ? RunCancellable(handle, mode, BusyTimeout(handle), token)
                : RunWaiting(handle, mode, busyTimeout: null, token),
            CancellationToken.None);
    }

    /// <summary>
    /// What the <c>main</c> database's WAL holds right now, for dashboards and operators: the journal mode, the size
    /// of the <c>-wal</c> file and the frames it has room for (see <see cref="WalStatus.WalFrames"/>). Nothing is
    /// checkpointed, and the file is not read: its size is all it takes. On a <see cref="SaverDbConnection"/> it first
    /// waits for the connection's asynchronous executions not awaited yet, as <see cref="Checkpoint"/> does.
    /// </summary>
    /// <param name="connection">An open <see cref="SaverDbConnection"/> or <see cref="SqliteConnection"/>.</param>
    /// <returns>The status; a database not in WAL mode, or in memory, has no <c>-wal</c> file (0 bytes, 0 frames).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="connection"/> is neither a SaverDbConnection nor a SqliteConnection.</exception>
    /// <exception cref="InvalidOperationException">The connection is closed, or SQLite still cannot roll back a failed transaction on it.</exception>
    /// <exception cref="SqliteException">SQLITE_BUSY: on a <see cref="SaverDbConnection"/>, its asynchronous executions not awaited yet, which the call waits for, outlasted Default Timeout.</exception>
    public static WalStatus GetWalStatus(this DbConnection connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return OnConnection(connection, nameof(GetWalStatus), static (handle, _) => ReadStatus(handle), CancellationToken.None);
    }

    /// <summary>
    /// Runs a WAL checkpoint (see <see cref="Checkpoint"/>). SQLite has no asynchronous I/O: the checkpoint runs on
    /// the calling thread, or, on a <see cref="SaverDbConnection"/> whose asynchronous executions not awaited yet still
    /// run, on a thread-pool thread once they have ended, awaited without blocking a thread (at most Default Timeout;
    /// an execution started meanwhile runs after the checkpoint); the checkpoint then blocks that thread as it would
    /// the caller's. Cancelling <paramref name="cancellationToken"/> ends that wait, and a FULL, RESTART or TRUNCATE
    /// checkpoint's wait for writers and readers (in SQLite's busy handler, up to the busy timeout).
    /// </summary>
    /// <param name="connection">An open <see cref="SaverDbConnection"/> or <see cref="SqliteConnection"/>.</param>
    /// <param name="mode">The checkpoint mode; <see cref="CheckpointMode.Passive"/> by default.</param>
    /// <param name="cancellationToken">Checked before the checkpoint starts; ends its wait for the connection's earlier executions and for other connections.</param>
    /// <returns>SQLite's figures (see <see cref="Checkpoint"/>).</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="connection"/> is neither a SaverDbConnection nor a SqliteConnection.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="mode"/> is not a defined <see cref="CheckpointMode"/>.</exception>
    /// <exception cref="InvalidOperationException">The connection is closed (or was closed while the checkpoint waited), has a transaction that has read or written or an open reader (a deferred transaction that has not yet read holds no lock, and the checkpoint runs), opened a WAL database read-only, or SQLite still cannot roll back a failed transaction on it.</exception>
    /// <exception cref="SqliteException">SQLite reported an error other than busy; or SQLITE_BUSY: on a <see cref="SaverDbConnection"/>, its asynchronous executions not awaited yet, which the checkpoint waits for, outlasted Default Timeout.</exception>
    public static Task<CheckpointResult> CheckpointAsync(
        this DbConnection connection,
        CheckpointMode mode = CheckpointMode.Passive,
        CancellationToken cancellationToken = default)
        => connection is SaverDbConnection saver && !cancellationToken.IsCancellationRequested && saver.EarlierAsyncExecution() is { } earlier
            ? CheckpointAfterEarlierAsync(saver, earlier, mode, cancellationToken)
            : AsTask(() => CheckpointCancellable(connection, mode, cancellationToken), cancellationToken);

    /// <summary>Runs a PASSIVE checkpoint as <see cref="CheckpointAsync(DbConnection, CheckpointMode, CancellationToken)"/> does.</summary>
    /// <param name="connection">An open <see cref="SaverDbConnection"/> or <see cref="SqliteConnection"/>.</param>
    /// <param name="cancellationToken">Checked before the checkpoint starts; ends its wait for the connection's earlier executions and for other connections.</param>
    /// <returns>SQLite's figures (see <see cref="Checkpoint"/>).</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="connection"/> is neither a SaverDbConnection nor a SqliteConnection.</exception>
    /// <exception cref="InvalidOperationException">As for <see cref="Checkpoint"/>.</exception>
    /// <exception cref="SqliteException">SQLite reported an error other than busy; or SQLITE_BUSY: on a <see cref="SaverDbConnection"/>, its asynchronous executions not awaited yet, which the checkpoint waits for, outlasted Default Timeout.</exception>
    public static Task<CheckpointResult> CheckpointAsync(this DbConnection connection, CancellationToken cancellationToken)
        => CheckpointAsync(connection, CheckpointMode.Passive, cancellationToken);

    /// <summary>
    /// <see cref="CheckpointAsync(DbConnection, CheckpointMode, CancellationToken)"/> on a connection whose asynchronous
    /// executions still run: it awaits them, without blocking the thread, and is waited for as they are.
    /// </summary>
    private static Task<CheckpointResult> CheckpointAfterEarlierAsync(SaverDbConnection saver, Task earlier, CheckpointMode mode, CancellationToken cancellationToken)
    {
        var checkpoint = WaitThenCheckpoint();
        if (!checkpoint.IsCompleted)
        {
            saver.InFlight(checkpoint); // an execution started meanwhile runs after it
        }

        return checkpoint;

        async Task<CheckpointResult> WaitThenCheckpoint()
        {
            CheckMode(mode);
            var waitedIn = await saver.AfterEarlier(
                earlier, CommandDeadline.StartDefault(saver.Options.DefaultTimeout), cancellationToken).ConfigureAwait(false);
            return OnSaver(saver, nameof(CheckpointAsync), (handle, token) => RunCancellable(handle, mode, BusyTimeout(handle), token), waitedIn, cancellationToken);
        }
    }

    /// <summary>Rejects a value that is not a defined <see cref="CheckpointMode"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="mode"/> is not defined.</exception>
    internal static void CheckMode(CheckpointMode mode)
    {
        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Use Passive, Full, Restart or Truncate.");
        }
    }

    /// <summary>Runs a synchronous checkpoint call as a task: cancelled before it starts, or faulted with its exception.</summary>
    internal static Task<T> AsTask<T>(Func<T> run, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<T>(cancellationToken);
        }

        try
        {
            return Task.FromResult(run());
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<T>(cancellationToken);
        }
        catch (Exception exception)
        {
            return Task.FromException<T>(exception);
        }
    }

    /// <summary><see cref="Checkpoint"/> with SQLite's waits for other connections ended by <paramref name="cancellationToken"/>.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> ended a wait.</exception>
    private static CheckpointResult CheckpointCancellable(DbConnection connection, CheckpointMode mode, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(connection);
        CheckMode(mode);
        return OnConnection(connection, nameof(CheckpointAsync), (handle, token) => RunCancellable(handle, mode, BusyTimeout(handle), token), cancellationToken);
    }

    /// <summary>
    /// Runs <see cref="RunWaiting"/> with a busy handler that <paramref name="cancellationToken"/> ends (SQLite's own
    /// waits for readers and writers, at most <paramref name="busyTimeout"/> milliseconds each), and throws rather than
    /// answer busy once the token is cancelled.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="SqliteException">SQLite reported an error other than busy.</exception>
    internal static CheckpointResult RunCancellable(sqlite3 handle, CheckpointMode mode, int busyTimeout, CancellationToken cancellationToken)
    {
        using var busyHandler = new CancellableBusyHandler();
        var installed = busyHandler.Install(handle, busyTimeout, cancellationToken);
        try
        {
            var result = RunWaiting(handle, mode, busyTimeout, cancellationToken);
            if (result.Busy)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            return result;
        }
        finally
        {
            if (installed)
            {
                busyHandler.Uninstall(handle);
            }
        }
    }

    /// <summary>Runs <c>sqlite3_wal_checkpoint_v2</c> on the main database of an open handle.</summary>
    /// <exception cref="SqliteException">SQLite reported an error other than busy.</exception>
    /// <exception cref="InvalidOperationException">The connection has a transaction that holds a lock, or an open reader, of its own, or opened a WAL database read-only.</exception>
    internal static CheckpointResult Run(sqlite3 handle, CheckpointMode mode)
    {
        var rc = raw.sqlite3_wal_checkpoint_v2(handle, "main", (int)mode, out var logFrames, out var checkpointedFrames);
        if (rc == raw.SQLITE_OK && logFrames == -1 && CaughtUpWithJournalMode(handle))
        {
            rc = raw.sqlite3_wal_checkpoint_v2(handle, "main", (int)mode, out logFrames, out checkpointedFrames);
        }

        if (rc == raw.SQLITE_LOCKED && HasTransaction(handle))
        {
            // SQLITE_LOCKED is transient to the retry policy, which would run a unit of work calling this again and again.
            throw new InvalidOperationException(
                "A checkpoint cannot run on a connection with a transaction or an open reader (SQLite answers SQLITE_LOCKED): commit or roll back and close the reader first, or use SaverDataSource.Checkpoint, which runs on a connection of its own.",
                Error(handle, rc));
        }

        if (raw.sqlite3_db_readonly(handle, "main") == 1
            && (rc != raw.SQLITE_OK || logFrames != -1 || JournalModeIsWal(handle)))
        {
            // SQLite answers a disk I/O error, which says nothing of the cause, when the WAL has frames to copy, and
            // nothing when it has none; SQLITE_BUSY while another connection's checkpoint holds the checkpoint lock,
            // which polling for would only end in busy: refused in each case, so that code which checkpoints there
            // fails at once.
            throw new InvalidOperationException(
                "A checkpoint cannot run on a connection that opened the database read-only (Mode=ReadOnly, mode=ro, or a file it may not write): it writes the database file. Run it on a read-write connection.",
                rc is raw.SQLITE_OK or raw.SQLITE_BUSY ? null : Error(handle, rc));
        }

        if (rc != raw.SQLITE_BUSY)
        {
            SqliteException.ThrowExceptionForRC(rc, handle);
        }

        return new CheckpointResult(rc == raw.SQLITE_BUSY, logFrames, checkpointedFrames);
    }

    /// <summary>
    /// Whether SQLite reads the connection's journal mode as WAL (see <see cref="ReadStatus(sqlite3)"/>); <see langword="false"/>
    /// when it cannot read it: on a connection that has not read the schema yet, that takes a lock, which another
    /// connection may hold for longer than the busy timeout (the checkpoint then answers -1 frames, as SQLite does).
    /// </summary>
    private static bool JournalModeIsWal(sqlite3 handle)
    {
        try
        {
            return ReadStatus(handle).JournalMode == "wal";
        }
        catch (SqliteException)
        {
            return false;
        }
    }

    /// <summary>SQLite's error <paramref name="rc"/> on <paramref name="handle"/>, with its message and extended code.</summary>
    private static SqliteException Error(sqlite3 handle, int rc)
        => new(raw.sqlite3_errmsg(handle).utf8_to_string(), rc, raw.sqlite3_extended_errcode(handle));

    /// <summary>
    /// <see cref="Run"/>, waiting up to the busy timeout while another checkpoint runs: SQLite then answers SQLITE_BUSY
    /// at once, with no frame counts, without its busy handler. That checkpoint may be the data source's own background
    /// one, the automatic one in another connection's commit, or another process's.
    /// </summary>
    /// <param name="handle">The connection.</param>
    /// <param name="mode">The checkpoint mode.</param>
    /// <param name="busyTimeout">The connection's busy timeout in milliseconds; read from it when null.</param>
    /// <param name="cancellationToken">Ends the wait.</param>
    /// <exception cref="SqliteException">SQLite reported an error other than busy.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> ended the wait.</exception>
    internal static CheckpointResult RunWaiting(sqlite3 handle, CheckpointMode mode, int? busyTimeout, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        for (var attempt = 0; ; attempt++)
        {
            var result = Run(handle, mode);
            if (!result.Busy || result.LogFrames != -1)
            {
                return result;
            }

            busyTimeout ??= BusyTimeout(handle);
            var delay = Math.Min(1 << Math.Min(attempt, 4), 10); // 1, 2, 4, 8, then 10 ms
            if (Stopwatch.GetElapsedTime(started).TotalMilliseconds + delay > busyTimeout)
            {
                return result;
            }

            if (cancellationToken.WaitHandle.WaitOne(delay))
            {
                cancellationToken.ThrowIfCancellationRequested();
            }
        }
    }

    /// <summary>Reads the journal mode and page size through SQLite and the <c>-wal</c> file's size from disk.</summary>
    internal static WalStatus ReadStatus(sqlite3 handle) => ReadStatus(handle, WalFileOf(handle));

    /// <summary><see cref="ReadStatus(sqlite3)"/> for the <c>-wal</c> file and page size <see cref="WalFileOf"/> read.</summary>
    internal static WalStatus ReadStatus(sqlite3 handle, (string? Path, long PageSize) walFile)
    {
        var (path, pageSize) = walFile;
        var journalMode = Pragma(handle, "PRAGMA journal_mode", static s => raw.sqlite3_column_text(s, 0).utf8_to_string());
        var status = StatusOfSize(journalMode, path, pageSize);

        // SQLite learns that another connection switched the file to WAL only at its next read, and a read may wait for
        // a lock: a -wal file with frames, which SQLite keeps only for a database in WAL mode, says so at once.
        return status.JournalMode != "wal" && status.WalFrames > 0 ? status with { JournalMode = "wal" } : status;
    }

    /// <summary>
    /// SQLite learns that another connection (another process, say) switched the file to WAL only at its next read:
    /// until then a checkpoint answers -1 frames. So when a <c>-wal</c> file is there and the connection has no
    /// transaction (whose snapshot a read would begin), this reads the schema version once, waiting for a lock as the
    /// checkpoint itself would. Its errors are left for the caller's next statement: the answers then stay as they were.
    /// </summary>
    /// <returns>Whether it read.</returns>
    private static bool CaughtUpWithJournalMode(sqlite3 handle)
    {
        if (raw.sqlite3_get_autocommit(handle) == 0 || WalFileBytes(handle) == 0)
        {
            return false;
        }

        raw.sqlite3_exec(handle, "PRAGMA schema_version");
        return true;
    }

    /// <summary>Where the <c>-wal</c> file of the connection's main database is or would be (null for one in memory), and its page size.</summary>
    internal static (string? Path, long PageSize) WalFileOf(sqlite3 handle)
        => (WalPath(handle), Pragma(handle, "PRAGMA page_size", static s => raw.sqlite3_column_int64(s, 0)));

    /// <summary>The status of a WAL in <paramref name="journalMode"/> from the <c>-wal</c> file's size: the frames of <paramref name="pageSize"/> it has room for.</summary>
    internal static WalStatus StatusOfSize(string journalMode, string? walPath, long pageSize)
    {
        var bytes = WalFileBytes(walPath);
        const int WalHeader = 32, FrameHeader = 24;
        return new WalStatus(journalMode, bytes, bytes >= WalHeader ? (bytes - WalHeader) / (pageSize + FrameHeader) : 0);
    }

    /// <summary>The size of the <c>-wal</c> file in bytes; 0 when there is none.</summary>
    internal static long WalFileBytes(sqlite3 handle) => WalFileBytes(WalPath(handle));

    private static long WalFileBytes(string? path) => path is not null && new FileInfo(path) is { Exists: true } wal ? wal.Length : 0;

    /// <summary>Where the <c>-wal</c> file of the connection's main database is or would be; null for one in memory.</summary>
    private static string? WalPath(sqlite3 handle)
        => raw.sqlite3_db_filename(handle, "main").utf8_to_string() is { Length: > 0 } file ? file + "-wal" : null;

    private static int BusyTimeout(sqlite3 handle) => Pragma(handle, "PRAGMA busy_timeout", static s => raw.sqlite3_column_int(s, 0));

    private static T Pragma<T>(sqlite3 handle, string sql, Func<sqlite3_stmt, T> read)
    {
        SqliteException.ThrowExceptionForRC(raw.sqlite3_prepare_v2(handle, sql, out var statement), handle);
        using (statement)
        {
            var rc = raw.sqlite3_step(statement);
            SqliteException.ThrowExceptionForRC(rc, handle);
            return read(statement);
        }
    }

    /// <summary>Whether the connection has a transaction: an explicit one, or the read one an unfinished statement keeps.</summary>
    private static bool HasTransaction(sqlite3 handle)
        => raw.sqlite3_get_autocommit(handle) == 0
            || ESqlite3.HoldsTransaction(handle);

    /// <summary>A physical connection whose last rollback, if it failed, SQLite has now done (see <see cref="PhysicalConnection.RetryFailedRollback"/>).</summary>
    private static PhysicalConnection Usable(PhysicalConnection physical)
    {
        physical.RetryFailedRollback(leaveGate: true);
        return physical;
    }

    /// <summary>
    /// Runs <paramref name="run"/> on the connection's handle. On a <see cref="SaverDbConnection"/> it is a call of the
    /// connection, as a command's execution is: it takes its turn after the connection's asynchronous executions still
    /// running, blocking the thread at most Default Timeout (as BeginTransaction does); its token
    /// (<paramref name="cancellationToken"/> linked with the call's) is cancelled by a Close from another thread, which
    /// waits for it to end, so that it never runs on the physical connection's next renter; so ended, it throws
    /// <see cref="InvalidOperationException"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection is closed, or was closed while the call ran or waited.</exception>
    /// <exception cref="SqliteException">SQLITE_BUSY: the connection's earlier asynchronous executions outlasted Default Timeout.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while it waited for them.</exception>
    /// <exception cref="ArgumentException"><paramref name="connection"/> is neither a SaverDbConnection nor a SqliteConnection.</exception>
    private static T OnConnection<T>(DbConnection connection, string operation, Func<sqlite3, CancellationToken, T> run, CancellationToken cancellationToken)
    {
        switch (connection)
        {
            case SaverDbConnection saver:
                var waitedIn = Synchronously.Result(
                    saver.AfterEarlierWithinDefaultTimeout(CommandDeadline.StartDefault(saver.Options.DefaultTimeout), async: false, cancellationToken));
                return OnSaver(saver, operation, run, waitedIn, cancellationToken);
            case SqliteConnection { State: ConnectionState.Open } sqlite:
                return run(sqlite.Handle!, cancellationToken);
            case SqliteConnection:
                throw new InvalidOperationException($"{operation} requires an open connection.");
            default:
                throw new ArgumentException(
                    $"{operation} runs on a SaverDbConnection or a SqliteConnection, not on a {connection.GetType().Name}.",
                    nameof(connection));
        }
    }

    /// <summary>
    /// <see cref="OnConnection"/> on a <see cref="SaverDbConnection"/> once its earlier asynchronous executions have
    /// ended; <paramref name="waitedIn"/> is the rental that wait began in, if it waited (see <see cref="SaverDbConnection.BeginCall"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">The connection is closed, or was closed while the call ran or waited.</exception>
    private static T OnSaver<T>(SaverDbConnection saver, string operation, Func<sqlite3, CancellationToken, T> run, int? waitedIn, CancellationToken cancellationToken)
    {
        var physical = Usable(saver.GetOpenPhysical(operation));
        var call = saver.BeginCall(physical, waitedIn);
        var linked = RenterCalls.Link(call, cancellationToken, out var token);
        try
        {
            return run(physical.Handle, token);
        }
        catch (OperationCanceledException cancelled) when (physical.Calls.Ended(cancelled, call, cancellationToken) is { } ended)
        {
            throw ended;
        }
        catch (SqliteException interrupted) when (physical.Calls.Interrupted(interrupted, call, token, cancellationToken) is { } ended)
        {
            throw ended; // the interrupt of a Close, say, stopped a checkpoint copying frames
        }
        finally
        {
            linked?.Dispose();
            physical.Calls.End();
        }
    }
}
