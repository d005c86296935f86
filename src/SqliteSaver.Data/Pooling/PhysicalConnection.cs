using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Interop;
using SqliteSaver.Data.Resilience;
using SQLitePCL;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// One open SQLite connection owned by a pool: opened once, given its PRAGMAs once, then rented and returned many
/// times. Transaction control runs through statements prepared once, so renting, beginning, committing and
/// returning allocate nothing.
/// </summary>
internal sealed class PhysicalConnection : IDisposable
{
    private readonly sqlite3_stmt _beginImmediate; // prepared as the connection opened, before any ATTACH (see TryBegin)
    private readonly sqlite3_stmt _beginDeferred;
    private string? _initialAttachments; // the databases the connection initializer attached (see Attachments), if any
    private readonly sqlite3_stmt _commit;
    private readonly sqlite3_stmt _rollback;
    private readonly sqlite3_stmt _hasTempObjects;
    private readonly sqlite3_stmt _hasTempTables;
    private readonly sqlite3_stmt _hasTempTablesOrTriggers;
    private readonly sqlite3_stmt _tempSchemaVersion;
    private long _initialTempSchemaVersion; // the temp schema as opening and the connection initializer left it
    private string? _initialTempSchema; // the temporary objects the connection initializer left (see TempSchema), if any
    private readonly Action<int> _committed;
    private readonly bool _memdbStandIn; // main is the pool's memdb database for a private in-memory one (SaverOptions.PrivateMemory)
    private string[]? _memdbAttachedBefore; // on a memdb stand-in, since a command naming ATTACH began in this rental: the memdb databases attached then
    private string _restorePragmaSql = string.Empty;
    private string? _restoreMaxPageCount; // set apart: it reads the file, which another process's lock can hold up
    private bool _exclusiveLocking; // locking_mode as remembered (see RememberPragmas)
    private string?[] _lockingModes = []; // each of LockingModes as remembered, for the check after InnerConnection use
    private bool _extensionsLoadable; // as opening left it (see RememberOpened)
    private int _defaultTimeout; // Microsoft.Data.Sqlite's, as opening left it (see RememberOpened)
    private int _busyTimeout;
    private int? _rememberedBusyTimeout;
    private CancellableBusyHandler? _cancellableBusyHandler;
    private bool _busyWaitsCancellable;
    private static long s_lastId;

    /// <summary>The PRAGMAs that hold a number and belong to the connection, set back after a renter may have changed them.</summary>
    private static readonly string[] NumberPragmas =
    [
        "busy_timeout", "synchronous", "cache_size", "cache_spill", "mmap_size", "temp_store", "journal_size_limit",
        "wal_autocheckpoint", "foreign_keys", "recursive_triggers", "read_uncommitted", "ignore_check_constraints",
        "reverse_unordered_selects", "automatic_index", "cell_size_check", "trusted_schema",
        "legacy_alter_table", "writable_schema", "analysis_limit", "threads", "short_column_names", "full_column_names",
        "count_changes", "empty_result_callbacks", "fullfsync", "checkpoint_fullfsync",
    ];

    /// <summary>
    /// The PRAGMAs set back by name, each with the only values SQLite returns for it. The journal modes of main and
    /// temp, each by its schema: without one it would switch every attached database too, and WAL stays with the file.
    /// locking_mode and secure_delete are set without a schema, for every database and for those attached later, as
    /// mmap_size among <see cref="NumberPragmas"/>; those of the databases the connection initializer attached are set
    /// back after them (see <see cref="AttachedPragmas"/>).
    /// A renter's <c>PRAGMA journal_mode = OFF</c>, unqualified, switches temp too, where a ROLLBACK of the next
    /// renter's would then leave its temporary tables' writes in place.
    /// </summary>
    private static readonly (string Name, string[] Values)[] NamePragmas =
    [
        ("main.journal_mode", ["delete", "truncate", "persist", "memory", "wal", "off"]),
        ("temp.journal_mode", ["delete", "truncate", "persist", "memory", "off"]),
        ("locking_mode", ["normal", "exclusive"]),
        ("secure_delete", ["0", "1", "2"]), // 2 is FAST, which "= 2" would not set
    ];

    /// <summary>The settings a PRAGMA sets that cannot be read back (see <see cref="IsUnreadable"/>).</summary>
    private static readonly HashSet<string> UnreadableSettings = new(["case_sensitive_like", "auto_vacuum", "page_size"], StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// The settings of the databases the connection initializer attached that setting back the connection's (without a
    /// schema: see <see cref="NamePragmas"/>) would overwrite with main's, so set back after it, each by its schema.
    /// </summary>
    private static readonly string[] AttachedPragmas = ["locking_mode", "secure_delete", "mmap_size"];

    /// <summary>The PRAGMAs that take an argument and read, or act on the file, without changing a setting.</summary>
    private static readonly HashSet<string> SettingNothing = new(
        [
            "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list",
            "foreign_key_check", "integrity_check", "quick_check", "wal_checkpoint", "incremental_vacuum", "optimize",
        ],
        StringComparer.OrdinalIgnoreCase);

    private PhysicalConnection(SqliteConnection sqlite, int generation, SaverOptions options, Action<int> committed)
    {
        _committed = committed;
        _memdbStandIn = options.PrivateMemory;
        Sqlite = sqlite;
        Handle = sqlite.Handle!;
        File = raw.sqlite3_db_filename(Handle, "main").utf8_to_string() ?? string.Empty;
        Generation = generation;
        Statements = new StatementCache(sqlite, options.StatementCacheSize);
        _beginImmediate = Prepare("BEGIN IMMEDIATE");
        _beginDeferred = Prepare("BEGIN");
        _commit = Prepare("COMMIT");
        _rollback = Prepare("ROLLBACK");
        _hasTempObjects = Prepare("SELECT EXISTS (SELECT 1 FROM temp.sqlite_master)");
        _hasTempTables = Prepare("SELECT EXISTS (SELECT 1 FROM temp.sqlite_master WHERE type = 'table')");
        _hasTempTablesOrTriggers = Prepare(CommandClassifier.TempTablesOrTriggers);
        _tempSchemaVersion = Prepare("PRAGMA temp.schema_version");
        raw.sqlite3_commit_hook(Handle, _ => { Commits++; return 0; }, null);
    }

    public SqliteConnection Sqlite { get; }

    /// <summary>A number for logs, unique in the process.</summary>
    public long Id { get; } = Interlocked.Increment(ref s_lastId);

    public sqlite3 Handle { get; }

    /// <summary>
    /// SQLite's full path of the database file the connection opened, read as it opened (symbolic links resolved, on
    /// Unix); empty for one in memory or temporary.
    /// </summary>
    public string File { get; }

    /// <summary>The commands kept prepared on this connection across rentals.</summary>
    public StatementCache Statements { get; }

    /// <summary>The pool generation this connection was opened in; a cleared pool retires older ones.</summary>
    public int Generation { get; }

    /// <summary>When the connection was last returned, by the pool's <see cref="TimeProvider"/>.</summary>
    public long IdleSince { get; set; }

    /// <summary>When the current rental began, by the pool's <see cref="TimeProvider"/>; 0 when use time is not measured.</summary>
    public long RentedSince { get; set; }

    /// <summary>Whether anything ran on the connection during the current rental, so that returning must reset it.</summary>
    public bool Used { get; set; }

    /// <summary>
    /// Whether something that could create TEMP objects ran during the current rental: anything but a read-only
    /// command outside a transaction, or use of the connection underneath. Returning checks for them only then.
    /// </summary>
    public bool MayHoldTempObjects { get; set; }

    /// <summary>
    /// Whether something that could ATTACH a database ran during the current rental: a command with statements that
    /// run outside a transaction, or use of the connection underneath. Returning checks for them only then.
    /// </summary>
    public bool MayHoldAttachments { get; set; }

    /// <summary>Whether a command with an ATTACH statement ran during the current rental (see <see cref="MayHaveAttachedDatabases"/>).</summary>
    public bool AttachMayHaveRun { get; private set; }

    /// <summary>
    /// Whether a database may be attached to the connection now: one the connection initializer attached, or one a
    /// command naming ATTACH may have attached during this rental (not one attached through InnerConnection). A kept
    /// statement is then neither used nor kept: SQLite does not compile one again when a table it found by an
    /// unqualified name in an attached database comes to be hidden by one created in main (or in a database attached
    /// before it), nor a REINDEX for databases attached since, where a statement prepared afresh, as
    /// Microsoft.Data.Sqlite prepares one for every new command, finds what is there now.
    /// </summary>
    public bool MayHaveAttachedDatabases => _initialAttachments is not null || AttachMayHaveRun;

    /// <summary>
    /// Whether something that could set the busy timeout ran since <see cref="BusyTimeoutMilliseconds"/> last read it:
    /// a statement that may set a PRAGMA and names busy_timeout, setting the PRAGMAs back (should it fail midway), or
    /// the connection initializer (so it starts true, until <see cref="RememberPragmas"/> reads it).
    /// </summary>
    public bool BusyTimeoutMayHaveChanged { get; set; } = true;

    /// <summary>
    /// Whether the connection underneath was handed out (<see cref="SaverDbConnection.InnerConnection"/>) during the
    /// current rental: its busy timeout can then change at any time, so it is read before every use until the rental
    /// ends.
    /// </summary>
    public bool InnerExposed { get; set; }

    /// <summary>
    /// Whether a command of the current rental may have set a PRAGMA, so that returning the connection sets the
    /// PRAGMAs back (see <see cref="RememberPragmas"/>).
    /// </summary>
    public bool PragmasMayHaveChanged { get; set; }

    /// <summary>
    /// Whether a command of the current rental named max_page_count, which is then set back too. Setting it (and
    /// reading it) takes a read of the database file, which in a rollback-journal mode waits while another process
    /// holds the file locked: not for every rental that may have set some PRAGMA.
    /// </summary>
    private bool MaxPageCountMayHaveChanged { get; set; }

    /// <summary>
    /// Whether a command of the current rental named journal_mode: setting it back then runs without waiting for a
    /// lock (see <see cref="TryReset"/>).
    /// </summary>
    private bool JournalModeMayHaveChanged { get; set; }

    /// <summary>
    /// Whether a command of the current rental set locking_mode. SQLite keeps the lock of EXCLUSIVE locking mode on
    /// the file after the mode is set back to NORMAL until the connection next reads it: a connection that may have
    /// held it is closed rather than handed on, as it would keep other connections, in other processes too, from
    /// writing (or, after a write, reading) while it sat idle.
    /// </summary>
    private bool LockingModeMayHaveChanged { get; set; }

    /// <summary>
    /// Whether a command of the current rental may have set a PRAGMA that is not set back (see
    /// <see cref="IsUnreadable"/>): the connection is then closed rather than handed on.
    /// </summary>
    public bool UnreadablePragmaMayHaveChanged { get; private set; }

    /// <summary>The calls of the renter running on this connection now, which Close ends first.</summary>
    public RenterCalls Calls { get; } = new();

    /// <summary>The write gate this connection holds while a write transaction of its own is open, if any.</summary>
    public WriteGate? HeldGate { get; set; }

    /// <summary>
    /// Whether a write outside the caller's transaction (an <c>INSERT ... RETURNING</c>) is left open for its reader,
    /// to be committed when the reader closes.
    /// </summary>
    public bool WriteOpenForReader { get; set; }

    /// <summary>
    /// The renter's statements active on the connection: its readers open, from the execution that made one until its
    /// closing has closed the SQLite reader, and its executions running their statements (a function SQLite runs in
    /// one may make another call on the connection) (see <see cref="OthersActive"/>).
    /// </summary>
    private int _active;

    /// <summary>A reader of the renter opens, or an execution begins running its statements (see <see cref="_active"/>).</summary>
    public void Activated() => Interlocked.Increment(ref _active);

    /// <summary>A reader of the renter has closed its SQLite reader, or an execution's statements have run (see <see cref="_active"/>).</summary>
    public void Deactivated() => Interlocked.Decrement(ref _active);

    /// <summary>
    /// Whether a statement of the renter other than the call's own (<paramref name="ownReader"/>: the call is a step or
    /// the closing of a reader) is active: another reader is open, or the call runs inside another's statement. SQLite
    /// would then keep an interrupt pending (see <see cref="StatementCancellation"/>).
    /// </summary>
    public bool OthersActive(bool ownReader) => Volatile.Read(ref _active) > (ownReader ? 1 : 0);

    /// <summary>
    /// The token the library's progress handler stops the running statement on, while a call has set one (see
    /// <see cref="StopOnProgress"/>). Written and read on the thread that runs the call's statements.
    /// </summary>
    private CancellationToken? _progressStop;

    /// <summary>
    /// Whether the progress handler, once <see cref="_progressStop"/> is cancelled, interrupts SQLite (no other
    /// statement of the renter is active) rather than stop the statement itself (see <see cref="OnProgress"/>).
    /// </summary>
    private bool _progressStopInterrupts;

    /// <summary>
    /// Set when the progress handler has stopped a statement itself, beside another active statement (see
    /// <see cref="OnProgress"/>): it may have done so as the statement returned, after it did its work. Cleared as each
    /// call that looks at it begins and ends, so that the stop of a call run inside another's statement (by a function
    /// SQLite runs in it) is not taken for that statement's.
    /// </summary>
    public bool StoppedByProgressHandler { get; set; }

    /// <summary>
    /// Whether the library's progress handler is in place: from the first call that stops on it for as long as the
    /// connection lives, so that a call costs no handler of its own, only the looks at <see cref="_progressStop"/>.
    /// SQLite calls it each time a statement's count of virtual-machine steps, over all its runs, passes a hundred:
    /// within 100 steps of a long statement, and now and then as a short one the library keeps prepared returns.
    /// </summary>
    private bool _progressHandlerInPlace;

    /// <summary>
    /// Has the library's progress handler stop the statement SQLite runs once <paramref name="token"/> is cancelled (see
    /// <see cref="OnProgress"/>; <paramref name="interrupts"/>: no other statement of the renter is active), putting the
    /// handler in place, on the call's own thread, if it is not, or may not be: the renter may have set one of its own
    /// through <see cref="InnerExposed"/>. With no token, it stops nothing (a call that must not be stopped so, run
    /// inside another). Returns what it replaces, a call's that this one runs inside, to put back with
    /// <see cref="EndStopOnProgress"/>.
    /// </summary>
    public (CancellationToken? Token, bool Interrupts) StopOnProgress(CancellationToken? token, bool interrupts)
    {
        var previous = (_progressStop, _progressStopInterrupts);
        (_progressStop, _progressStopInterrupts) = (token, interrupts);
        if (token is not null && (!_progressHandlerInPlace || InnerExposed))
        {
            PutProgressHandler();
        }

        return previous;
    }

    /// <summary>Ends <see cref="StopOnProgress"/>: puts <paramref name="previous"/> back.</summary>
    public void EndStopOnProgress((CancellationToken? Token, bool Interrupts) previous)
        => (_progressStop, _progressStopInterrupts) = previous;

    /// <summary>
    /// Puts the library's progress handler back, if it was in place, or none, after a handler of a reader's own (its
    /// closing as a discarded one), which replaced it.
    /// </summary>
    public void RestoreProgressHandler()
    {
        if (_progressHandlerInPlace)
        {
            PutProgressHandler();
        }
        else
        {
            raw.sqlite3_progress_handler(Handle, 0, null, null);
        }
    }

    private void PutProgressHandler()
    {
        raw.sqlite3_progress_handler(Handle, 100, static physical => ((PhysicalConnection)physical).OnProgress(), this);
        _progressHandlerInPlace = true;
    }

    /// <summary>
    /// The progress handler: once the call's token is cancelled, it interrupts SQLite, which stops the statement at its
    /// next look for an interrupt, as an interrupt made as the statement ran would; not when SQLite calls it as a
    /// statement returns (it also does then), after the statement did its work, which then returns its result. But
    /// beside another active statement of the renter (see <see cref="OthersActive"/>), where SQLite would keep the
    /// interrupt pending for that statement and every one begun until it ends, it stops the statement itself, also as
    /// it returns: then a statement that did its work reports SQLITE_INTERRUPT (see <see cref="StoppedByProgressHandler"/>).
    /// </summary>
    private int OnProgress()
    {
        if (_progressStop is not { IsCancellationRequested: true })
        {
            return 0;
        }

        if (_progressStopInterrupts)
        {
            raw.sqlite3_interrupt(Handle);
            return 0;
        }

        StoppedByProgressHandler = true;
        return 1;
    }

    /// <summary>
    /// The last SQLITE_BUSY or SQLITE_LOCKED a statement in the caller's transaction met on this connection (run by a
    /// command, a reader's step or close, or a commit finishing a reader), so that
    /// <see cref="SaverDbConnection.RunInTransaction(Action{SaverDbTransaction}, bool)"/> can tell it from one met on
    /// another connection.
    /// </summary>
    public SqliteException? BusyInTransaction { get; set; }

    /// <summary>
    /// The token a retry strategy gave the current attempt of a synchronous unit of work
    /// (<see cref="SaverDbConnection.RunInTransaction(Action{SaverDbTransaction}, bool)"/>), whose delegate takes none:
    /// the statements it runs in its transaction end with it, as its BEGIN and COMMIT do. None otherwise.
    /// </summary>
    public CancellationToken UnitOfWorkAttempt { get; set; }

    /// <summary>
    /// Commands run in the caller's transaction that may set savepoints as SQL text (a statement of theirs begins with
    /// <c>SAVEPOINT</c>, see <see cref="CommandClassifier.SetsSavepoint"/>), counted, so that a transaction can tell
    /// whether any ran since a moment of its own (see <see cref="SaverDbTransaction.Rollback(string)"/>).
    /// </summary>
    public long SavepointCommandsInTransaction { get; set; }

    /// <summary>
    /// Commits of write transactions SQLite began on this connection, however they were asked for (autocommit
    /// statements and a <c>COMMIT</c> sent as SQL too), counted by its commit hook, so that a unit of work can tell
    /// whether anything it ran may have committed part of its work before its own commit (see
    /// <see cref="SaverDbConnection.RunInTransaction(Action{SaverDbTransaction}, bool)"/>). SQLite calls the hook once
    /// the commit holds its exclusive lock: a commit that meets SQLITE_BUSY waiting for it is not counted, one that
    /// fails after it (an I/O error) is.
    /// </summary>
    public long Commits { get; private set; }

    /// <summary>
    /// SQLite's error when it last refused to roll back and left the transaction open (an I/O error, or an interrupt
    /// that stays pending while another statement of the connection is active); <see langword="null"/> once a
    /// rollback succeeds. Until then the connection keeps the write gate and runs no command: a command would join
    /// that transaction and be lost with it (see <see cref="RetryFailedRollback"/>).
    /// </summary>
    public SqliteException? RollbackFailure { get; private set; }

    /// <summary>
    /// Whether a transaction is open (SQLite is out of autocommit mode). Never, once the connection underneath was
    /// closed through <see cref="SaverDbConnection.InnerConnection"/>.
    /// </summary>
    public bool InTransaction => !Handle.IsClosed && raw.sqlite3_get_autocommit(Handle) == 0;

    /// <summary>
    /// Opens a physical connection, sets its busy timeout and applies the options' PRAGMAs. They are idempotent, so
    /// the retry strategy runs them again when switching the journal mode meets a lock (SQLite does not wait in its
    /// busy handler there). With <paramref name="async"/> the strategy waits between attempts without blocking a
    /// thread, and <paramref name="cancellationToken"/> ends those waits and SQLite's waits for a lock.
    /// </summary>
    /// <exception cref="SqliteException">
    /// SQLite could not open the database or apply a PRAGMA (its message names the database file), for example
    /// SQLITE_NOTADB (26) for a file that is not a SQLite database or SQLITE_CORRUPT (11) for a truncated one.
    /// </exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the PRAGMAs waited.</exception>
    /// <param name="options">The data source's options.</param>
    /// <param name="connectionString">The Microsoft.Data.Sqlite connection string to open (see <see cref="SaverOptions.InnerConnectionString"/>).</param>
    /// <param name="strategy">Retries the PRAGMAs while the database is locked.</param>
    /// <param name="generation">The pool generation the connection belongs to.</param>
    /// <param name="committed">
    /// Called after each transaction this connection commits through <see cref="Commit"/>, with the pages it has
    /// written to the WAL since the call before (SQLite's SQLITE_DBSTATUS_CACHE_WRITE).
    /// </param>
    /// <param name="async">Whether the caller awaits: the returned task is otherwise already complete.</param>
    /// <param name="cancellationToken">Ends the PRAGMAs' waits (blocking ones too, for the checkpoint connection's open).</param>
    public static async ValueTask<PhysicalConnection> Open(
        SaverOptions options,
        string connectionString,
        SaverRetryStrategy strategy,
        int generation,
        Action<int> committed,
        bool async,
        CancellationToken cancellationToken)
    {
        try
        {
            return await OpenUnnamed(options, connectionString, strategy, generation, committed, async, cancellationToken).ConfigureAwait(false);
        }
        catch (SqliteException error)
        {
            throw Named(error, options);
        }
    }

    /// <summary>
    /// <paramref name="error"/> with the database file named, as SQLite's messages ("file is not a database",
    /// "unable to open database file") do not say which; for SQLITE_READONLY_DIRECTORY, why a file the process may
    /// write to is "a readonly database"; for SQLITE_CANTOPEN, what is at the path where that tells why (see <see cref="CantOpen"/>).
    /// </summary>
    internal static SqliteException Named(SqliteException error, SaverOptions options)
    {
        const int ReadOnlyDirectory = 1544; // SQLITE_READONLY_DIRECTORY
        var file = options.DatabaseFile;
        var why = file is null
            ? ""
            : error.SqliteExtendedErrorCode == ReadOnlyDirectory
                ? $" SQLite must create files beside the database (the -wal and -shm files of WAL mode, which reading needs too, or a rollback journal), and this process may not create files in the folder '{Path.GetDirectoryName(file)}': let it, or move the database to a folder it may write to."
                : error.SqliteErrorCode == raw.SQLITE_CANTOPEN
                    ? CantOpen(file)
                    : "";
        return new SqliteException($"{error.Message} Database: '{options.DataSource}'.{why}", error.SqliteErrorCode, error.SqliteExtendedErrorCode);
    }

    /// <summary>Why SQLite could not open <paramref name="file"/>, where that can be told from outside: nothing is there, or not a file.</summary>
    private static string CantOpen(string file)
    {
        var folder = Path.GetDirectoryName(file);
        return Directory.Exists(file) ? " It is a folder, not a database file."
            : System.IO.File.Exists(file) ? ""
            : Directory.Exists(folder) ? " No file is there (or this process may not look into its folder): SQLite creates it only with Mode=ReadWriteCreate (the default; mode=rwc in a file: URI) and where this process may create files."
            : System.IO.File.Exists(folder) ? $" '{folder}' is a file, not a folder."
            : $" Its folder '{folder}' does not exist: SQLite creates the database file, not the folders it is in.";
    }

    private static async ValueTask<PhysicalConnection> OpenUnnamed(
        SaverOptions options,
        string connectionString,
        SaverRetryStrategy strategy,
        int generation,
        Action<int> committed,
        bool async,
        CancellationToken cancellationToken)
    {
        var sqlite = new SqliteConnection(connectionString);
        using var busyHandler = new CancellableBusyHandler();
        try
        {
            sqlite.Open();
            var handle = sqlite.Handle!;
            var timeout = (int)options.BusyTimeout.TotalMilliseconds;
            SqliteException.ThrowExceptionForRC(raw.sqlite3_busy_timeout(handle, timeout), handle);
            var state = (Handle: handle, Timeout: timeout, BusyHandler: busyHandler, PragmaSql: raw.sqlite3_db_readonly(handle, "main") == 1 ? options.ReadOnlyPragmaSql : options.PragmaSql);
            if (async)
            {
                await strategy.ExecuteAsync(static (s, token) => ValueTask.FromResult(ApplyPragmas(s.Handle, s.Timeout, s.BusyHandler, s.PragmaSql, token)), state, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                strategy.Execute(static (s, token) => ApplyPragmas(s.Handle, s.Timeout, s.BusyHandler, s.PragmaSql, token), state, cancellationToken);
            }

            return new PhysicalConnection(sqlite, generation, options, committed);
        }
        catch (SqliteException error) when (error.SqliteExtendedErrorCode == raw.SQLITE_BUSY && options.JournalMode != JournalMode.Wal)
        {
            // Without waiting again: reading the mode of a file another connection has locked waits for its lock.
            var inWal = sqlite.Handle is { } handle
                && raw.sqlite3_db_readonly(handle, "main") == 0 // a read-only connection does not switch the mode
                && raw.sqlite3_busy_timeout(handle, 0) == raw.SQLITE_OK
                && string.Equals(Read(handle, "main.journal_mode"), "wal", StringComparison.OrdinalIgnoreCase);
            sqlite.Dispose();
            if (!inWal)
            {
                throw; // a lock another connection holds, as in any journal mode
            }

            throw new SqliteException(
                $"{error.Message} The database is in WAL mode, and SQLite switches it to Journal Mode={options.JournalMode} only while no other connection has it open, without waiting for them: another connection has it open (in another process, or in another pool of this one, as a connection string for this file without that Journal Mode makes). Give every connection string for a file the same Journal Mode.",
                error.SqliteErrorCode,
                error.SqliteExtendedErrorCode);
        }
        catch
        {
            sqlite.Dispose();
            throw;
        }
    }

    /// <summary>
    /// One attempt at the options' PRAGMAs. Its waits for a lock end when the attempt's token is cancelled (the
    /// caller's, or a retry strategy's timeout), through <paramref name="busyHandler"/>, which is installed for the
    /// attempt only; such a wait is a cancellation, not a busy error.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> ended a wait.</exception>
    private static bool ApplyPragmas(sqlite3 handle, int timeout, CancellableBusyHandler busyHandler, string sql, CancellationToken cancellationToken)
    {
        var installed = busyHandler.Install(handle, timeout, cancellationToken);
        try
        {
            var rc = raw.sqlite3_exec(handle, sql);
            if (rc == raw.SQLITE_BUSY && cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException("Opening the connection was cancelled while its PRAGMAs waited for a lock.", cancellationToken);
            }

            SqliteException.ThrowExceptionForRC(rc, handle);
            return true;
        }
        finally
        {
            if (installed)
            {
                busyHandler.Uninstall(handle); // SQLite's own handler, with the busy timeout, is back
            }
        }
    }

    /// <summary>
    /// Runs <c>BEGIN IMMEDIATE</c>, taking the write lock of main and of every attached database, as
    /// Microsoft.Data.Sqlite's BeginTransaction does (or a deferred <c>BEGIN</c>, which takes none), and returns
    /// SQLite's result code; the library's own transaction around a write outside the caller's too, so that its wait
    /// for the locks stays bounded by the command's deadline. SQLite compiles a <c>BEGIN IMMEDIATE</c> for the
    /// databases attached as it prepares it, and does not prepare it again after an ATTACH: the one kept, prepared as
    /// the connection opened, serves while no database can be attached (none by the connection initializer, and
    /// nothing that may ATTACH in the rental); otherwise one is prepared now.
    /// </summary>
    public int TryBegin(bool deferred)
    {
        if (deferred || (!MayHoldAttachments && _initialAttachments is null))
        {
            return Step(deferred ? _beginDeferred : _beginImmediate);
        }

        var rc = raw.sqlite3_prepare_v2(Handle, "BEGIN IMMEDIATE", out var statement);
        using (statement)
        {
            return rc == raw.SQLITE_OK ? Step(statement) : rc;
        }
    }

    /// <summary>
    /// After a writing command or a reader's step of one, in the caller's transaction, that failed with
    /// SQLITE_INTERRUPT: when the progress handler stopped it itself (see <see cref="StoppedByProgressHandler"/>) and
    /// SQLite kept the transaction, rolls the transaction back, as SQLite does when it interrupts a write. The handler
    /// may have stopped the statement as it returned, after it made its changes, and a commit would keep them; it
    /// cannot tell that from a read it stopped halfway, so the transaction ends then too, unless the caller knows the
    /// statement stopped was a read (see <see cref="PooledDataReader"/>'s Read).
    /// </summary>
    public void RollBackIfStoppedByProgressHandler()
    {
        if (StoppedByProgressHandler && InTransaction)
        {
            TryRollback(); // a failure stays for the next command (see RollbackFailure)
        }
    }

    /// <summary>Commits the open transaction.</summary>
    /// <exception cref="SqliteException">SQLite could not commit; the transaction may still be open.</exception>
    public void Commit()
    {
        SqliteException.ThrowExceptionForRC(Step(_commit), Handle);
        _committed(raw.sqlite3_db_status(Handle, raw.SQLITE_DBSTATUS_CACHE_WRITE, out var pages, out _, resetFlg: 1) == raw.SQLITE_OK ? pages : 0);
    }

    /// <summary>
    /// Runs SQL of the library's own whose text varies, such as a savepoint statement with its quoted name, without
    /// keeping it prepared.
    /// </summary>
    /// <exception cref="SqliteException">SQLite failed to run it.</exception>
    public void Execute(string sql) => SqliteException.ThrowExceptionForRC(raw.sqlite3_exec(Handle, sql), Handle);

    /// <summary>
    /// Rolls back the open transaction, if SQLite has not already done so; a ROLLBACK an interrupt stops is tried up to
    /// three times. A failure that leaves the transaction open is kept in <see cref="RollbackFailure"/>.
    /// </summary>
    /// <exception cref="SqliteException">SQLite could not roll back.</exception>
    public void Rollback()
    {
        for (var attempt = 1; InTransaction; attempt++)
        {
            try
            {
                SqliteException.ThrowExceptionForRC(Step(_rollback), Handle);
                break;
            }
            catch (SqliteException error) when (error.SqliteErrorCode == raw.SQLITE_INTERRUPT && (attempt < 3 || !InTransaction))
            {
                // An interrupt meant for a statement (Close's or Cancel's, which may come twice) landed on the ROLLBACK.
                // If the transaction is still open it is tried again: SQLite forgets an interrupt once no statement
                // runs (one that stays pending while another statement runs fails every attempt).
            }
            catch (SqliteException error)
            {
                RollbackFailure = InTransaction ? error : null;
                throw;
            }
        }

        RollbackFailure = null;
    }

    /// <summary>Rolls back if a transaction is open, reporting instead of throwing when SQLite cannot.</summary>
    /// <returns><see langword="false"/> when the transaction is still open (see <see cref="RollbackFailure"/>).</returns>
    public bool TryRollback()
    {
        try
        {
            Rollback();
        }
        catch (SqliteException)
        {
        }

        return RollbackFailure is null;
    }

    /// <summary>
    /// Before a command or a transaction on a connection whose last rollback failed (see
    /// <see cref="RollbackFailure"/>): tries the rollback again and, when it succeeds and <paramref name="leaveGate"/>
    /// is set, leaves the write gate kept for that transaction.
    /// </summary>
    /// <exception cref="InvalidOperationException">SQLite still cannot roll back; its error is the inner exception.</exception>
    public void RetryFailedRollback(bool leaveGate)
    {
        if (RollbackFailure is not { } earlier)
        {
            return;
        }

        if (!TryRollback())
        {
            throw new InvalidOperationException(
                $"SQLite could not roll back an earlier transaction on this connection ({earlier.Message}), nor can it now. A command would join that transaction and be lost with it, so none runs: close the connection, which rolls the transaction back or discards the connection, and open it again.",
                RollbackFailure);
        }

        if (leaveGate)
        {
            ReleaseGate();
        }
    }

    /// <summary>
    /// The connection's busy timeout as SQLite has it now, read from SQLite only when it may have changed since the
    /// last read (see <see cref="BusyTimeoutMayHaveChanged"/> and <see cref="InnerExposed"/>).
    /// </summary>
    /// <exception cref="SqliteException">SQLite could not read it.</exception>
    public int BusyTimeoutMilliseconds()
    {
        if (!BusyTimeoutKnown)
        {
            using var statement = Prepare("PRAGMA busy_timeout"); // SQLite compiles a PRAGMA again on every run anyway
            SqliteException.ThrowExceptionForRC(raw.sqlite3_step(statement), Handle);
            _busyTimeout = raw.sqlite3_column_int(statement, 0);
            BusyTimeoutMayHaveChanged = false;
        }

        return _busyTimeout;
    }

    /// <summary>Whether <see cref="BusyTimeoutMilliseconds"/> has the busy timeout without reading it from SQLite.</summary>
    private bool BusyTimeoutKnown => _busyWaitsCancellable || !(BusyTimeoutMayHaveChanged || InnerExposed);

    /// <summary>
    /// Until <see cref="EndCancellableBusyWaits"/>, SQLite's own waits for a lock on this connection (its busy
    /// handler, for up to the busy timeout) also end when <paramref name="cancellationToken"/> is cancelled, with
    /// SQLITE_BUSY (see <see cref="CancellableBusyHandler"/>). No statement that reads or sets <c>busy_timeout</c> may
    /// run meanwhile.
    /// </summary>
    /// <returns>Whether the waits became cancellable, and so must be ended.</returns>
    /// <exception cref="SqliteException">SQLite could not read the busy timeout.</exception>
    public bool MakeBusyWaitsCancellable(CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled)
        {
            return false;
        }

        var timeout = BusyTimeoutMilliseconds();
        _cancellableBusyHandler ??= new CancellableBusyHandler();
        return _busyWaitsCancellable = _cancellableBusyHandler.Install(Handle, timeout, cancellationToken);
    }

    /// <summary>Whether SQLite's waits for a lock end with a token now (see <see cref="MakeBusyWaitsCancellable"/>).</summary>
    public bool BusyWaitsCancellable => _busyWaitsCancellable;

    /// <summary>Gives the connection SQLite's own busy handler back, after <see cref="MakeBusyWaitsCancellable"/>.</summary>
    public void EndCancellableBusyWaits()
    {
        if (_busyWaitsCancellable)
        {
            _busyWaitsCancellable = false;
            _cancellableBusyHandler!.Uninstall(Handle);
        }
    }

    /// <summary>Switches SQLite's busy handler off, to poll for a lock instead, until <see cref="ResumeBusyWaits"/>.</summary>
    /// <returns>The busy timeout, in milliseconds.</returns>
    /// <exception cref="SqliteException">SQLite could not read the busy timeout.</exception>
    public int SuspendBusyWaits()
    {
        var timeout = BusyTimeoutMilliseconds();
        raw.sqlite3_busy_timeout(Handle, 0);
        return timeout;
    }

    /// <summary>
    /// <see cref="SuspendBusyWaits"/>, only when the busy timeout is known without reading it from SQLite, which an
    /// interrupt still pending would refuse (as a Close of the connection interrupts until the renter's call ends).
    /// </summary>
    /// <returns>Whether the busy handler was switched off, and so must be switched back on with <see cref="ResumeBusyWaits"/>.</returns>
    public bool TrySuspendBusyWaitsWithoutReading()
    {
        if (!BusyTimeoutKnown)
        {
            return false;
        }

        raw.sqlite3_busy_timeout(Handle, 0);
        return true;
    }

    /// <summary>Switches the busy handler <see cref="SuspendBusyWaits"/> switched off back on.</summary>
    public void ResumeBusyWaits()
    {
        if (_busyWaitsCancellable)
        {
            _cancellableBusyHandler!.Reinstall(Handle);
        }
        else
        {
            raw.sqlite3_busy_timeout(Handle, _busyTimeout);
        }
    }

    /// <summary>
    /// Leaves the write gate, unless a rollback SQLite refused left the transaction open (see
    /// <see cref="RollbackFailure"/>): the gate is then kept, as SQLite keeps its write lock, until a rollback
    /// succeeds (<see cref="RetryFailedRollback"/>) or the connection is closed.
    /// </summary>
    public void ReleaseGateUnlessTransactionKept()
    {
        if (RollbackFailure is null)
        {
            ReleaseGate();
        }
    }

    /// <summary>Leaves the write gate, if this connection holds it.</summary>
    public void ReleaseGate()
    {
        var gate = HeldGate;
        HeldGate = null;
        gate?.Exit();
    }

    /// <summary>
    /// Makes a returned connection clean for its next renter: any transaction rolled back, and the connection's
    /// PRAGMAs set back as <see cref="RememberPragmas"/> found them if a command may have changed them. Returns
    /// <see langword="false"/> when the connection cannot be made clean (it holds temporary tables or triggers
    /// or attached databases, a transaction is still open after its <see cref="Sqlite"/> was handed out, or SQLite
    /// failed) and must be closed instead.
    /// </summary>
    /// <param name="whyNot">Why it cannot be made clean, for the log; <see langword="null"/> when it is.</param>
    public bool TryReset(out string? whyNot)
    {
        whyNot = null;
        if (!Used)
        {
            return true;
        }

        Used = false;
        AttachMayHaveRun = false; // kept only without databases attached but the initializer's (see HasAttachedDatabases)
        _memdbAttachedBefore = null;
        WriteOpenForReader = false;
        _active = 0; // the renter's Close has closed its readers
        (_progressStop, StoppedByProgressHandler) = (null, false);
        UnitOfWorkAttempt = default;
        BusyTimeoutMayHaveChanged |= InnerExposed;
        var innerExposed = InnerExposed;
        InnerExposed = false;
        if (Sqlite.State != System.Data.ConnectionState.Open)
        {
            whyNot = "Microsoft.Data.Sqlite's connection under it was closed";
            return false;
        }

        if (innerExposed)
        {
            RestoreProgressHandler(); // over one the renter may have set through InnerConnection
        }

        if (UnreadablePragmaMayHaveChanged)
        {
            whyNot = "a command may have set a PRAGMA whose value cannot be read, so cannot be set back";
            return false;
        }

        if (!_exclusiveLocking && (LockingModeMayHaveChanged || (innerExposed && BecameExclusive())))
        {
            whyNot = "a command, or InnerConnection, may have set locking_mode = EXCLUSIVE, whose lock on the database file SQLite keeps after the mode is set back";
            return false;
        }

        var (checkTemp, checkAttached) = (MayHoldTempObjects, MayHoldAttachments);
        (MayHoldTempObjects, MayHoldAttachments) = (false, false);
        try
        {
            if (innerExposed)
            {
                // Microsoft.Data.Sqlite's own settings a renter may have changed on InnerConnection, which are not
                // PRAGMAs: extension loading, switched off (SQL's load_extension() would load any library for every later
                // renter) through Microsoft.Data.Sqlite, which keeps a flag of its own, unless opening left it on (only
                // the C API's part of it can be read, so nothing is switched on: that would allow SQL's too); and
                // DefaultTimeout.
                if (!_extensionsLoadable)
                {
                    Sqlite.EnableExtensions(false);
                }

                Sqlite.DefaultTimeout = _defaultTimeout;
            }

            if (innerExposed && InnerTransactionPending())
            {
                // A SqliteTransaction begun on the inner connection and never disposed: rolling it back here would
                // leave Microsoft.Data.Sqlite refusing every later command that does not name it.
                whyNot = "a SqliteTransaction begun on InnerConnection was not disposed";
                return false;
            }

            Rollback();
            if (ESqlite3.Available)
            {
                ESqlite3.sqlite3_set_last_insert_rowid(Handle.DangerousGetHandle(), 0); // as on a new connection
            }

            if (PragmasMayHaveChanged)
            {
                PragmasMayHaveChanged = false;
                BusyTimeoutMayHaveChanged = true;

                // After a command that named journal_mode, without waits, as the SQL sets the busy timeout back itself: a
                // journal mode set back from PERSIST or TRUNCATE deletes the journal file, which waited the whole Busy
                // Timeout for another process's lock; SQLITE_BUSY fails the reset instead, and the connection is closed.
                if (JournalModeMayHaveChanged && _rememberedBusyTimeout is not null)
                {
                    raw.sqlite3_busy_timeout(Handle, 0);
                }

                SqliteException.ThrowExceptionForRC(raw.sqlite3_exec(Handle, _restorePragmaSql), Handle);
                KnowBusyTimeout(_rememberedBusyTimeout);
                SetBackMaxPageCount(innerExposed);
            }
            else if (innerExposed)
            {
                RememberPragmas(waitForLocks: false); // what the renter set through the inner connection stays, as documented
            }

            (MaxPageCountMayHaveChanged, LockingModeMayHaveChanged, JournalModeMayHaveChanged) = (false, false, false);

            whyNot = (checkTemp ? TempObjectsChangedByRenter() : null)
                ?? (checkAttached && HasAttachedDatabases() ? "it has attached databases"
                    : HoldsReadTransaction() ? "something left open (a stream from GetStream, a reader on InnerConnection) keeps its read snapshot"
                    : null);
            if (whyNot is null && innerExposed)
            {
                // Only on a connection kept: beside a statement left open (a stream), the read would take a lock that
                // SQLite keeps until the statement ends, even on the closed connection.
                ReadAttachedDatabases();
            }

            return whyNot is null;
        }
        catch (SqliteException failure)
        {
            whyNot = "SQLite failed to reset it: " + failure.Message.TrimEnd('.');
            return false;
        }
    }

    /// <summary>
    /// Whether SQLite still holds a read transaction on the connection once it is rolled back: something the renter
    /// left open keeps its snapshot (a stream from <c>GetStream</c>, a reader on <see cref="Sqlite"/>), and the next
    /// renter would read that old snapshot. Not known, and taken as no, when <see cref="ESqlite3"/> cannot be called.
    /// </summary>
    private bool HoldsReadTransaction()
        => ESqlite3.HoldsTransaction(Handle);

    /// <summary>
    /// Notes what a command's text may do to the connection's PRAGMAs, before SQLite prepares it (a PRAGMA that sets
    /// a value takes effect as it is prepared): <c>PRAGMA name = value</c> or <c>PRAGMA name(value)</c> may set one,
    /// reading one does not.
    /// </summary>
    public void NotePragmas(OwnedSqliteCommand command)
    {
        if (!command.MaySetPragmas)
        {
            return;
        }

        var text = command.CommandText;
        PragmasMayHaveChanged = true;
        MaxPageCountMayHaveChanged |= text.Contains("max_page_count", StringComparison.OrdinalIgnoreCase);
        JournalModeMayHaveChanged |= text.Contains("journal_mode", StringComparison.OrdinalIgnoreCase);
        NoteBusyTimeoutMaySet(text);
        foreach (var (schema, name) in PragmaSettings.Of(text))
        {
            UnreadablePragmaMayHaveChanged |= IsUnreadable(schema, name);
            LockingModeMayHaveChanged |= name.Equals("locking_mode", StringComparison.OrdinalIgnoreCase);
        }
    }

    /// <summary>
    /// Notes that the statements of <paramref name="text"/> about to be prepared may set busy_timeout: as a command
    /// begins (see <see cref="NotePragmas"/>), and as a reader of it prepares its later statements (its NextResult or
    /// closing, perhaps after another command has read the busy timeout). Only a command that may set a PRAGMA
    /// (<see cref="PragmasMayHaveChanged"/>, once one of the rental did) and names busy_timeout can: SQLite's names are
    /// not escaped or split.
    /// </summary>
    public void NoteBusyTimeoutMaySet(string text)
    {
        if (PragmasMayHaveChanged && NamesBusyTimeout(text) && MaySetPragmas(text))
        {
            BusyTimeoutMayHaveChanged = true;
        }
    }

    /// <summary>Whether <paramref name="text"/> may read or set busy_timeout: a PRAGMA that names it.</summary>
    public static bool NamesBusyTimeout(string text)
        => text.Contains("pragma", StringComparison.OrdinalIgnoreCase) && text.Contains("busy_timeout", StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether <paramref name="text"/> may set a PRAGMA: <c>PRAGMA name = value</c> or <c>PRAGMA name(value)</c>.</summary>
    public static bool MaySetPragmas(string text)
        => text.Contains("pragma", StringComparison.OrdinalIgnoreCase)
            && (text.Contains('=', StringComparison.Ordinal) || text.Contains('(', StringComparison.Ordinal));

    /// <summary>
    /// Remembers the values of the PRAGMAs a renter can change with a command and that stay with the connection, as
    /// the connection string, the connection initializer or a renter through <see cref="Sqlite"/> left them, to set
    /// them back when a renter may have changed one. The SQL holds only numbers SQLite returned and names from fixed
    /// lists. query_only is lifted first, so that it cannot stop the others, and set last. The busy timeout read is
    /// then the one <see cref="BusyTimeoutMilliseconds"/> knows, as it is again once they are set back. max_page_count
    /// is kept apart (see <see cref="MaxPageCountMayHaveChanged"/>); without <paramref name="waitForLocks"/> (as a
    /// connection whose <see cref="SaverDbConnection.InnerConnection"/> was used goes back to the pool) it is read
    /// without waiting for a lock, and the value read before stays when another process holds the file locked.
    /// </summary>
    public void RememberPragmas(bool waitForLocks = true)
    {
        _rememberedBusyTimeout = null; // until read again below
        _exclusiveLocking = false; // likewise
        var sql = new System.Text.StringBuilder("PRAGMA query_only = 0;");
        foreach (var (name, values) in NamePragmas)
        {
            if (name == "main.journal_mode" && raw.sqlite3_db_readonly(Handle, "main") == 1)
            {
                continue; // a read-only connection cannot change it, but fails trying when another has
            }

            if (Read(Handle, name) is { } value && values.Contains(value, StringComparer.OrdinalIgnoreCase))
            {
                sql.Append("PRAGMA ").Append(name).Append(" = ").Append(value == "2" ? "FAST" : value).Append(';');
            }
        }

        foreach (var name in NumberPragmas)
        {
            if (Read(Handle, name) is { } value && long.TryParse(value, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var number))
            {
                if (name == "busy_timeout")
                {
                    _rememberedBusyTimeout = (int)number;
                }

                sql.Append("PRAGMA ").Append(name).Append(" = ").Append(number.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append(';');
            }
        }

        // Exclusive only if every database the connection keeps is: a renter's EXCLUSIVE on one that was not would stay.
        _lockingModes = [.. LockingModes()];
        _exclusiveLocking = _lockingModes.Skip(File.Length == 0 ? 0 : 1).All(mode => mode == "exclusive");

        // Main's own locking mode after the default for later attachments set above (an initializer's
        // PRAGMA main.locking_mode = EXCLUSIVE sets main's alone); not for a database in memory (see LockingModes).
        if (File.Length > 0 && _lockingModes[1] is { } mainLocking && mainLocking is "normal" or "exclusive")
        {
            sql.Append("PRAGMA main.locking_mode = ").Append(mainLocking).Append(';');
        }
        foreach (var schema in InitiallyAttachedSchemas())
        {
            var quoted = Quoted(schema);
            foreach (var name in AttachedPragmas)
            {
                if (Read(Handle, quoted + name) is { } value
                    && (name == "locking_mode" ? value is "normal" or "exclusive" : long.TryParse(value, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out _)))
                {
                    sql.Append("PRAGMA ").Append(quoted).Append(name).Append(" = ").Append(value == "2" && name == "secure_delete" ? "FAST" : value).Append(';');
                }
            }
        }

        if (Read(Handle, "query_only") is { } queryOnly && queryOnly is "0" or "1")
        {
            sql.Append("PRAGMA query_only = ").Append(queryOnly).Append(';');
        }

        _restorePragmaSql = sql.ToString();
        KnowBusyTimeout(_rememberedBusyTimeout);
        var waitsWereOff = !waitForLocks && _rememberedBusyTimeout is not null && raw.sqlite3_busy_timeout(Handle, 0) == raw.SQLITE_OK;
        try
        {
            if ((waitForLocks || waitsWereOff) && Read(Handle, "max_page_count") is { } pages
                && long.TryParse(pages, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number))
            {
                _restoreMaxPageCount = "PRAGMA max_page_count = " + number.ToString(System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        finally
        {
            if (waitsWereOff)
            {
                raw.sqlite3_busy_timeout(Handle, _rememberedBusyTimeout!.Value);
            }
        }
    }

    /// <summary>
    /// After InnerConnection use, reads each database the connection initializer attached, without waiting for a lock:
    /// a lock EXCLUSIVE locking mode took stays after the mode is set back to NORMAL (through InnerConnection, where no
    /// command's text shows it) until the database is next read, which an idle connection never does. Main is read as
    /// the PRAGMAs are remembered or set back (its max_page_count).
    /// </summary>
    private void ReadAttachedDatabases()
    {
        if (_initialAttachments is null || _rememberedBusyTimeout is not { } busyTimeout || raw.sqlite3_busy_timeout(Handle, 0) != raw.SQLITE_OK)
        {
            return;
        }

        try
        {
            // Not one in EXCLUSIVE mode (as the initializer left it: one that became so closed the connection), whose read
            // would take a lock and keep it.
            foreach (var schema in InitiallyAttachedSchemas().Where(schema => Read(Handle, Quoted(schema) + "locking_mode") == "normal"))
            {
                _ = Read(Handle, Quoted(schema) + "schema_version"); // busy: another connection holds its lock, so this one does not
            }
        }
        finally
        {
            raw.sqlite3_busy_timeout(Handle, busyTimeout);
        }
    }

    /// <summary><paramref name="schema"/> quoted, with the dot that a PRAGMA's name follows.</summary>
    private static string Quoted(string schema) => "\"" + schema.Replace("\"", "\"\"", StringComparison.Ordinal) + "\".";

    /// <summary>
    /// Sets max_page_count back, after a command of the rental named it (waiting for a lock another process holds, as
    /// that command did), or, without waiting, when <paramref name="innerExposed"/> (the renter may have set it through
    /// InnerConnection, and a command set another PRAGMA, so that all are set back). Setting it reads the database
    /// file; when another process holds it locked, SQLITE_BUSY fails the reset, and the connection is closed.
    /// </summary>
    private void SetBackMaxPageCount(bool innerExposed)
    {
        if (_restoreMaxPageCount is null || !(MaxPageCountMayHaveChanged || innerExposed))
        {
            return;
        }

        var waitsOff = !MaxPageCountMayHaveChanged && raw.sqlite3_busy_timeout(Handle, 0) == raw.SQLITE_OK;
        try
        {
            SqliteException.ThrowExceptionForRC(raw.sqlite3_exec(Handle, _restoreMaxPageCount), Handle);
        }
        finally
        {
            if (waitsOff)
            {
                raw.sqlite3_busy_timeout(Handle, _busyTimeout);
            }
        }
    }

    /// <summary>Takes <paramref name="milliseconds"/>, just read or set, as the busy timeout (see <see cref="BusyTimeoutMilliseconds"/>).</summary>
    private void KnowBusyTimeout(int? milliseconds)
    {
        if (milliseconds is { } known)
        {
            _busyTimeout = known;
            BusyTimeoutMayHaveChanged = false;
        }
    }

    /// <summary>
    /// Has SQLite refuse every write on the connection, to any database (the temp one and attached ones too), with
    /// SQLITE_READONLY before the statement takes a lock (<c>PRAGMA query_only</c>), until <see cref="AllowWrites"/>.
    /// </summary>
    /// <returns>Whether SQLite refused writes already (a renter set query_only): then leave it so, without <see cref="AllowWrites"/>.</returns>
    /// <exception cref="SqliteException">SQLite refused the PRAGMA (an interrupt it keeps pending while a statement is active).</exception>
    public bool RefuseWrites()
    {
        if (Read(Handle, "query_only") == "1")
        {
            return true;
        }

        Execute("PRAGMA query_only = 1");
        return false;
    }

    /// <summary>
    /// Lets SQLite write again after <see cref="RefuseWrites"/>. If SQLite refuses, the PRAGMAs are set back as the
    /// connection goes back to the pool (see <see cref="PragmasMayHaveChanged"/>); until then the renter's writes fail
    /// with SQLITE_READONLY, which says so.
    /// </summary>
    public void AllowWrites()
    {
        if (raw.sqlite3_exec(Handle, "PRAGMA query_only = 0") != raw.SQLITE_OK)
        {
            PragmasMayHaveChanged = true;
        }
    }

    /// <summary>Closes the physical connection, releasing the database file.</summary>
    public void Dispose()
    {
        _beginImmediate.Dispose();
        _beginDeferred.Dispose();
        _commit.Dispose();
        _rollback.Dispose();
        _hasTempObjects.Dispose();
        _hasTempTables.Dispose();
        _hasTempTablesOrTriggers.Dispose();
        _tempSchemaVersion.Dispose();
        Statements.Dispose();
        Calls.Dispose();
        try
        {
            Sqlite.Dispose();
        }
        catch (SqliteException) when (!Handle.IsClosed && !InTransaction)
        {
            // Microsoft.Data.Sqlite rolls back a SqliteTransaction left on InnerConnection, and throws when SQLite has
            // ended it already (a COMMIT sent as SQL), forgetting the transaction as it throws: close again.
            Sqlite.Dispose();
        }
        finally
        {
            _cancellableBusyHandler?.Dispose(); // the handler is taken out after every call that put it in
        }
    }

    /// <summary>The value of a PRAGMA as text, or null when SQLite gives none.</summary>
    private static string? Read(sqlite3 handle, string pragma) => ReadText(handle, "PRAGMA " + pragma);

    /// <summary>The first column of the first row of <paramref name="sql"/> as text; null when there is none, or SQLite cannot run it.</summary>
    private static string? ReadText(sqlite3 handle, string sql)
    {
        if (raw.sqlite3_prepare_v2(handle, sql, out var statement) != raw.SQLITE_OK)
        {
            statement.Dispose();
            return null;
        }

        using (statement)
        {
            return raw.sqlite3_step(statement) == raw.SQLITE_ROW ? raw.sqlite3_column_text(statement, 0).utf8_to_string() : null;
        }
    }

    /// <summary>
    /// Remembers the temporary schema as opening and the connection initializer left it, so that temporary objects the
    /// initializer made do not count as a renter's, and one that took them away is seen (<see cref="TempObjectsChangedByRenter"/>).
    /// </summary>
    public void RememberTempSchema()
    {
        _initialTempSchemaVersion = TempSchemaVersion();
        _initialTempSchema = Exists(_hasTempObjects) ? TempSchema() : null;
    }

    /// <summary>
    /// Why the temporary objects keep the connection from its next renter, if they do: some are there that a renter
    /// may have made or filled (one is a table, the initializer's too: it may hold a renter's rows; or the temporary
    /// schema changed since <see cref="RememberTempSchema"/> and is not what the initializer left, as it is again once
    /// a renter dropped a table of its own); or none is, though the initializer made some, which a renter dropped (or
    /// set temp_store, which makes SQLite drop them all), and the next renter would go without.
    /// </summary>
    private string? TempObjectsChangedByRenter()
    {
        if (Exists(_hasTempObjects))
        {
            return Exists(_hasTempTables) || (TempSchemaVersion() != _initialTempSchemaVersion && TempSchema() != _initialTempSchema)
                ? "it holds TEMP tables, views or triggers a renter made"
                : null;
        }

        return _initialTempSchema is not null && TempSchemaVersion() != _initialTempSchemaVersion
            ? "a renter took away TEMP views or triggers the connection initializer made"
            : null;
    }

    /// <summary>
    /// The temporary objects, each by its type, name and SQL, in one string (called only when there are some); a
    /// string no schema gives when SQLite cannot read them, so that the schema counts as changed.
    /// </summary>
    private string? TempSchema()
        => ReadText(Handle, "SELECT group_concat(type || ' ' || name || ' ' || ifnull(sql, ''), char(31)) FROM (SELECT type, name, sql FROM temp.sqlite_master ORDER BY type, name)")
            ?? "\u0000unreadable";

    /// <summary>
    /// Whether the connection's temp database holds a table or a trigger (yes when SQLite cannot say), which alone can
    /// make a write other than a <c>CREATE</c>, <c>DROP</c> or <c>ANALYZE</c> write only the temp database (see
    /// <see cref="CommandClassifier.TempTablesOrTriggers"/>); a temporary view cannot.
    /// </summary>
    public bool HasTempTablesOrTriggers() => Exists(_hasTempTablesOrTriggers);

    /// <summary>The version of the connection's temp schema, which each change of it raises; -1 when SQLite cannot read it.</summary>
    public long TempSchemaVersion()
    {
        var rc = raw.sqlite3_step(_tempSchemaVersion);
        var version = rc == raw.SQLITE_ROW ? raw.sqlite3_column_int64(_tempSchemaVersion, 0) : -1;
        raw.sqlite3_reset(_tempSchemaVersion);
        return version;
    }

    /// <summary>
    /// Whether Microsoft.Data.Sqlite holds a <see cref="SqliteTransaction"/> begun on <see cref="Sqlite"/> and not
    /// disposed, even one SQLite itself has ended (a COMMIT sent as SQL, an ON CONFLICT ROLLBACK): it then refuses a
    /// command that does not name it.
    /// </summary>
    private bool InnerTransactionPending()
    {
        try
        {
            using var probe = new SqliteCommand("SELECT 1", Sqlite); // CreateCommand would name the transaction
            probe.ExecuteScalar();
            return false;
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }

    /// <summary>
    /// Remembers what opening and the connection initializer left that returning the connection sets back or compares
    /// with: the databases attached (with <paramref name="initialized"/>; none otherwise), which renters find attached
    /// and may keep; whether extensions may be loaded; and Microsoft.Data.Sqlite's DefaultTimeout.
    /// </summary>
    public void RememberOpened(bool initialized)
    {
        _initialAttachments = initialized ? Attachments() : null;
        const int EnableLoadExtension = 1005; // SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION; -1 reads it
        _extensionsLoadable = raw.sqlite3_db_config(Handle, EnableLoadExtension, -1, out var loadable) == raw.SQLITE_OK && loadable != 0;
        _defaultTimeout = Sqlite.DefaultTimeout;
    }

    /// <summary>
    /// Whether the databases attached past main (seq 0) and temp (seq 1) are not those the connection initializer
    /// attached (see <see cref="RememberOpened"/>); a failure counts as yes.
    /// </summary>
    private bool HasAttachedDatabases() => Attachments() is var now && (now == Unlisted || now != _initialAttachments);

    /// <summary>The names of the databases the connection initializer attached (see <see cref="RememberOpened"/>).</summary>
    private IEnumerable<string> InitiallyAttachedSchemas()
        => _initialAttachments is null or Unlisted ? [] : _initialAttachments.Split('\0').Where((_, i) => i % 2 == 0).SkipLast(1);

    /// <summary>
    /// The locking modes of the connection: the one for databases attached later (<c>PRAGMA locking_mode</c>), main's
    /// for a file (for a database in memory SQLite reports EXCLUSIVE whatever was set, as for an immutable file), then
    /// that of each database the connection initializer attached, which a renter's unqualified PRAGMA switches too.
    /// </summary>
    private IEnumerable<string?> LockingModes()
    {
        yield return Read(Handle, "locking_mode");
        if (File.Length > 0)
        {
            yield return Read(Handle, "main.locking_mode");
        }

        foreach (var schema in InitiallyAttachedSchemas())
        {
            yield return Read(Handle, Quoted(schema) + "locking_mode");
        }
    }

    /// <summary>
    /// Whether a database of the connection is in EXCLUSIVE locking mode that was not when the modes were remembered
    /// (through InnerConnection): not one SQLite always reports EXCLUSIVE (in memory, temporary, immutable), which
    /// would otherwise close the connection at every return.
    /// </summary>
    private bool BecameExclusive()
        => LockingModes().Where((mode, i) => mode == "exclusive" && (i >= _lockingModes.Length || _lockingModes[i] != "exclusive")).Any();

    /// <summary>
    /// Notes that a command with an ATTACH statement is about to run (see <see cref="AttachMayHaveRun"/>), and on the
    /// pool's memdb database for a private in-memory one (see <see cref="SaverOptions.InnerConnectionString"/>) which
    /// databases in the memdb VFS are attached before it, so that <see cref="MemdbAttachedSinceNoted"/> finds those it
    /// attaches.
    /// </summary>
    public void NoteAttach()
    {
        AttachMayHaveRun = true;
        if (_memdbStandIn)
        {
            _memdbAttachedBefore = MemdbAttached(); // afresh: one refused but kept attached may have been detached since
        }
    }

    /// <summary>
    /// On the pool's memdb database for a private in-memory one, the name of a database in the memdb VFS attached
    /// since <see cref="NoteAttach"/> (by the connection initializer: since the connection opened), if any: ATTACH opens
    /// a file name that names no VFS in the main database's, memdb, so SQLite made that file another database in
    /// memory, and nothing written to it would reach the file, where a connection of Microsoft.Data.Sqlite's own to
    /// <c>:memory:</c> attaches the file. SQLite keeps no name for it to tell one that named memdb itself.
    /// </summary>
    /// <param name="initializer">Whether the connection initializer has just run.</param>
    public string? MemdbAttachedSinceNoted(bool initializer = false)
    {
        if (!_memdbStandIn || (!initializer && _memdbAttachedBefore is null))
        {
            return null;
        }

        return MemdbAttachedSince(initializer ? [] : _memdbAttachedBefore!).FirstOrDefault();
    }

    /// <summary>The databases in the memdb VFS attached now that are not among <paramref name="before"/>.</summary>
    private string[] MemdbAttachedSince(string[] before)
        => [.. MemdbAttached().Where(schema => !before.Contains(schema, StringComparer.Ordinal))];

    /// <summary>The names of the databases attached in the memdb VFS (no file, and not in SQLite's pager as <c>:memory:</c> is).</summary>
    private string[] MemdbAttached()
    {
        var names = Attachments() is { } attached and not Unlisted ? attached.Split('\0') : [];
        return [.. Enumerable.Range(0, names.Length / 2)
            .Where(i => names[(2 * i) + 1].Length == 0 && ESqlite3.InMemdb(Handle, names[2 * i]))
            .Select(i => names[2 * i])];
    }

    /// <summary>
    /// Detaches the database <see cref="MemdbAttachedSinceNoted"/> found, and any other attached since with it, if SQLite
    /// lets it (not while a statement reading it runs; a connection with a database attached during a rental is closed
    /// as it is returned anyway), and returns the exception that says so.
    /// </summary>
    /// <param name="schema">The database's name.</param>
    /// <param name="by">What attached it, for the message.</param>
    public InvalidOperationException RefuseMemdbAttachment(string schema, string by)
    {
        string[] schemas = [schema, .. MemdbAttachedSince(_memdbAttachedBefore ?? []).Where(other => other != schema)];
        var left = schemas.Where(name => raw.sqlite3_exec(Handle, "DETACH " + Identifier(name)) != raw.SQLITE_OK).ToArray();
        if (_memdbAttachedBefore is not null)
        {
            _memdbAttachedBefore = MemdbAttached(); // refused once: one still attached does not refuse every later command (a ROLLBACK that would free it)
        }

        var one = schemas.Length == 1;
        var vfs = OperatingSystem.IsWindows() ? "win32" : "unix";
        var detached = left.Length == 0 ? (one ? "It was detached" : "They were detached")
            : $"{Names(left)} {(left.Length == 1 ? "stays" : "stay")} attached, as SQLite detaches none that a statement or transaction uses, until the connection closes, when it is returned to the pool";
        return new InvalidOperationException(
            $"{by} attached {(one ? "a database" : "databases")} as {Names(schemas)} to the pool's in-memory database (one database in memory that the pool's connections share): there SQLite takes a plain file name given to ATTACH for another database in memory, not the file, so nothing written to {(one ? "it" : "them")} would reach the file. {detached}; anything else done with {(one ? "it" : "them")} stands. Name the VFS in a URI to attach a file (ATTACH 'file:/path/to/file.db?vfs={vfs}' AS {Identifier(schemas[0])}), attach ':memory:' for a database in memory, or use Pooling=False, where each connection has an in-memory database of its own.");

        static string Identifier(string name) => "\"" + name.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

        static string Names(string[] names)
            => names.Length == 1 ? Identifier(names[0]) : string.Join(", ", names[..^1].Select(Identifier)) + " and " + Identifier(names[^1]);
    }

    /// <summary>A string <see cref="Attachments"/> gives when SQLite cannot list the databases.</summary>
    private const string Unlisted = "\u0000unlisted";

    /// <summary>
    /// The databases attached past main and temp, each by its name and file, in one string (each followed by a NUL,
    /// which neither can hold); null when there are none, <see cref="Unlisted"/> when SQLite cannot list them.
    /// <c>PRAGMA database_list</c>, prepared each time (a kept one would list the databases of its preparation), reads
    /// no file, where a query of the table-valued <c>pragma_database_list</c> reads the schema, which another
    /// process's lock holds up in a rollback-journal mode, so that a Close waited the whole Busy Timeout.
    /// </summary>
    private string? Attachments()
    {
        if (raw.sqlite3_prepare_v2(Handle, "PRAGMA database_list", out var list) != raw.SQLITE_OK)
        {
            list.Dispose();
            return Unlisted;
        }

        using (list)
        {
            string? attached = null;
            int rc;
            while ((rc = raw.sqlite3_step(list)) == raw.SQLITE_ROW)
            {
                if (raw.sqlite3_column_int(list, 0) >= 2)
                {
                    attached += raw.sqlite3_column_text(list, 1).utf8_to_string() + "\0" + raw.sqlite3_column_text(list, 2).utf8_to_string() + "\0";
                }
            }

            return rc == raw.SQLITE_DONE ? attached : Unlisted;
        }
    }

    /// <summary>Runs a <c>SELECT EXISTS (...)</c> statement; a failed step counts as yes.</summary>
    private static bool Exists(sqlite3_stmt statement)
    {
        var rc = raw.sqlite3_step(statement);
        var found = rc != raw.SQLITE_ROW || raw.sqlite3_column_int(statement, 0) != 0;
        raw.sqlite3_reset(statement);
        return found;
    }

    /// <summary>
    /// Runs one of the library's kept statements (BEGIN, COMMIT, ROLLBACK) out of the progress handler's reach: SQLite
    /// counts a statement's steps over all its runs and calls the handler each time the count passes a hundred, also
    /// as the statement returns, after a BEGIN has begun its transaction or a COMMIT has ended it, so that a cancelled
    /// call's token would make it report a failure for what it did.
    /// </summary>
    private int Step(sqlite3_stmt statement)
    {
        var stop = _progressStop; // its way of stopping stays as it is
        _progressStop = null;
        try
        {
            var rc = raw.sqlite3_step(statement);
            raw.sqlite3_reset(statement);
            return rc;
        }
        finally
        {
            _progressStop = stop;
        }
    }

    private sqlite3_stmt Prepare(string sql)
    {
        var rc = raw.sqlite3_prepare_v2(Handle, sql, out var statement);
        SqliteException.ThrowExceptionForRC(rc, Handle);
        return statement;
    }

    /// <summary>
    /// Whether the PRAGMA that may set <paramref name="name"/> of <paramref name="schema"/> sets a setting that is not
    /// set back: <c>case_sensitive_like</c>, and the <c>auto_vacuum</c> and <c>page_size</c> a later <c>VACUUM</c>
    /// would give the file (SQLite cannot report them: reading them gives the file's own); any setting of a schema
    /// other than main (<c>temp.max_page_count</c>, or <c>aux.synchronous</c> of a database the connection
    /// initializer attached), which <see cref="RememberPragmas"/> does not read, but not the queries and actions that
    /// take an argument and set nothing (<c>temp.table_info(t)</c>, <c>aux.wal_checkpoint(TRUNCATE)</c> and the
    /// like); and a <c>journal_mode</c> without a schema, which switches every attached database, while the connection
    /// initializer attached some (a renter's own attachments close the connection anyway).
    /// </summary>
    private bool IsUnreadable(string? schema, string name)
        => UnreadableSettings.Contains(name)
            || (schema is not null && !schema.Equals("main", StringComparison.OrdinalIgnoreCase) && !SettingNothing.Contains(name))
            || (schema is null && _initialAttachments is not null && name.Equals("journal_mode", StringComparison.OrdinalIgnoreCase));
}
