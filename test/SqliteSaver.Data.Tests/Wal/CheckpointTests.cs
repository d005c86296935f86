using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Faults;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Wal;

public class CheckpointTests : DatabaseTest
{
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
        Should.Throw<InvalidOperationException>(() => closedPlain.Checkpoint());
        Should.Throw<ArgumentNullException>(() => CheckpointExtensions.Checkpoint(null!));
        closed.Open();
        Should.Throw<ArgumentOutOfRangeException>(() => closed.Checkpoint((CheckpointMode)7));
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

    [TestCase("Mode=ReadOnly")]
    [TestCase("")] // with mode=ro in the URI
    public void A_checkpoint_on_a_read_only_connection_or_data_source_is_refused_saying_why(string options)
    {
        // SQLite itself answers "disk I/O error", which says nothing of the cause.
        PoolTests.Execute(Folder.ConnectionString(), "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        var connectionString = options.Length > 0
            ? Folder.ConnectionString(options)
            : $"Data Source=file:{Folder.File()}?mode=ro";
        using var writer = new SaverDbConnection(Folder.ConnectionString());
        writer.Open();
        ConnectionTests.Exec(writer, "INSERT INTO t VALUES (2)"); // the WAL has frames to copy
        using var dataSource = SaverDataSource.Create(connectionString);
        using var connection = dataSource.OpenConnection();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(2L);

        Should.Throw<InvalidOperationException>(() => connection.Checkpoint(CheckpointMode.Passive)).Message.ShouldContain("read-only");
        Should.Throw<InvalidOperationException>(() => dataSource.Checkpoint(CheckpointMode.Passive)).Message.ShouldContain("read-only");
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

    private static void Plain(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}
