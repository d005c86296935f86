using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Faults;
using SqliteSaver.Data.Tests.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Tests.Wal;

public class CheckpointTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Test]
    public void Checkpoint_returns_SQLites_figures_on_a_SaverDbConnection()
    {
        var connectionString = Folder.ConnectionString("Wal Autocheckpoint=0");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(10000));");

        var result = connection.Checkpoint(CheckpointMode.Full);

        result.Busy.ShouldBeFalse();
        result.LogFrames.ShouldBeGreaterThan(0);
        result.CheckpointedFrames.ShouldBe(result.LogFrames);
    }

    /// <summary>
    /// Another process switches a rollback-journal database to WAL and commits a row while this process's pooled
    /// connection is open (it holds no lock between transactions, so nothing stops it). SQLite's answers on that
    /// connection stay those of rollback mode until its next read; the status and a checkpoint read once first, and
    /// say WAL, and copy the frame back.
    /// </summary>
    [Test]
    public void After_another_process_switched_the_file_to_WAL_the_status_and_a_checkpoint_say_WAL_not_rollback_mode()
    {
        var connectionString = Folder.ConnectionString("Journal Mode=Delete;Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        connection.GetWalStatus().JournalMode.ShouldBe("delete");

        using var other = WorkerProcess.Sql(Folder.File());
        other.Run("PRAGMA journal_mode = WAL").ShouldBe("ok wal");
        other.Run("INSERT INTO t VALUES (1)").ShouldBe("ok 1");
        new FileInfo(Folder.File() + "-wal").Length.ShouldBeGreaterThan(0); // the committed frame is in the -wal file

        var status = connection.GetWalStatus();
        var checkpoint = connection.Checkpoint();
        status.JournalMode.ShouldBe("wal");
        checkpoint.LogFrames.ShouldBeGreaterThan(0);
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    /// <summary>
    /// A plain SqliteConnection that has not read the database since it opened has not opened the WAL either (SQLite
    /// answers -1 frames, "not in WAL mode", on it); the checkpoint reads once first, and gets SQLite's figures.
    /// </summary>
    [Test]
    public void A_plain_SqliteConnection_that_has_not_read_the_database_gets_the_figures_as_a_SaverDbConnection_does()
    {
        var connectionString = Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        using var plain = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        plain.Open();
        using var saver = new SaverDbConnection(connectionString);
        saver.Open();

        var result = plain.Checkpoint();

        result.LogFrames.ShouldBeGreaterThan(0);
        result.CheckpointedFrames.ShouldBe(result.LogFrames);
        saver.Checkpoint().LogFrames.ShouldBe(result.LogFrames);
    }

    /// <summary>
    /// A plain SqliteConnection that has not read the database is not made to read it when that cannot help: with no
    /// <c>-wal</c> file there is nothing to copy (a read would create one, and answer 0 frames); in a deferred
    /// transaction that has not read either, a read would begin its snapshot, on which SQLite refuses the checkpoint.
    /// It answers -1 frames, as SQLite does. Before, a read in either case passed every test (a hunt).
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void A_plain_SqliteConnection_that_has_not_read_is_made_to_read_neither_without_a_wal_file_nor_in_a_transaction(bool inTransaction)
    {
        var connectionString = Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        if (!inTransaction)
        {
            SaverDbConnection.ClearAllPools(); // the last connection closing checkpoints and deletes the -wal file
            File.Exists(Folder.File() + "-wal").ShouldBeFalse();
        }

        using var plain = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        plain.Open();
        using var deferred = inTransaction ? plain.BeginTransaction(deferred: true) : null;

        plain.Checkpoint().ShouldBe(new CheckpointResult(false, -1, -1));
        File.Exists(Folder.File() + "-wal").ShouldBe(inTransaction);
    }

    /// <summary>
    /// SQLITE_LOCKED on a connection with no transaction of its own (another connection of its shared cache has one)
    /// is SQLite's error, not the refusal for a connection with a transaction. Before, that refusal there too passed
    /// every test (a hunt).
    /// </summary>
    [Test]
    public void A_checkpoint_beside_another_shared_cache_connections_transaction_throws_SQLITE_LOCKED()
    {
        var plain = $"Data Source={Folder.File()};Cache=Shared;Pooling=False";
        using var writer = new SqliteConnection(plain);
        writer.Open();
        using (var command = writer.CreateCommand())
        {
            command.CommandText = "PRAGMA journal_mode = WAL; CREATE TABLE t (x); BEGIN; INSERT INTO t VALUES (1);";
            command.ExecuteNonQuery();
        }

        using var other = new SqliteConnection(plain);
        other.Open();

        Should.Throw<SqliteException>(() => other.Checkpoint()).SqliteErrorCode.ShouldBe(6);
    }

    /// <summary>
    /// A checkpoint whose waits a token can end puts SQLite's own busy handler back as it found it: the connection
    /// waits its busy timeout for locks again. Before, a handler of the checkpoint's left in place (the busy timeout
    /// read 0, and the handler's memory was freed) passed every test (a hunt).
    /// </summary>
    [Test]
    public async Task A_cancellable_checkpoint_leaves_the_connections_busy_timeout_as_it_found_it()
    {
        using var plain = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        plain.Open();
        using var command = plain.CreateCommand();
        command.CommandText = "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 1234; CREATE TABLE t (x); INSERT INTO t VALUES (1);";
        command.ExecuteNonQuery();
        using var cancellation = new CancellationTokenSource();

        (await plain.CheckpointAsync(CheckpointMode.Full, cancellation.Token)).Busy.ShouldBeFalse();

        command.CommandText = "PRAGMA busy_timeout";
        command.ExecuteScalar().ShouldBe(1234L);
    }

    [Test]
    public async Task Checkpoint_returns_SQLites_figures_on_a_plain_SqliteConnection()
    {
        var path = Folder.File("plain.db");
        using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        connection.Open();
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(10000));";
            command.ExecuteNonQuery();
        }

        var passive = await connection.CheckpointAsync();
        var truncate = connection.Checkpoint(CheckpointMode.Truncate);

        passive.LogFrames.ShouldBeGreaterThan(0);
        passive.CheckpointedFrames.ShouldBe(passive.LogFrames);
        truncate.ShouldBe(new CheckpointResult(false, 0, 0));
        new FileInfo(path + "-wal").Length.ShouldBe(0);
    }

    [Test]
    public void Checkpoint_on_a_database_not_in_WAL_reports_minus_one_frames()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString("Journal Mode=Delete"));
        connection.Open();

        connection.Checkpoint(CheckpointMode.Truncate).ShouldBe(new CheckpointResult(false, -1, -1));
    }

    [Test]
    public async Task Checkpoint_needs_an_open_connection_of_a_known_kind_and_a_defined_mode()
    {
        using var closed = new SaverDbConnection(Folder.ConnectionString());
        using var closedPlain = new SqliteConnection("Data Source=:memory:");

        Should.Throw<InvalidOperationException>(() => closed.Checkpoint());
        Should.Throw<InvalidOperationException>(() => closedPlain.Checkpoint()).Message.ShouldBe("Checkpoint requires an open connection.");
        (await Should.ThrowAsync<InvalidOperationException>(() => closedPlain.CheckpointAsync())).Message.ShouldBe("CheckpointAsync requires an open connection.");
        Should.Throw<InvalidOperationException>(() => closedPlain.GetWalStatus()).Message.ShouldBe("GetWalStatus requires an open connection.");
        Should.Throw<ArgumentNullException>(() => CheckpointExtensions.Checkpoint(null!));
        closed.Open();
        Should.Throw<ArgumentOutOfRangeException>(() => closed.Checkpoint((CheckpointMode)7)).Message.ShouldContain("Use Passive, Full, Restart or Truncate.");
        (await Should.ThrowAsync<ArgumentOutOfRangeException>(() => closed.CheckpointAsync((CheckpointMode)7))).ParamName.ShouldBe("mode");
        await Should.ThrowAsync<OperationCanceledException>(() => closed.CheckpointAsync(CheckpointMode.Passive, new CancellationToken(true)));
    }

    [Test]
    public void A_checkpoint_inside_a_unit_of_work_or_beside_an_open_reader_is_refused_once_not_retried_as_busy()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString("Base Delay=0.001;Max Delay=0.001"));
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        var runs = 0;

        var refused = Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(_ =>
        {
            runs++;
            connection.Checkpoint(CheckpointMode.Passive);
        }));

        runs.ShouldBe(1); // SQLITE_LOCKED, transient to the retry policy, would have run the unit of work again
        refused.Message.ShouldContain("transaction or an open reader");
        refused.InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(6);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT x FROM t";
            using var reader = command.ExecuteReader();
            reader.Read().ShouldBeTrue();
            Should.Throw<InvalidOperationException>(() => connection.Checkpoint());
        }

        connection.Checkpoint().Busy.ShouldBeFalse();
        using var deferred = connection.BeginTransaction(deferred: true);
        connection.Checkpoint().Busy.ShouldBeFalse(); // a deferred transaction that has not read holds no lock
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(2L);
        Should.Throw<InvalidOperationException>(() => connection.Checkpoint()); // now it holds a snapshot
    }

    [TestCase("Mode=ReadOnly", false)]
    [TestCase("", false)] // with mode=ro in the URI
    [TestCase("Mode=ReadOnly", true)]
    [TestCase("", true)]
    public void A_checkpoint_on_a_read_only_connection_or_data_source_is_refused_saying_why(string options, bool walEmpty)
    {
        // SQLite itself answers "disk I/O error", which says nothing of the cause, and with an empty WAL nothing at all
        // (before, the checkpoint then returned 0 frames: a new user's trial). A connection that has not read answers
        // -1 frames then, as out of WAL mode: returning that, or dropping SQLite's error, passed every test (a hunt).
        PoolTests.Execute(Folder.ConnectionString(), "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        var connectionString = options.Length > 0
            ? Folder.ConnectionString(options)
            : $"Data Source=file:{Folder.File()}?mode=ro";
        using var writer = new SaverDbConnection(Folder.ConnectionString());
        writer.Open();
        ConnectionTests.Exec(writer, "INSERT INTO t VALUES (2)"); // the WAL has frames to copy
        if (walEmpty)
        {
            writer.Checkpoint(CheckpointMode.Truncate).ShouldBe(new CheckpointResult(false, 0, 0));
        }

        using var dataSource = SaverDataSource.Create(connectionString);
        using var connection = dataSource.OpenConnection();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(2L);
        using var plain = new SqliteConnection($"Data Source={Folder.File()};Mode=ReadOnly;Pooling=False");
        plain.Open(); // it has not read the database: with an empty WAL SQLite answers -1 frames, as out of WAL mode

        Refused(() => connection.Checkpoint(CheckpointMode.Passive));
        Refused(() => dataSource.Checkpoint(CheckpointMode.Passive));
        Refused(() => plain.Checkpoint(CheckpointMode.Passive));

        // With frames to copy, SQLite's error is kept as the inner exception; with none, SQLite reported none.
        void Refused(Action checkpoint)
        {
            var refused = Should.Throw<InvalidOperationException>(checkpoint);
            refused.Message.ShouldContain("read-only");
            (refused.InnerException as SqliteException)?.SqliteErrorCode.ShouldBe(raw.SQLITE_IOERR);
            (refused.InnerException is null).ShouldBe(walEmpty);
        }
    }

    /// <summary>
    /// As above while another connection's checkpoint holds SQLite's checkpoint lock, which answers SQLITE_BUSY before
    /// the read-only connection could fail: refused at once too. Before, the call polled up to its busy timeout and
    /// came back busy, and code that tries again on busy never ended (a review's finding).
    /// </summary>
    [Test]
    public async Task A_checkpoint_on_a_read_only_connection_is_refused_while_another_checkpoint_runs()
    {
        var connectionString = Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Mode=ReadOnly;Busy Timeout=60000;Checkpoint Interval=0"));
        using var connection = dataSource.OpenConnection();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(1L);
        using var other = Plain(busyTimeout: 60000);
        using var probe = Plain(busyTimeout: 0);
        var writer = Plain(busyTimeout: 0);
        Plain(writer, "BEGIN IMMEDIATE");
        var full = Task.Factory.StartNew(() => other.Checkpoint(CheckpointMode.Full), TaskCreationOptions.LongRunning); // holds the checkpoint lock
        try
        {
            Wait.Until(() => probe.Checkpoint() == new CheckpointResult(true, -1, -1));

            var refused = await Should.ThrowAsync<InvalidOperationException>(Task.Run(() => connection.Checkpoint(CheckpointMode.Passive)).WaitAsync(TimeSpan.FromSeconds(30))); // not 60 s
            refused.Message.ShouldContain("read-only");
            (await Should.ThrowAsync<InvalidOperationException>(Task.Run(() => dataSource.Checkpoint(CheckpointMode.Passive)).WaitAsync(TimeSpan.FromSeconds(30))))
                .Message.ShouldContain("read-only");
        }
        finally
        {
            writer.Dispose(); // rolls back: the FULL checkpoint goes on
            full.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        }
    }

    /// <summary>
    /// A checkpoint on a read-only connection to a database not in WAL mode answers -1 frames, as SQLite does, even
    /// when the connection has not read the schema yet and another connection holds the file's lock, so that learning
    /// the journal mode (to refuse a read-only WAL database) cannot be done: before, that threw SQLITE_BUSY (a review).
    /// </summary>
    [Test]
    public void A_checkpoint_on_a_read_only_connection_to_a_rollback_journal_database_answers_minus_one_while_another_holds_its_lock()
    {
        var file = Folder.File();
        using (var create = new SqliteConnection($"Data Source={file};Pooling=False"))
        {
            create.Open();
            using var command = create.CreateCommand();
            command.CommandText = "PRAGMA journal_mode = DELETE; CREATE TABLE t (x)";
            command.ExecuteNonQuery();
        }

        using var writer = new SqliteConnection($"Data Source={file};Pooling=False");
        writer.Open();
        using var hold = writer.CreateCommand();
        hold.CommandText = "BEGIN EXCLUSIVE; INSERT INTO t VALUES (1)";
        hold.ExecuteNonQuery();
        using var readOnly = new SqliteConnection($"Data Source={file};Mode=ReadOnly;Pooling=False");
        readOnly.Open();

        readOnly.Checkpoint().ShouldBe(new CheckpointResult(false, -1, -1));
    }

    [Test]
    public void Restart_with_a_reader_holding_an_old_snapshot_comes_back_busy_within_the_busy_timeout()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=100");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        using var reader = new SaverDbConnection(connectionString);
        reader.Open();
        using var snapshot = reader.BeginTransaction(deferred: true);
        ConnectionTests.Scalar(reader, "SELECT count(*) FROM t");
        using var writer = new SaverDbConnection(connectionString);
        writer.Open();
        ConnectionTests.Exec(writer, "INSERT INTO t VALUES (2)");

        writer.Checkpoint(CheckpointMode.Restart).Busy.ShouldBeTrue();
    }

    [Test]
    public async Task A_checkpoint_waits_within_the_busy_timeout_for_another_checkpoint_rather_than_coming_back_busy_at_once([Values] bool async)
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=300;Wal Autocheckpoint=0;Checkpoint Interval=0");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        using var other = Plain(busyTimeout: 60000);
        using var probe = Plain(busyTimeout: 0);
        var writer = Plain(busyTimeout: 0);
        Plain(writer, "BEGIN IMMEDIATE");
        // A FULL checkpoint waits for the write lock, holding the checkpoint lock meanwhile.
        var full = Task.Factory.StartNew(() => other.Checkpoint(CheckpointMode.Full), TaskCreationOptions.LongRunning);
        try
        {
            Wait.Until(() => probe.Checkpoint() == new CheckpointResult(true, -1, -1));
            var waited = System.Diagnostics.Stopwatch.StartNew();

            var busy = async ? await connection.CheckpointAsync(CheckpointMode.Truncate) : connection.Checkpoint(CheckpointMode.Truncate);

            busy.Busy.ShouldBeTrue();
            waited.Elapsed.ShouldBeGreaterThan(TimeSpan.FromMilliseconds(250)); // Busy Timeout=300, not at once
        }
        finally
        {
            writer.Dispose(); // rolls back: the FULL checkpoint goes on
            full.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        }

        full.Result.Busy.ShouldBeFalse();
        connection.Checkpoint(CheckpointMode.Truncate).ShouldBe(new CheckpointResult(false, 0, 0));
    }

    /// <summary>A plain connection to the test's file with the given busy timeout, the WAL opened by a first read.</summary>
    private SqliteConnection Plain(int busyTimeout)
    {
        var connection = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        connection.Open();
        Plain(connection, $"PRAGMA busy_timeout = {busyTimeout}; SELECT count(*) FROM t");
        return connection;
    }

    /// <summary>
    /// connection.Checkpoint is a call of the connection like any other. One that finds another connection's
    /// checkpoint running polls for it, every few milliseconds up to the busy timeout; another thread closes the
    /// connection meanwhile, as a request timeout would. Close ends the checkpoint (InvalidOperationException) and
    /// waits for it to return before the physical connection goes back to the pool, so that it never polls on a
    /// connection the pool has handed on or closed (here by dataSource.Clear, right after Close).
    /// </summary>
    [Test]
    public async Task Close_from_another_thread_ends_and_waits_for_a_checkpoint_polling_for_another_checkpoint()
    {
        var path = Folder.File();
        var connectionString = Folder.ConnectionString("Busy Timeout=20000;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = SaverDataSource.Create(connectionString);
        var connection = dataSource.OpenConnection();
        ConnectionTests.Scalar(connection, "INSERT INTO t VALUES (1) RETURNING x");

        // A reader on a snapshot older than the WAL's end, and a plain connection whose TRUNCATE checkpoint holds the
        // checkpoint lock while it waits for that reader: any other checkpoint gets SQLITE_BUSY at once meanwhile.
        using var reader = ReaderOnTheCurrentSnapshot(path);
        ConnectionTests.Scalar(connection, "INSERT INTO t VALUES (2) RETURNING x");
        var blocker = Task.Factory.StartNew(
            () =>
            {
                using var other = new SqliteConnection($"Data Source={path};Pooling=False");
                other.Open();
                Plain(other, "PRAGMA busy_timeout = 25000");
                using var truncate = other.CreateCommand();
                truncate.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)";
                while ((long)truncate.ExecuteScalar()! != 0)
                {
                    // Busy at once: the probe below held the checkpoint lock as this began. Again, until it waits for the reader.
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
        using var probe = new SqliteConnection($"Data Source={path};Pooling=False");
        probe.Open();
        Plain(probe, "SELECT count(*) FROM t"); // SQLite opens the WAL on a connection's first read
        Wait.Until(() => blocker.IsCompleted || raw.sqlite3_wal_checkpoint_v2(probe.Handle, "main", raw.SQLITE_CHECKPOINT_PASSIVE, out var log, out _) == raw.SQLITE_BUSY && log == -1);
        blocker.IsCompleted.ShouldBeFalse();

        // The checkpoint reads the busy timeout as it starts; it then meets the other checkpoint and polls.
        var polling = new ManualResetEventSlim();
        raw.sqlite3_trace(
            connection.InnerConnection.Handle,
            (_, statement) =>
            {
                if (statement.utf8_to_string().Contains("busy_timeout", StringComparison.Ordinal))
                {
                    polling.Set();
                }
            },
            null);
        var checkpoint = Task.Factory.StartNew(() => connection.Checkpoint(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        polling.Wait(Bound).ShouldBeTrue();

        connection.Close(); // from another thread than the checkpoint's
        dataSource.Clear(); // the returned physical connection is idle: closed at once, so a checkpoint still polling on it would meet a disposed handle

        string outcome;
        try
        {
            outcome = $"returned {await checkpoint.WaitAsync(Bound)}";
        }
        catch (Exception error)
        {
            outcome = error is ObjectDisposedException disposed ? $"ObjectDisposedException ({disposed.ObjectName})" : error.GetType().Name;
        }
        finally
        {
            Plain(reader, "COMMIT");
            await blocker.WaitAsync(Bound);
        }

        outcome.ShouldBe(nameof(InvalidOperationException), "Close returned while the connection's checkpoint still ran on the pooled physical connection");
        dataSource.Statistics.InUse.ShouldBe(0);
    }

    /// <summary>
    /// A FULL connection.Checkpoint waits in the busy handler for a reader on an old snapshot when another thread
    /// closes the connection: Close cancels the call's token, which ends the wait, then interrupts SQLite. The
    /// checkpoint goes on to copy the frames that reader's snapshot allows, and SQLite's copy stops at the interrupt
    /// with SQLITE_INTERRUPT, which is taken for the Close that caused it: the caller gets the InvalidOperationException
    /// of a call ended by Close, as a command's caller does.
    /// </summary>
    [Test]
    public void Close_from_another_thread_ending_a_Full_checkpoint_that_then_copies_frames_throws_InvalidOperationException_not_SQLITE_INTERRUPT()
    {
        var path = Folder.File();
        var connectionString = Folder.ConnectionString("Busy Timeout=20000;Checkpoint Interval=0;Wal Autocheckpoint=0;Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = SaverDataSource.Create(connectionString);
        var connection = dataSource.OpenConnection();

        // Frames the reader's snapshot covers (so a FULL checkpoint may copy them once it stops waiting), then one more.
        ConnectionTests.Exec(connection, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO t SELECT randomblob(3000) FROM n");
        using var reader = ReaderOnTheCurrentSnapshot(path);
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");

        Exception? ended = null;
        var checkpoint = new Thread(() =>
        {
            try
            {
                connection.Checkpoint(CheckpointMode.Full);
            }
            catch (Exception error)
            {
                ended = error;
            }
        });
        checkpoint.Start();
        try
        {
            // Waiting for the reader in the busy handler's sleeps (up to Busy Timeout, 20 s).
            Wait.Until(() => (checkpoint.ThreadState & ThreadState.WaitSleepJoin) != 0);
            connection.Close(); // from another thread than the checkpoint's
            checkpoint.Join(Bound).ShouldBeTrue();
        }
        finally
        {
            Plain(reader, "COMMIT");
        }

        ended.ShouldBeOfType<InvalidOperationException>($"The checkpoint Close ended threw {ended}");
    }

    /// <summary>
    /// connection.GetWalStatus stays cheap, as a health check needs, when another process switched a rollback-journal
    /// database to WAL in exclusive locking mode and keeps the file locked: on a pooled connection that has not read
    /// since, it does not read the database (which would wait the whole Busy Timeout, here 120 s, in SQLite's busy
    /// handler), and the -wal file's frames tell it the database is in WAL mode.
    /// </summary>
    [Test]
    public void GetWalStatus_does_not_wait_Busy_Timeout_for_a_lock_another_process_holds_on_the_database()
    {
        var connectionString = Folder.ConnectionString("Journal Mode=Delete;Max Pool Size=1;Busy Timeout=120000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        connection.GetWalStatus().JournalMode.ShouldBe("delete");

        using var other = WorkerProcess.Sql(Folder.File());
        other.Run("PRAGMA locking_mode = EXCLUSIVE");
        other.Run("PRAGMA journal_mode = WAL").ShouldBe("ok wal");
        other.Run("INSERT INTO t VALUES (1)").ShouldBe("ok 1");
        new FileInfo(Folder.File() + "-wal").Length.ShouldBeGreaterThan(0);

        var status = Task.Factory.StartNew(() => connection.GetWalStatus(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        var answered = status.Wait(Bound);
        other.Kill(); // releases the lock, so that the status call ends
        status.Wait(TimeSpan.FromSeconds(150));
        answered.ShouldBeTrue("GetWalStatus waited for another process's lock past 30 s");
        status.Result.JournalMode.ShouldBe("wal");
    }

    /// <summary>A plain connection whose open read transaction keeps the snapshot of the moment (of table t).</summary>
    private static SqliteConnection ReaderOnTheCurrentSnapshot(string path)
    {
        var reader = new SqliteConnection($"Data Source={path};Pooling=False");
        reader.Open();
        Plain(reader, "BEGIN");
        Plain(reader, "SELECT count(*) FROM t");
        return reader;
    }

    internal static void Plain(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}
