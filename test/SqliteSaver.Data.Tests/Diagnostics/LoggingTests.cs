using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Diagnostics;

public class LoggingTests : DatabaseTest
{
    private FakeLogCollector _logs = null!;
    private ILoggerFactory _loggerFactory = null!;

    [SetUp]
    public void CreateLoggerFactory()
    {
        var provider = new FakeLoggerProvider();
        _logs = provider.Collector;
        _loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(provider).SetMinimumLevel(LogLevel.Debug));
    }

    [TearDown]
    public void DisposeLoggerFactory() => _loggerFactory.Dispose();

    [Test]
    public void Physical_connections_opened_replaced_and_closed_are_logged_at_debug()
    {
        using (var dataSource = Build())
        {
            using (var connection = dataSource.OpenConnection())
            {
                ConnectionTests.Exec(connection, "CREATE TEMP TABLE scratch (x)");
            }

            dataSource.OpenConnection().Dispose();
        }

        var events = _logs.GetSnapshot().Where(r => r.Category == "SqliteSaver.Data.Pool").ToList();
        events.Select(r => r.Id.Id).ShouldBe([1001, 1003, 1001, 1002]);
        events.ShouldAllBe(r => r.Level == LogLevel.Debug);
        events[1].Message.ShouldEndWith(": it holds TEMP tables, views or triggers a renter made, so it was closed and a fresh one opens when needed"); // not every cause there is
        events[^1].Message.ShouldContain("the data source was disposed");
    }

    [TestCase(false, ": the pool was cleared")]
    [TestCase(true, ": it stayed idle for Connection Idle Lifetime")]
    public void An_idle_connection_closed_by_Clear_or_by_idle_pruning_is_logged_with_that_reason(bool pruned, string reason)
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Connection Idle Lifetime=60;Checkpoint Interval=0"))
            .UseLoggerFactory(_loggerFactory).UseTimeProvider(time).Build();
        dataSource.OpenConnection().Dispose();

        if (pruned)
        {
            time.Advance(TimeSpan.FromSeconds(120));
        }
        else
        {
            dataSource.Clear();
        }

        var closed = _logs.GetSnapshot().Where(r => r.Id.Id == 1002).ShouldHaveSingleItem();
        closed.Message.ShouldEndWith(reason);
    }

    /// <summary>
    /// README: "closed (1002, and why)": a connection closed on return because Pooling=False, and the checkpointer's
    /// own, closed once the pool has no connection open, say so, not "it could not be reset" (a hunt: either reason
    /// falling through to that one passed before).
    /// </summary>
    [TestCase("Pooling=False", ": pooling is off")]
    [TestCase("checkpoint", ": it is the checkpointer's own, which closes with the pool's last connection")]
    public void A_connection_closed_because_pooling_is_off_or_the_pool_has_none_open_is_logged_with_that_reason(string closed, string reason)
    {
        using var dataSource = Build(Folder.ConnectionString(closed == "checkpoint" ? "Checkpoint Interval=0" : "Pooling=False;Checkpoint Interval=0"));
        if (closed == "checkpoint")
        {
            dataSource.Checkpoint(); // the pool has no connection open: the checkpoint connection opens, then closes again
        }
        else
        {
            dataSource.OpenConnection().Dispose();
        }

        var messages = _logs.GetSnapshot().Where(r => r.Id.Id == 1002).Select(r => r.Message).ToList();
        messages.ShouldContain(m => m.EndsWith(reason, StringComparison.Ordinal), customMessage: string.Join(Environment.NewLine, messages));
    }

    /// <summary>
    /// Two connections opened at once to a pooled in-memory database each open a connection to keep the database alive
    /// (both initializers run before either is kept): the one kept second is closed as redundant (1002, and why).
    /// </summary>
    [Test]
    public async Task A_second_keep_alive_connection_opened_at_the_same_time_is_logged_as_closed_because_redundant()
    {
        using var bothOpening = new Barrier(2);
        var initialized = 0;
        using var dataSource = new SaverDataSourceBuilder("Data Source=:memory:")
            .UseLoggerFactory(_loggerFactory)
            .UseConnectionInitializer(_ =>
            {
                if (Interlocked.Increment(ref initialized) <= 2)
                {
                    bothOpening.SignalAndWait(TimeSpan.FromSeconds(30)).ShouldBeTrue(); // the two keep-alive connections open together
                }
            })
            .Build();

        var opens = Enumerable.Range(0, 2)
            .Select(_ => Task.Factory.StartNew(() => dataSource.OpenConnection().Dispose(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))
            .ToArray();
        await Task.WhenAll(opens).WaitAsync(TimeSpan.FromSeconds(30));

        var closed = _logs.GetSnapshot().Where(r => r.Id.Id == 1002).ShouldHaveSingleItem();
        closed.Message.ShouldEndWith(": another connection keeps the in-memory database alive already");
    }

    /// <summary>
    /// A connection rented across a Clear is closed on return because the pool was cleared (1002), not logged as one
    /// that could not be reset (1003): it is not even tried.
    /// </summary>
    [Test]
    public void A_rented_connection_closed_on_return_after_Clear_is_logged_as_cleared()
    {
        using var dataSource = Build(Folder.ConnectionString("Checkpoint Interval=0"));
        using (dataSource.OpenConnection())
        {
            dataSource.Clear();
        }

        _logs.GetSnapshot().ShouldNotContain(r => r.Id.Id == 1003);
        var closed = _logs.GetSnapshot().Where(r => r.Id.Id == 1002).ShouldHaveSingleItem();
        closed.Message.ShouldEndWith(": the pool was cleared");
    }

    /// <summary>
    /// A connection that cannot be made clean for its next renter is closed, and the log (1003) gives the reason of the
    /// first check it fails, not that of a later one it would fail too (a closed inner connection also fails the probe
    /// for an undisposed SqliteTransaction).
    /// </summary>
    [TestCase("inner closed", "Microsoft.Data.Sqlite's connection under it was closed")]
    [TestCase("inner transaction", "a SqliteTransaction begun on InnerConnection was not disposed")]
    [TestCase("unreadable", "a command may have set a PRAGMA whose value cannot be read, so cannot be set back")]
    [TestCase("exclusive", "a command, or InnerConnection, may have set locking_mode = EXCLUSIVE, whose lock on the database file SQLite keeps after the mode is set back")]
    [TestCase("attached", "it has attached databases")]
    public void The_reason_a_returned_connection_is_closed_is_the_first_it_meets(string renter, string reason)
    {
        using var dataSource = Build(Folder.ConnectionString("Checkpoint Interval=0"));
        using (var connection = dataSource.OpenConnection())
        {
            switch (renter)
            {
                case "inner closed": connection.InnerConnection.Close(); break;
                case "inner transaction": _ = connection.InnerConnection.BeginTransaction(); break;
                case "unreadable": ConnectionTests.Exec(connection, "PRAGMA case_sensitive_like = 1"); break;
                case "exclusive": ConnectionTests.Exec(connection, "PRAGMA locking_mode = EXCLUSIVE"); break;
                default: ConnectionTests.Exec(connection, "ATTACH ':memory:' AS aux"); break;
            }
        }

        var closed = _logs.GetSnapshot().Where(r => r.Id.Id == 1003).ShouldHaveSingleItem();
        closed.Message.ShouldEndWith($": {reason}, so it was closed and a fresh one opens when needed");
    }

    /// <summary>
    /// README: "physical connection opened (1001, with how long it took)": in milliseconds, from the start of the open
    /// to the end of the connection initializer, on the data source's TimeProvider.
    /// </summary>
    [Test]
    public void An_opened_connection_is_logged_with_how_long_it_took_in_milliseconds()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0"))
            .UseTimeProvider(time)
            .UseLoggerFactory(_loggerFactory)
            .UseConnectionInitializer(_ => time.Advance(TimeSpan.FromMilliseconds(250)))
            .Build();

        dataSource.OpenConnection().Dispose();

        var opened = _logs.GetSnapshot().Where(r => r.Id.Id == 1001).ShouldHaveSingleItem();
        opened.Message.ShouldEndWith(" in 250.0 ms");
    }

    /// <summary>
    /// README: "each retry, with its delay" (2001) and "retries exhausted" (2002), both in milliseconds as their
    /// messages say: Jitter=0 makes the delays 50 and 100 ms, which the attempts waited out before giving up (a hunt:
    /// logging seconds passed before).
    /// </summary>
    [Test]
    public void Retries_are_logged_at_debug_and_giving_up_at_warning()
    {
        var connectionString = Folder.ConnectionString("Retry=2;Base Delay=0.05;Jitter=0;Busy Timeout=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = Build(connectionString);
        using var holder = HoldWriteLock();

        using var connection = dataSource.OpenConnection();
        Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)"));

        var events = _logs.GetSnapshot().Where(r => r.Category == "SqliteSaver.Data.Retry").ToList();
        events.Select(r => (r.Id.Id, r.Level)).ShouldBe([(2001, LogLevel.Debug), (2001, LogLevel.Debug), (2002, LogLevel.Warning)]);
        events[0].Message.ShouldStartWith("Retry 1 of 2 on ");
        events[1].Message.ShouldStartWith("Retry 2 of 2 on ");
        events[^1].Message.ShouldContain("after 3 attempts");
        events[0].Message.ShouldEndWith(" in 50.0 ms after SQLite Error 5: 'database is locked'. (extended code 5)"); // SQLite's words once, not "error 5: SQLite Error 5"
        events[1].Message.ShouldContain(" in 100.0 ms after ");
        var elapsed = System.Text.RegularExpressions.Regex.Match(events[^1].Message, " over (?<ms>[0-9]+) ms: ");
        elapsed.Success.ShouldBeTrue(events[^1].Message);
        int.Parse(elapsed.Groups["ms"].Value, System.Globalization.CultureInfo.InvariantCulture).ShouldBeGreaterThanOrEqualTo(150);
    }

    /// <summary>
    /// A stale snapshot is SQLITE_BUSY with extended code 517 (SQLITE_BUSY_SNAPSHOT): the logs name the extended
    /// code, which says why the write was refused, not the primary code 5 of the message.
    /// </summary>
    [TestCase(1, 2001, "Retry 1 of 1 on ")]
    [TestCase(0, 2002, "Gave up on ")]
    public void Retry_logs_name_the_extended_code_of_a_stale_snapshot(int retry, int eventId, string start)
    {
        var connectionString = Folder.ConnectionString($"Retry={retry};Base Delay=0.001");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = Build(connectionString);
        using var connection = dataSource.OpenConnection();
        var attempts = 0;

        void ReadThenWrite()
        {
            ConnectionTests.Scalar(connection, "SELECT count(*) FROM t");
            if (++attempts == 1)
            {
                PoolTests.Execute(connectionString, "INSERT INTO t VALUES (-1)"); // another writer commits meanwhile
            }

            ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
        }

        if (retry == 0)
        {
            Should.Throw<SqliteException>(() => connection.RunInTransaction(_ => ReadThenWrite(), deferred: true)).SqliteExtendedErrorCode.ShouldBe(517);
        }
        else
        {
            connection.RunInTransaction(_ => ReadThenWrite(), deferred: true);
        }

        var logged = _logs.GetSnapshot().Where(r => r.Category == "SqliteSaver.Data.Retry").ShouldHaveSingleItem();
        logged.Id.Id.ShouldBe(eventId);
        logged.Message.ShouldStartWith(start);
        logged.Message.ShouldEndWith(" (extended code 517)");
    }

    [Test]
    public void A_lock_wait_that_outlasts_the_CommandTimeout_is_logged_at_warning()
    {
        var connectionString = Folder.ConnectionString("Default Timeout=1;Busy Timeout=5000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = Build(connectionString);
        using var holder = HoldWriteLock();

        using var connection = dataSource.OpenConnection();
        var error = Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)"));

        var warning = _logs.GetSnapshot().Where(r => r.Category == "SqliteSaver.Data.Retry").ShouldHaveSingleItem();
        (warning.Id.Id, warning.Level).ShouldBe((2003, LogLevel.Warning));
        warning.Message.ShouldEndWith(" while it waited for a lock: " + error.Message);
    }

    [Test]
    public void A_pool_timeout_is_logged_at_warning()
    {
        using var dataSource = Build(Folder.ConnectionString("Max Pool Size=1;Pool Timeout=0.05"));
        using var held = dataSource.OpenConnection();

        Should.Throw<TimeoutException>(() => dataSource.OpenConnection());

        var warning = _logs.GetSnapshot().Where(r => r.Level == LogLevel.Warning).ShouldHaveSingleItem();
        warning.Id.Id.ShouldBe(1004);
        warning.Message.ShouldContain("within Pool Timeout=0.05 s: 1 of Max Pool Size=1 are in use");
    }

    [Test]
    public void Checkpoints_are_logged_at_debug()
    {
        using var dataSource = Build(Folder.ConnectionString("Checkpoint Interval=0"));

        dataSource.Checkpoint(CheckpointMode.Truncate);

        var checkpoint = _logs.GetSnapshot().Where(r => r.Category == "SqliteSaver.Data.Checkpoint").ShouldHaveSingleItem();
        checkpoint.Level.ShouldBe(LogLevel.Debug);
        checkpoint.Message.ShouldStartWith("Truncate checkpoint");
    }

    /// <summary>
    /// README: "each checkpoint with its figures (3001)": the frames in the WAL and those checkpointed, as the checkpoint
    /// returned them. A reader's snapshot keeps a PASSIVE checkpoint from copying the frames written after it, so the
    /// two differ.
    /// </summary>
    [Test]
    public void A_checkpoint_is_logged_with_the_figures_it_returned()
    {
        using var dataSource = Build(Folder.ConnectionString("Checkpoint Interval=0;Wal Autocheckpoint=0"));
        using var writer = dataSource.OpenConnection();
        using var reader = dataSource.OpenConnection();
        ConnectionTests.Exec(writer, "CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(10000))");
        using var snapshot = reader.BeginTransaction(deferred: true);
        ConnectionTests.Scalar(reader, "SELECT count(*) FROM t");
        ConnectionTests.Exec(writer, "INSERT INTO t VALUES (randomblob(10000))");

        var result = dataSource.Checkpoint(CheckpointMode.Passive);

        result.CheckpointedFrames.ShouldBeLessThan(result.LogFrames); // the figures differ, so a swap shows
        var checkpoint = _logs.GetSnapshot().Where(r => r.Category == "SqliteSaver.Data.Checkpoint").ShouldHaveSingleItem();
        (checkpoint.Id.Id, checkpoint.Level).ShouldBe((3001, LogLevel.Debug));
        checkpoint.Message.ShouldBe(
            $"Passive checkpoint on {dataSource.Name}: busy={result.Busy}, {result.LogFrames} frames in the WAL, {result.CheckpointedFrames} checkpointed");
        checkpoint.GetStructuredStateValue("LogFrames").ShouldBe($"{result.LogFrames}");
        checkpoint.GetStructuredStateValue("CheckpointedFrames").ShouldBe($"{result.CheckpointedFrames}");
    }

    /// <summary>A TRUNCATE checkpoint that a reader kept busy is logged as busy (a hunt: logging busy=False passed before).</summary>
    [Test]
    public void A_truncate_checkpoint_kept_busy_by_a_reader_is_logged_as_busy()
    {
        using var dataSource = Build(Folder.ConnectionString("Checkpoint Interval=0;Wal Autocheckpoint=0;Busy Timeout=0"));
        using var writer = dataSource.OpenConnection();
        using var reader = dataSource.OpenConnection();
        ConnectionTests.Exec(writer, "CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(10000))");
        using var snapshot = reader.BeginTransaction(deferred: true);
        ConnectionTests.Scalar(reader, "SELECT count(*) FROM t");

        dataSource.Checkpoint(CheckpointMode.Truncate).Busy.ShouldBeTrue();

        var checkpoint = _logs.GetSnapshot().Where(r => r.Category == "SqliteSaver.Data.Checkpoint").Last();
        checkpoint.Message.ShouldStartWith($"Truncate checkpoint on {dataSource.Name}: busy=True, ");
        checkpoint.GetStructuredStateValue("Busy").ShouldBe("True");
    }

    [Test]
    public void A_wal_kept_over_its_limit_by_a_reader_and_checkpoints_that_stay_busy_are_logged_at_warning()
    {
        var time = new FakeTimeProvider();
        var connectionString = Folder.ConnectionString("Checkpoint Interval=1;Journal Size Limit=4096;Wal Autocheckpoint=0");
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseTimeProvider(time).UseLoggerFactory(_loggerFactory).Build();
        using var writer = dataSource.OpenConnection();
        using var reader = dataSource.OpenConnection();
        ConnectionTests.Exec(writer, "CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(100000))");
        using var snapshot = reader.BeginTransaction(deferred: true);
        ConnectionTests.Scalar(reader, "SELECT count(*) FROM t"); // holds the WAL: TRUNCATE comes back busy

        for (var tick = 0; tick < 3; tick++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
        }

        var warnings = _logs.GetSnapshot().Where(r => r.Level == LogLevel.Warning).Select(r => r.Id.Id).ToList();
        warnings.ShouldBe([3003, 3003, 3002, 3003]); // the third busy run in a row, then the WAL still over the limit after it
        _logs.GetSnapshot().Where(r => r.Level == LogLevel.Warning).ShouldAllBe(r => r.Category == "SqliteSaver.Data.Checkpoint"); // as the README's table says
        var overLimit = _logs.GetSnapshot().First(r => r.Id.Id == 3003);
        overLimit.Message.ShouldEndWith("bytes after a TRUNCATE checkpoint, over Journal Size Limit=4096: readers or writers keep it from being reset");
        long.Parse(overLimit.GetStructuredStateValue("WalBytes")!, System.Globalization.CultureInfo.InvariantCulture).ShouldBeGreaterThan(100000L); // the -wal file's size
        _logs.GetSnapshot().Single(r => r.Id.Id == 3002).GetStructuredStateValue("Times").ShouldBe("3"); // a hunt: one more passed before
    }

    [Test]
    public void A_failed_final_checkpoint_of_a_cleared_pool_is_logged_at_warning()
    {
        using var dataSource = Build();
        var connection = dataSource.OpenConnection();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        dataSource.Clear();
        connection.InnerConnection.Close(); // the final TRUNCATE of Checkpoint On Close then fails on it

        connection.Close();

        dataSource.LastCheckpointError.ShouldNotBeNull();
        var warning = _logs.GetSnapshot().Single(r => r.Level == LogLevel.Warning);
        warning.Exception.ShouldBeSameAs(dataSource.LastCheckpointError);
    }

    [Test]
    public void Nothing_reaches_a_logger_whose_level_is_off()
    {
        using var quiet = LoggerFactory.Create(logging => logging.AddProvider(new FakeLoggerProvider(_logs)).SetMinimumLevel(LogLevel.Warning));
        using (var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString()).UseLoggerFactory(quiet).Build())
        {
            dataSource.OpenConnection().Dispose();
            dataSource.Checkpoint();
        }

        _logs.Count.ShouldBe(0);
    }

    /// <summary>
    /// The connections outside the pool, the checkpointer's own and the one that keeps a pooled in-memory database
    /// alive, are logged as closed too.
    /// </summary>
    [TestCase("file")]
    [TestCase("memory")]
    public void Every_physical_connection_logged_as_opened_is_logged_as_closed(string database)
    {
        using (var dataSource = Build(database == "file" ? Folder.ConnectionString("Checkpoint Interval=0") : "Data Source=:memory:"))
        {
            if (database == "file")
            {
                dataSource.Checkpoint(); // the pool has no connection open: the checkpoint connection opens, then closes again
            }

            dataSource.OpenConnection().Dispose();
        }

        var pool = _logs.GetSnapshot().Where(r => r.Category == "SqliteSaver.Data.Pool").ToList();
        var opened = pool.Where(r => r.Id.Id == 1001).Select(r => r.GetStructuredStateValue("ConnectionId")).ToList();
        var closed = pool.Where(r => r.Id.Id is 1002 or 1003 or 1005).Select(r => r.GetStructuredStateValue("ConnectionId")).ToList();
        opened.Count.ShouldBeGreaterThan(1);
        closed.ShouldBe(opened, ignoreOrder: true, customMessage: string.Join(Environment.NewLine, pool.Select(r => r.Message)));
    }

    private SaverDataSource Build(string? connectionString = null)
        => new SaverDataSourceBuilder(connectionString ?? Folder.ConnectionString()).UseLoggerFactory(_loggerFactory).Build();
}
