using System.Globalization;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using SqliteSaver.Data.Tests.Faults;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Wal;

public class CheckpointerTests : DatabaseTest
{
    private string Wal => Folder.File() + "-wal";

    [Test]
    public void Each_mode_follows_SQLites_semantics_on_a_SaverDbConnection()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString("Wal Autocheckpoint=0"));
        connection.Open();
        Fill(connection, 50);

        var full = connection.Checkpoint(CheckpointMode.Full);
        full.Busy.ShouldBeFalse();
        full.CheckpointedFrames.ShouldBe(full.LogFrames);

        connection.Checkpoint(CheckpointMode.Restart).Busy.ShouldBeFalse();
        Fill(connection, 50);
        connection.Checkpoint(CheckpointMode.Truncate).ShouldBe(new CheckpointResult(false, 0, 0));
        new FileInfo(Wal).Length.ShouldBe(0);
    }

    /// <summary>
    /// A reader in a transaction beside the checkpoint: on an old snapshot (rows were written since) RESTART and
    /// TRUNCATE come back busy, as FULL would; on the latest snapshot, which still reads from the WAL, FULL checkpoints
    /// every frame and returns, as it waits only for readers of older snapshots, while RESTART waits for that reader
    /// too and comes back busy. Before the last two cases no test told RESTART from FULL: passing FULL for RESTART
    /// passed every test (a hunt).
    /// </summary>
    [TestCase(CheckpointMode.Restart, true, true)]
    [TestCase(CheckpointMode.Truncate, true, true)]
    [TestCase(CheckpointMode.Full, false, false)]
    [TestCase(CheckpointMode.Restart, false, true)]
    public void A_checkpoint_beside_a_readers_snapshot_waits_for_it_as_its_mode_says(CheckpointMode mode, bool oldSnapshot, bool busy)
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=200;Wal Autocheckpoint=0");
        using var reader = new SaverDbConnection(connectionString);
        using var writer = new SaverDbConnection(connectionString);
        writer.Open();
        Fill(writer, 10);
        reader.Open();
        using var snapshot = reader.BeginTransaction(deferred: true);
        ConnectionTests.Scalar(reader, "SELECT count(*) FROM t");
        if (oldSnapshot)
        {
            Fill(writer, 10);
        }

        var result = writer.Checkpoint(mode);

        result.Busy.ShouldBe(busy);
        if (!busy)
        {
            result.CheckpointedFrames.ShouldBe(result.LogFrames);
        }

        File.Exists(Wal).ShouldBeTrue();
    }

    [Test]
    public void The_data_source_checkpoints_on_a_connection_of_its_own_even_when_the_caller_holds_the_whole_pool()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1;Pool Timeout=1;Wal Autocheckpoint=0"));
        using var held = dataSource.OpenConnection();
        Fill(held, 20);

        var result = dataSource.Checkpoint(CheckpointMode.Truncate);

        result.ShouldBe(new CheckpointResult(false, 0, 0));
        dataSource.LastCheckpointResult.ShouldBe(result);
        dataSource.LastCheckpointTime.ShouldNotBeNull();
        dataSource.Statistics.Total.ShouldBe(1);
        Should.Throw<ArgumentOutOfRangeException>(() => dataSource.Checkpoint((CheckpointMode)9));
    }

    /// <summary>
    /// The checkpoint connection's busy timeout is one step, not the pool's Busy Timeout, from its opening on, and again
    /// after the TRUNCATE for a <c>-wal</c> file past the limit, which tries without the busy handler. Before, one left
    /// at 0 after that TRUNCATE passed every test (a hunt).
    /// </summary>
    [Test]
    public void The_checkpoint_connection_waits_for_readers_and_writers_at_most_one_short_step()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Busy Timeout=5000;Checkpoint Interval=1;Wal Autocheckpoint=0;Journal Size Limit=65536"))
            .UseTimeProvider(time).Build();
        using var rented = dataSource.OpenConnection(); // while the pool has none open, the checkpoint's connection closes after use
        dataSource.Checkpoint();
        CheckpointConnectionBusyTimeout(dataSource).ShouldBe((int)Data.Wal.Checkpointer.StepTimeout.TotalMilliseconds);

        Fill(rented, 100);
        time.Advance(TimeSpan.FromSeconds(1)); // past the limit: a TRUNCATE
        new FileInfo(Wal).Length.ShouldBe(0);

        CheckpointConnectionBusyTimeout(dataSource).ShouldBe((int)Data.Wal.Checkpointer.StepTimeout.TotalMilliseconds);
    }

    /// <summary>
    /// A Busy Timeout shorter than a step is the checkpoint connection's too: a step is its most, not its least. Before
    /// a test, giving that connection a whole step whatever the Busy Timeout passed every test (a hunt).
    /// </summary>
    [Test]
    public void The_checkpoint_connection_waits_no_longer_than_a_Busy_Timeout_shorter_than_a_step()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Busy Timeout=100;Wal Autocheckpoint=0"));
        using var rented = dataSource.OpenConnection(); // while the pool has none open, the checkpoint's connection closes after use

        dataSource.Checkpoint();

        CheckpointConnectionBusyTimeout(dataSource).ShouldBe(100);
    }

    /// <summary>The busy timeout of the data source's checkpoint connection, which must be open.</summary>
    private static int CheckpointConnectionBusyTimeout(SaverDataSource dataSource)
    {
        var own = typeof(Data.Wal.Checkpointer).GetField("_connection", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!;
        var physical = (Data.Pooling.PhysicalConnection)own.GetValue(dataSource.Checkpointer)!;
        SQLitePCL.raw.sqlite3_prepare_v2(physical.Handle, "PRAGMA busy_timeout", out var statement).ShouldBe(0);
        using (statement)
        {
            SQLitePCL.raw.sqlite3_step(statement).ShouldBe(SQLitePCL.raw.SQLITE_ROW);
            return SQLitePCL.raw.sqlite3_column_int(statement, 0);
        }
    }

    [Test]
    public async Task CheckpointAsync_with_a_token_alone_runs_a_passive_checkpoint()
    {
        await using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Wal Autocheckpoint=0"));
        await using var connection = await dataSource.OpenConnectionAsync();
        Fill(connection, 20);

        await Should.ThrowAsync<OperationCanceledException>(() => dataSource.CheckpointAsync(new CancellationToken(true)));
        await Should.ThrowAsync<OperationCanceledException>(() => connection.CheckpointAsync(new CancellationToken(true)));
        var passive = await dataSource.CheckpointAsync(CancellationToken.None);

        passive.LogFrames.ShouldBeGreaterThan(0);
        passive.ShouldBe(new CheckpointResult(false, passive.LogFrames, passive.LogFrames));
        (await connection.CheckpointAsync(CancellationToken.None)).ShouldBe(passive);
    }

    [Test]
    public void Checkpoint_and_wal_status_need_an_open_undisposed_connection_and_data_source()
    {
        var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        connection.Dispose();
        var dataSource = SaverDataSource.Create(Folder.ConnectionString());
        dataSource.Dispose();

        Should.Throw<InvalidOperationException>(() => connection.Checkpoint());
        Should.Throw<InvalidOperationException>(() => connection.GetWalStatus());
        Should.Throw<ObjectDisposedException>(() => dataSource.Checkpoint());
        Should.Throw<ObjectDisposedException>(() => dataSource.GetWalStatus());
    }

    [Test]
    public void Checkpoints_and_wal_status_reads_racing_disposal_with_a_connection_rented_throw_only_ObjectDisposedException()
    {
        // Disposal clears the pool before it stops the checkpointer: a call between the two met a pool whose only open
        // connection (the rented one) counted as cleared, and threw the InvalidOperationException for that.
        var unexpected = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        for (var round = 0; round < 30; round++)
        {
            var dataSource = SaverDataSource.Create(Folder.ConnectionString());
            using var rented = dataSource.OpenConnection();
            var calls = 0;
            var threads = new Func<object>[] { () => dataSource.Checkpoint(), () => dataSource.GetWalStatus() }.Select(call => new Thread(() =>
            {
                while (true)
                {
                    try
                    {
                        call();
                        Interlocked.Increment(ref calls);
                    }
                    catch (ObjectDisposedException)
                    {
                        return;
                    }
                    catch (Exception exception)
                    {
                        unexpected.Add(exception);
                        return;
                    }
                }
            })).ToList();
            threads.ForEach(thread => thread.Start());
            Wait.Until(() => Volatile.Read(ref calls) > 20);

            dataSource.Dispose();

            threads.ForEach(thread => thread.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue());
        }

        unexpected.ShouldBeEmpty();
    }

    /// <summary>
    /// A checkpoint that passed the data source's disposal check and then waited for the checkpointer (another
    /// checkpoint kept it: here the test holds its lock) while the data source was disposed throws
    /// ObjectDisposedException once it gets it: it opens no connection after disposal. Before a test, dropping the
    /// checkpointer's own check passed every test (a hunt): the checkpoint opened a connection to the file and ran.
    /// </summary>
    [Test]
    public void A_checkpoint_that_waited_for_the_checkpointer_across_disposal_opens_nothing_and_throws_ObjectDisposedException()
    {
        var dataSource = SaverDataSource.Create(Folder.ConnectionString());
        dataSource.OpenConnection().Dispose(); // the file exists, in WAL mode
        var checkpointerLock = (Lock)typeof(Data.Wal.Checkpointer).GetField("_lock", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!
            .GetValue(dataSource.Checkpointer)!;
        Exception? thrown = null;
        CheckpointResult? result = null;
        var checkpoint = new Thread(() =>
        {
            try
            {
                result = dataSource.Checkpoint();
            }
            catch (Exception exception)
            {
                thrown = exception;
            }
        });

        checkpointerLock.Enter();
        try
        {
            checkpoint.Start();
            Wait.Until(() => (checkpoint.ThreadState & ThreadState.WaitSleepJoin) != 0); // waiting for the lock, past the data source's check
            dataSource.Dispose(); // on this thread, which holds the lock
        }
        finally
        {
            checkpointerLock.Exit();
        }

        checkpoint.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        result.ShouldBeNull();
        thrown.ShouldBeOfType<ObjectDisposedException>().ObjectName.ShouldBe(typeof(SaverDataSource).FullName);
    }

    [Test]
    public async Task Wal_status_reports_the_journal_mode_the_wal_size_and_its_frames()
    {
        await using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Wal Autocheckpoint=0"));
        await using var connection = await dataSource.OpenConnectionAsync();
        Fill(connection, 200); // 171 frames at least: with fewer, their 24-byte headers add up to less than a page

        var status = connection.GetWalStatus();

        status.JournalMode.ShouldBe("wal");
        status.WalFileBytes.ShouldBe(new FileInfo(Wal).Length);
        status.WalFrames.ShouldBe((status.WalFileBytes - 32) / (4096 + 24));
        status.WalFrames.ShouldBeGreaterThan(170);
        dataSource.GetWalStatus().ShouldBe(status);

        await dataSource.CheckpointAsync(CheckpointMode.Truncate);
        dataSource.GetWalStatus().ShouldBe(new WalStatus("wal", 0, 0));

        using var rollback = new SaverDbConnection(Folder.ConnectionString("Journal Mode=Delete", "rollback.db"));
        rollback.Open();
        rollback.GetWalStatus().ShouldBe(new WalStatus("delete", 0, 0));
        using var closed = new SqliteConnection("Data Source=:memory:");
        Should.Throw<InvalidOperationException>(() => closed.GetWalStatus());
    }

    [Test]
    public void The_background_checkpointer_runs_every_interval_on_the_data_sources_clock()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=10;Wal Autocheckpoint=0"))
            .UseTimeProvider(time).Build();
        using var connection = dataSource.OpenConnection();
        Fill(connection, 20);

        time.Advance(TimeSpan.FromSeconds(9));
        dataSource.LastCheckpointResult.ShouldBeNull();
        time.Advance(TimeSpan.FromSeconds(1));

        dataSource.Checkpointer.BackgroundRuns.ShouldBe(1);
        var result = dataSource.LastCheckpointResult!.Value;
        result.Busy.ShouldBeFalse();
        result.LogFrames.ShouldBeGreaterThan(0);
        result.CheckpointedFrames.ShouldBe(result.LogFrames);
        dataSource.LastCheckpointTime.ShouldBe(time.GetUtcNow());
        File.Exists(Wal).ShouldBeTrue(); // PASSIVE does not truncate
    }

    [Test]
    public void A_Checkpoint_Interval_under_a_millisecond_keeps_the_system_timer_running()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Checkpoint Interval=0.0005"));
        using var connection = dataSource.OpenConnection();
        Fill(connection, 5);

        Wait.Until(() => dataSource.Checkpointer.BackgroundRuns >= 3); // a period of 0 would fire once and stop
    }

    [Test]
    public void Every_quarter_of_Wal_Autocheckpoint_pages_written_a_passive_catch_up_checkpoint_runs_in_the_background()
    {
        var time = new FakeTimeProvider(); // never advanced: the interval never passes, so only catch-ups run
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Wal Autocheckpoint=400"))
            .UseTimeProvider(time).Build();
        using var connection = dataSource.OpenConnection();
        Fill(connection, 10); // 11 commits of a page or two each: far short of a quarter of 400 pages
        dataSource.Checkpointer.CatchUps.ShouldBe(0);

        // One commit of 120 rows that take a page each: a quarter of 400 pages at once, which counting commits missed.
        ConnectionTests.Exec(connection, """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120)
            INSERT INTO t (payload) SELECT randomblob(4000) FROM n
            """);

        dataSource.Checkpointer.CatchUps.ShouldBe(1);
        Wait.Until(() => dataSource.LastCheckpointResult is not null);
        var result = dataSource.LastCheckpointResult!.Value;
        result.Busy.ShouldBeFalse();
        result.LogFrames.ShouldBeInRange(120, 399); // below 400: SQLite's own automatic checkpoint has not run
        result.CheckpointedFrames.ShouldBe(result.LogFrames);
        dataSource.Checkpointer.BackgroundRuns.ShouldBe(0);
    }

    [Test]
    public void A_catch_up_for_a_connection_rented_before_a_clear_never_opens_the_file_and_none_is_left_open()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Wal Autocheckpoint=256;Checkpoint On Close=false"))
            .UseTimeProvider(time).Build();
        var rented = dataSource.OpenConnection();
        dataSource.Clear();

        Fill(rented, 63); // 64 commits write 64 pages or more and queue a catch-up
        dataSource.Checkpointer.CatchUps.ShouldBeGreaterThan(0);
        Wait.Until(() => !dataSource.Checkpointer.CatchUpPending);

        dataSource.LastCheckpointResult.ShouldBeNull(); // the file at the path may be a replacement by now
        rented.Dispose();
        OpenFiles.Count(Folder.File()).ShouldBe(0);
    }

    [Test]
    public void Without_a_background_checkpointer_no_catch_up_runs()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Wal Autocheckpoint=400;Checkpoint Interval=0"));
        using var connection = dataSource.OpenConnection();
        Fill(connection, 200);

        dataSource.Checkpointer.CatchUps.ShouldBe(0); // 200 commits write more than the 100 pages that would queue one
    }

    /// <summary>
    /// A catch-up is queued by the commit that brings the pages written since the last one to a quarter of Wal
    /// Autocheckpoint (64 at least), not a page later, and the count starts over with it (see
    /// <see cref="CreateOneRowTable"/>: a page per commit). Before, a catch-up queued a page late, one at every commit
    /// once the first was queued, or one every quarter of a small Wal Autocheckpoint passed every test (a hunt).
    /// </summary>
    [TestCase(256)] // a quarter: 64 pages
    [TestCase(100)] // a quarter is 25 pages: 64, the fewest between catch-ups
    public void A_catch_up_is_queued_every_64_pages_exactly_for_a_Wal_Autocheckpoint_of(int walAutocheckpoint)
    {
        CreateOneRowTable();
        var time = new FakeTimeProvider(); // never advanced: only catch-ups run
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString($"Wal Autocheckpoint={walAutocheckpoint}"))
            .UseTimeProvider(time).Build();
        using var connection = dataSource.OpenConnection();
        for (var catchUps = 1; catchUps <= 2; catchUps++)
        {
            Update(connection, 63);
            dataSource.Checkpointer.CatchUps.ShouldBe(catchUps - 1);
            Update(connection, 1);
            dataSource.Checkpointer.CatchUps.ShouldBe(catchUps);
            Wait.Until(() => !dataSource.Checkpointer.CatchUpPending);
        }
    }

    /// <summary>
    /// A database the library does not keep in WAL mode gets neither background checkpoints nor catch-ups, though
    /// its commits write pages all the same. Before, a timer for one passed every test (a hunt).
    /// </summary>
    [Test]
    public void A_database_not_in_WAL_mode_gets_no_background_checkpoint_nor_catch_up()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Journal Mode=Delete;Checkpoint Interval=1;Wal Autocheckpoint=256"))
            .UseTimeProvider(time).Build();
        using var connection = dataSource.OpenConnection();
        Fill(connection, 100); // 100 commits: more than the 64 pages that queue a catch-up in WAL mode

        time.Advance(TimeSpan.FromSeconds(3));

        dataSource.Checkpointer.CatchUps.ShouldBe(0);
        dataSource.Checkpointer.BackgroundRuns.ShouldBe(0);
        dataSource.LastCheckpointResult.ShouldBeNull();
    }

    [Test]
    public void A_wal_past_Journal_Size_Limit_gets_a_truncate_checkpoint()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=1;Wal Autocheckpoint=0;Journal Size Limit=65536"))
            .UseTimeProvider(time).Build();
        using var connection = dataSource.OpenConnection();
        Fill(connection, 100);
        new FileInfo(Wal).Length.ShouldBeGreaterThan(65536);

        time.Advance(TimeSpan.FromSeconds(1));

        new FileInfo(Wal).Length.ShouldBe(0);
        dataSource.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
    }

    [Test]
    public void Checkpoint_On_Close_waits_within_its_step_for_another_processs_checkpoint_instead_of_leaving_the_wal_full()
    {
        var connectionString = Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=0");
        var dataSource = SaverDataSource.GetShared(connectionString);
        using var rented = new SaverDbConnection(connectionString);
        rented.Open();
        ConnectionTests.Exec(rented, "CREATE TABLE t (x)");
        for (var i = 0; i < 20; i++)
        {
            ConnectionTests.Exec(rented, "INSERT INTO t VALUES (randomblob(1000))");
        }

        // Another process, without this library, keeps the file open and runs a FULL checkpoint, as any process's
        // automatic checkpoint or another data source's background one may be doing when this pool drains. It holds
        // SQLite's checkpoint lock while it waits (in its busy handler) for the write lock this connection holds.
        using var other = WorkerProcess.Sql(Folder.File());
        other.Run("SELECT count(*) FROM t").ShouldBe("ok 20");
        other.Run("PRAGMA busy_timeout = 20000").ShouldStartWith("ok");
        using var transaction = rented.BeginTransaction();
        ConnectionTests.Exec(rented, "INSERT INTO t VALUES (1)");
        int checkpoint;
        do
        {
            // The other process's checkpoint runs once SQLite answers ours busy with -1 frames. Ours may have held the
            // checkpoint lock as the other one began, which SQLite then answers busy at once: it is sent again.
            checkpoint = other.Send("PRAGMA wal_checkpoint(FULL)");
            Wait.Until(() => other.Answered(checkpoint) || dataSource.Checkpoint() is { Busy: true, LogFrames: -1 });
        }
        while (other.Answered(checkpoint));

        new FileInfo(Wal).Length.ShouldBeGreaterThan(0);

        // The pool drains: closing its last connection rolls its transaction back, and the other process's checkpoint
        // gets the write lock, copies the few frames and ends within milliseconds (at most one of its 100 ms sleeps),
        // well inside the 250 ms step the final TRUNCATE may wait.
        SaverDbConnection.ClearAllPools();
        rented.Close();
        other.Answer(checkpoint).ShouldBe("ok 0"); // the other process's FULL checkpoint succeeded meanwhile

        // SQLite answers a second checkpoint with SQLITE_BUSY at once, without calling the busy handler: the final
        // TRUNCATE waits for the other one itself, within its step, rather than leave the drained pool's WAL full.
        dataSource.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
        new FileInfo(Wal).Length.ShouldBe(0);
    }

    [Test]
    public void The_truncate_for_a_wal_past_the_limit_and_the_final_one_copy_the_wal_back_first_without_the_write_lock()
    {
        var time = new FakeTimeProvider();
        var provider = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(provider).SetMinimumLevel(LogLevel.Debug));
        var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=1;Wal Autocheckpoint=0;Journal Size Limit=65536"))
            .UseTimeProvider(time).UseLoggerFactory(loggerFactory).Build();
        using (var connection = dataSource.OpenConnection())
        {
            Fill(connection, 100);
            time.Advance(TimeSpan.FromSeconds(1)); // past the limit
            Fill(connection, 100);
        }

        dataSource.Dispose(); // Checkpoint On Close

        // SQLite's TRUNCATE takes the write lock, other processes' writers' too, before it copies: a PASSIVE checkpoint
        // first copies the WAL back while they go on, leaving it only the frames written since.
        var checkpoints = provider.Collector.GetSnapshot().Where(r => r.Category == "SqliteSaver.Data.Checkpoint").ToList();
        checkpoints.Select(r => r.GetStructuredStateValue("Mode")).ShouldBe(["Passive", "Truncate", "Passive", "Truncate"]);
        foreach (var passive in checkpoints.Where(r => r.GetStructuredStateValue("Mode") == "Passive"))
        {
            var frames = int.Parse(passive.GetStructuredStateValue("LogFrames")!, CultureInfo.InvariantCulture);
            frames.ShouldBeGreaterThan(0);
            passive.GetStructuredStateValue("CheckpointedFrames").ShouldBe(passive.GetStructuredStateValue("LogFrames"));
        }
    }

    /// <summary>
    /// The TRUNCATE for a <c>-wal</c> file past the limit holds this process's writers at the write gate while it runs
    /// (its log record is written before it leaves the gate), and leaves the gate after. Not entering the gate passed
    /// every test before (a hunt).
    /// </summary>
    [Test]
    public void The_truncate_for_a_wal_past_the_limit_runs_with_the_write_gate_held()
    {
        var time = new FakeTimeProvider();
        SaverDataSource? dataSource = null;
        var gateHeld = new List<bool>();
        using var loggerFactory = LoggerFactory.Create(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(new HookLoggerProvider((id, message) =>
        {
            if (id == 3001 && message.StartsWith("Truncate", StringComparison.Ordinal))
            {
                gateHeld.Add(dataSource!.Executor.Gate!.IsHeld);
            }
        })));
        dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=1;Wal Autocheckpoint=0;Journal Size Limit=65536"))
            .UseTimeProvider(time).UseLoggerFactory(loggerFactory).Build();
        using (dataSource)
        {
            using var connection = dataSource.OpenConnection();
            Fill(connection, 100);

            time.Advance(TimeSpan.FromSeconds(1));

            dataSource.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
            gateHeld.ShouldBe([true]);
            dataSource.Executor.Gate!.IsHeld.ShouldBeFalse();
        }
    }

    [Test]
    public async Task An_on_demand_checkpoint_waits_at_most_one_step_for_a_background_one_and_then_comes_back_busy()
    {
        var time = new FakeTimeProvider();
        using var release = new ManualResetEventSlim();
        var opened = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=1"))
            .UseTimeProvider(time)
            .UseConnectionInitializer(_ =>
            {
                if (Interlocked.Increment(ref opened) == 2)
                {
                    release.Wait(); // the checkpointer's own connection, opened by the tick under its lock, stays held up
                }
            })
            .Build();
        using var connection = dataSource.OpenConnection();
        Fill(connection, 10);
        var tick = Task.Run(() => time.Advance(TimeSpan.FromSeconds(1)));
        Wait.Until(() => Volatile.Read(ref opened) == 2);

        var onDemand = Task.Run(() => dataSource.CheckpointAsync(CheckpointMode.Passive));
        var finished = onDemand.Wait(TimeSpan.FromSeconds(10));
        release.Set();
        await tick;

        finished.ShouldBeTrue("the on-demand checkpoint waited for the background one to end");
        (await onDemand).ShouldBe(new CheckpointResult(true, -1, -1)); // as SQLite answers while another checkpoint runs
    }

    /// <summary>
    /// A checkpointer that stays busy (a reader keeps an old snapshot) skips 1, then 3, then 7 ticks between tries, and
    /// no more; once the reader has ended, its next try succeeds and it runs at every tick again. Before, only the first
    /// skipped tick was checked: a backoff capped at one skipped tick passed (a hunt).
    /// </summary>
    [Test]
    public void A_busy_checkpointer_backs_off_1_then_3_then_7_ticks_and_comes_back()
    {
        var time = new FakeTimeProvider();
        using var dataSource = BehindAnOldSnapshot(time, "", out var writer, out var reader, out var snapshot);
        using var closeWriter = writer;
        using var closeReader = reader;

        var runs = new List<int>();
        for (var tick = 1; tick <= 23; tick++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            runs.Add(dataSource.Checkpointer.BackgroundRuns);
        }

        // Tries at ticks 1, 3, 7, 15 and 23: each busy, as the reader keeps its snapshot.
        runs.ShouldBe([1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 5]);
        dataSource.LastCheckpointResult!.Value.Busy.ShouldBeTrue();

        snapshot.Dispose();
        time.Advance(TimeSpan.FromSeconds(7)); // ticks 24 to 30: skipped
        dataSource.Checkpointer.BackgroundRuns.ShouldBe(5);
        time.Advance(TimeSpan.FromSeconds(1));
        dataSource.Checkpointer.BackgroundRuns.ShouldBe(6);
        dataSource.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
        time.Advance(TimeSpan.FromSeconds(1));
        dataSource.Checkpointer.BackgroundRuns.ShouldBe(7);
    }

    /// <summary>
    /// A <c>-wal</c> file past Journal Size Limit is truncated at the next tick even while a busy checkpointer backs
    /// off: the bound comes first. Before, a backoff that skipped that tick too passed every test (a hunt).
    /// </summary>
    [Test]
    public void A_busy_checkpointer_backing_off_truncates_a_wal_past_Journal_Size_Limit_at_the_next_tick()
    {
        var time = new FakeTimeProvider();
        using var dataSource = BehindAnOldSnapshot(time, "Journal Size Limit=1048576", out var writer, out var reader, out var snapshot);
        using var closeWriter = writer;
        using var closeReader = reader;
        time.Advance(TimeSpan.FromSeconds(1));
        dataSource.LastCheckpointResult!.Value.Busy.ShouldBeTrue(); // so the next tick is skipped
        snapshot.Dispose();
        Fill(writer, 600);
        new FileInfo(Wal).Length.ShouldBeGreaterThan(1048576);

        time.Advance(TimeSpan.FromSeconds(1));

        dataSource.Checkpointer.BackgroundRuns.ShouldBe(2);
        new FileInfo(Wal).Length.ShouldBe(0);
    }

    /// <summary>
    /// A <c>-wal</c> file of exactly Journal Size Limit bytes is within it: the tick runs a checkpoint in Checkpoint Mode
    /// (PASSIVE), which leaves the file as it is; a frame more and it gets a TRUNCATE. A limit of 0 lets no frame stay.
    /// Each update of the one-row table writes one page, a frame of 4096 + 24 bytes after the file's 32. Before, a limit
    /// taken as reached at its size, or a limit of 0 taken for none, passed every test (a hunt); so did a warning that
    /// the WAL stays over the limit for a TRUNCATE that left it at exactly the limit (0 bytes for a limit of 0).
    /// </summary>
    [TestCase(3)]
    [TestCase(0)]
    public void A_wal_of_exactly_Journal_Size_Limit_bytes_is_within_it_of_frames(int frames)
    {
        var limit = frames == 0 ? 0 : 32 + (frames * (4096 + 24));
        CreateOneRowTable();
        var time = new FakeTimeProvider();
        var provider = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(provider).SetMinimumLevel(LogLevel.Debug));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString($"Checkpoint Interval=1;Wal Autocheckpoint=0;Journal Size Limit={limit}"))
            .UseTimeProvider(time).UseLoggerFactory(loggerFactory).Build();
        using var connection = dataSource.OpenConnection();
        Update(connection, frames);
        connection.GetWalStatus().WalFileBytes.ShouldBe(limit);

        time.Advance(TimeSpan.FromSeconds(1));

        dataSource.LastCheckpointResult.ShouldBe(new CheckpointResult(false, frames, frames));
        connection.GetWalStatus().WalFileBytes.ShouldBe(limit);
        Update(connection, frames + 1); // every frame was copied back: SQLite writes the file again from its start
        time.Advance(TimeSpan.FromSeconds(1));
        dataSource.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
        connection.GetWalStatus().WalFileBytes.ShouldBe(0);
        provider.Collector.GetSnapshot().Where(r => r.Level >= LogLevel.Warning).ShouldBeEmpty();
    }

    [Test]
    public void The_checkpointer_leaves_a_cleared_pool_alone()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=1;Checkpoint On Close=false"))
            .UseTimeProvider(time).Build();
        using (var connection = dataSource.OpenConnection())
        {
            Fill(connection, 5);
        }

        dataSource.Clear();
        foreach (var file in Directory.GetFiles(Folder.Path))
        {
            File.Delete(file);
        }

        time.Advance(TimeSpan.FromSeconds(5));

        Directory.GetFiles(Folder.Path).ShouldBeEmpty();
        dataSource.Checkpointer.BackgroundRuns.ShouldBe(0);
    }

    [Test]
    public void Checkpoint_On_Close_truncates_the_wal_once_the_last_connection_of_a_cleared_pool_closes()
    {
        // Another connection to the file (as another process would have) keeps SQLite from checkpointing and
        // deleting the -wal file itself when the pool's last connection closes.
        using var other = OtherConnection();
        var connectionString = Folder.ConnectionString("Wal Autocheckpoint=0");
        using (var connection = new SaverDbConnection(connectionString))
        {
            Fill(connection, 20);
        }

        var rented = new SaverDbConnection(connectionString);
        rented.Open();

        SaverDbConnection.ClearAllPools();
        new FileInfo(Wal).Length.ShouldBeGreaterThan(0);
        rented.Close();

        new FileInfo(Wal).Length.ShouldBe(0);
        other.Dispose();
        OpenFiles.Count(Folder.File()).ShouldBe(0); // the checkpoint's own connection was closed too
    }

    /// <summary>
    /// With two idle connections the Clear closes both, and the pool is empty only once the second has closed: the
    /// checkpointer's own connection stays open for the final TRUNCATE until then (a hunt's mutation told the
    /// checkpointer the pool was empty as the first closed, which closed its connection, and the TRUNCATE ran on the
    /// pool's shared-cache connection, refused beside the reader).
    /// </summary>
    [Test]
    public void Checkpoint_On_Close_of_a_shared_cache_pool_truncates_the_wal_while_a_reader_data_source_shares_the_cache([Values(1, 2)] int idle)
    {
        // The README's advice: readers get a data source of their own. With Cache=Shared both share SQLite's cache.
        using var writers = SaverDataSource.Create(Folder.ConnectionString("Cache=Shared;Wal Autocheckpoint=0;Checkpoint Interval=0"));
        using var readers = SaverDataSource.Create(Folder.ConnectionString("Cache=Shared;Checkpoint Interval=0;Checkpoint On Close=false"));
        var opened = Enumerable.Range(0, idle).Select(_ => writers.OpenConnection()).ToList();
        Fill(opened[0], 20);
        opened.ForEach(connection => connection.Dispose());

        var copied = writers.Checkpoint(CheckpointMode.Passive); // every frame copied back: a reader from now on needs none
        copied.CheckpointedFrames.ShouldBe(copied.LogFrames);
        using var reader = readers.OpenConnection();
        using var snapshot = reader.BeginTransaction(deferred: true);
        ConnectionTests.Scalar(reader, "SELECT count(*) FROM t").ShouldBe(20L);

        writers.Clear(); // the pool's last connection closes: the final TRUNCATE of Checkpoint On Close

        // With Cache=Private in both data sources this TRUNCATE succeeds (the reader reads from the database file
        // only); on the pool's shared-cache connection SQLite refuses it with SQLITE_LOCKED, as the README says it
        // does for the checkpointer's own connection, which therefore always opens with a private cache.
        writers.LastCheckpointError.ShouldBeNull();
        writers.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
        new FileInfo(Wal).Length.ShouldBe(0);
    }

    [Test]
    public void Checkpoint_On_Close_waits_for_a_reader_at_most_one_short_step_not_the_pools_Busy_Timeout()
    {
        using var other = OtherConnection();
        var connectionString = Folder.ConnectionString("Busy Timeout=20000;Wal Autocheckpoint=0;Checkpoint Interval=0");
        var rented = new SaverDbConnection(connectionString);
        Fill(rented, 5);
        using var snapshot = other.BeginTransaction(deferred: true);
        using (var read = other.CreateCommand())
        {
            read.Transaction = snapshot;
            read.CommandText = "SELECT count(*) FROM t";
            read.ExecuteScalar(); // a snapshot that the frames written next are not in
        }

        Fill(rented, 5);
        rented.Open();
        SaverDbConnection.ClearAllPools();

        var closing = System.Diagnostics.Stopwatch.StartNew();
        rented.Close(); // the final TRUNCATE waits for the reader, holding other processes' writers back meanwhile

        closing.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10)); // not the 20 s of Busy Timeout
        SaverDataSource.GetShared(connectionString).LastCheckpointResult.ShouldNotBeNull().Busy.ShouldBeTrue();
    }

    [Test]
    public void A_second_clear_keeps_the_final_checkpoint_pending()
    {
        using var other = OtherConnection();
        var connectionString = Folder.ConnectionString("Wal Autocheckpoint=0");
        var rented = new SaverDbConnection(connectionString);
        Fill(rented, 20);

        SaverDbConnection.ClearAllPools();
        SaverDbConnection.ClearAllPools();
        rented.Close();

        new FileInfo(Wal).Length.ShouldBe(0);
    }

    [Test]
    public async Task A_failed_open_that_frees_a_cleared_pools_last_slot_runs_the_final_checkpoint_and_leaves_no_file_open()
    {
        using var other = OtherConnection();
        using var dataSource = FailingNextOpen(Folder.ConnectionString("Wal Autocheckpoint=0"), out var failNext);
        var first = dataSource.OpenConnection();
        Fill(first, 20);
        var fail = await failNext(); // a second physical connection: the first is rented
        first.Dispose();
        dataSource.Clear(); // closes the first; the one opening holds the pool's last slot
        dataSource.GetWalStatus().WalFrames.ShouldBeGreaterThan(0); // opens the checkpointer's connection, kept while a slot is taken

        (await Should.ThrowAsync<Exception>(fail())).ToString().ShouldContain("the initializer failed");

        new FileInfo(Wal).Length.ShouldBe(0);
        other.Dispose();
        OpenFiles.Count(Folder.File()).ShouldBe(0);
    }

    /// <summary>
    /// The pool's only connection is still opening when the pool is cleared: it opens in the cleared generation, and
    /// the final checkpoint the Clear could not run waits for it, running when it closes on return. Under a hunt's
    /// mutation nothing made that checkpoint pending, and the wal was left as it was.
    /// </summary>
    [Test]
    public async Task A_connection_that_opened_across_a_Clear_runs_the_final_checkpoint_when_it_closes()
    {
        using var other = OtherConnection(); // keeps the wal file when the pool's last connection closes
        using var dataSource = FailingNextOpen(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=0"), out var openNext, succeed: true);
        var finishOpening = await openNext(); // the pool's only connection, waiting in its initializer
        dataSource.Clear();
        var opened = await (Task<SaverDbConnection>)finishOpening();
        Fill(opened, 20);
        new FileInfo(Wal).Length.ShouldBeGreaterThan(0);

        opened.Dispose(); // closed on return (cleared): the pool's last connection

        dataSource.LastCheckpointTime.ShouldNotBeNull();
        new FileInfo(Wal).Length.ShouldBe(0);
    }

    [Test]
    public async Task A_failed_open_that_frees_the_pools_last_slot_closes_the_checkpointers_connection()
    {
        using var dataSource = FailingNextOpen(Folder.ConnectionString(), out var failNext);
        var fail = await failNext();
        dataSource.GetWalStatus(); // opens the checkpointer's connection, kept while a slot is taken

        (await Should.ThrowAsync<Exception>(fail())).ToString().ShouldContain("the initializer failed");

        OpenFiles.Count(Folder.File()).ShouldBe(0);
    }

    /// <summary>
    /// Clear or Dispose while the checkpoint connection opens for an on-demand checkpoint and waits (here in the
    /// connection initializer, as its PRAGMAs wait on a database another process has locked: each attempt up to Busy
    /// Timeout). They end the opening and return; the checkpoint throws, saying why. Before, they waited for the
    /// lock the opening held, until it ended on its own (2.9 s with Busy Timeout=1000 and Retry=2 in a review's probe).
    /// After Dispose the checkpoint throws ObjectDisposedException, as any call racing it does. Also with a pooled
    /// connection idle, whose closing runs the pool's last-close step under that lock: Dispose ended the opening only
    /// after it, when the checkpointer's own Dispose did, and passed every test that way (a hunt's mutation).
    /// </summary>
    [TestCase("Clear", typeof(InvalidOperationException), "The data source's pool was cleared, or the data source disposed, while its checkpoint connection opened: nothing was read or checkpointed.")]
    [TestCase("Dispose", typeof(ObjectDisposedException), null)]
    [TestCase("Dispose", typeof(ObjectDisposedException), null, true)]
    public async Task Clear_and_Dispose_end_the_checkpoint_connections_opening_rather_than_wait_for_it(string end, Type thrown, string? message, bool pooledConnectionIdle = false)
    {
        using var dataSource = HoldingCheckpointerOpening(Folder.ConnectionString(), out var checkpointWhileOpening);
        if (pooledConnectionIdle)
        {
            dataSource.OpenConnection().Dispose();
        }

        var checkpoint = await checkpointWhileOpening();

        var ending = Task.Run(end == "Clear" ? dataSource.Clear : dataSource.Dispose);

        (await Task.WhenAny(ending, Task.Delay(TimeSpan.FromSeconds(20))) == ending).ShouldBeTrue($"{end} waited for the opening");
        await ending;
        var error = await Should.ThrowAsync<InvalidOperationException>(checkpoint);
        error.ShouldBeOfType(thrown);
        if (error is ObjectDisposedException disposed)
        {
            disposed.ObjectName.ShouldBe(typeof(SaverDataSource).FullName); // the runtime's own message may be translated
        }
        else
        {
            error.Message.ShouldBe(message);
        }
    }

    /// <summary>
    /// Dispose also ends an opening of the checkpoint connection that began after the data source's own stop of
    /// openings: here a WAL status read that waited for the checkpointer (the test held its lock) and got it while the
    /// pool was being disposed (from the log of a connection closing then). The opening, waiting in the connection
    /// initializer, is ended rather than waited for, and the read throws ObjectDisposedException. Before a test, the
    /// checkpointer's Dispose not ending it passed every test (a hunt): Dispose waited for the initializer's own bound.
    /// </summary>
    [Test]
    public void Dispose_ends_a_checkpoint_connection_opening_that_began_while_the_pool_was_being_disposed()
    {
        var testThread = Environment.CurrentManagedThreadId;
        var entered = new SemaphoreSlim(0);
        var hold = 0;
        var armed = 0;
        var initializerCancelled = false;
        var openingSeen = false;
        Lock? checkpointerLock = null;
        var logs = FakeLogCollector.Create(new FakeLogCollectorOptions
        {
            OutputSink = _ =>
            {
                if (Environment.CurrentManagedThreadId != testThread || Volatile.Read(ref armed) == 0)
                {
                    return;
                }

                checkpointerLock!.Exit();
                if (checkpointerLock.IsHeldByCurrentThread)
                {
                    checkpointerLock.Enter(); // inside the pool's last-close step, which takes the lock too
                    return;
                }

                Volatile.Write(ref armed, 0);
                openingSeen = entered.Wait(TimeSpan.FromSeconds(30));
            },
        });
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(new FakeLoggerProvider(logs)).SetMinimumLevel(LogLevel.Trace));
        var dataSource = new SaverDataSourceBuilder($"Data Source=memory-{Guid.NewGuid():N};Mode=Memory;Cache=Shared")
            .UseLoggerFactory(loggerFactory)
            .UseConnectionInitializer(async (_, cancellationToken) =>
            {
                if (Interlocked.Exchange(ref hold, 0) == 1)
                {
                    entered.Release();
                    try
                    {
                        await Task.Delay(TimeSpan.FromSeconds(10), cancellationToken); // bounded, so that a failing test ends
                    }
                    catch (OperationCanceledException)
                    {
                        initializerCancelled = true;
                        throw;
                    }
                }
            })
            .Build();
        dataSource.OpenConnection().Dispose(); // the pool keeps the database open, idle
        checkpointerLock = (Lock)typeof(Data.Wal.Checkpointer).GetField("_lock", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!
            .GetValue(dataSource.Checkpointer)!;
        Exception? thrown = null;
        var status = new Thread(() =>
        {
            try
            {
                dataSource.GetWalStatus();
            }
            catch (Exception exception)
            {
                thrown = exception;
            }
        });
        using (var warm = SaverDataSource.Create($"Data Source=memory-{Guid.NewGuid():N};Mode=Memory;Cache=Shared"))
        {
            warm.GetWalStatus(); // compiled: below, the read's thread waits for nothing but the lock
        }

        Volatile.Write(ref hold, 1);

        checkpointerLock.Enter();
        try
        {
            status.Start();
            Wait.Until(() => (status.ThreadState & ThreadState.WaitSleepJoin) != 0); // waiting for the lock, past the data source's check
            Volatile.Write(ref armed, 1);
            dataSource.Dispose(); // on this thread: the log sink lets the lock go while the pool closes its connections
        }
        finally
        {
            if (Interlocked.Exchange(ref armed, 0) == 1)
            {
                checkpointerLock.Exit();
            }
        }

        status.Join(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        $"opening seen {openingSeen}, initializer cancelled {initializerCancelled}".ShouldBe("opening seen True, initializer cancelled True");
        thrown.ShouldBeOfType<ObjectDisposedException>();
    }

    /// <summary>
    /// The WAL status of a database in rollback-journal mode, read while an on-demand checkpoint keeps the checkpoint
    /// connection (opening it, here) past 250 ms: it comes from the -wal file's size, in the journal mode the
    /// connection last found. Before, it said "wal" (a review of the checkpointer).
    /// </summary>
    [Test]
    public async Task A_status_read_while_a_checkpoint_keeps_the_connection_says_the_journal_mode_the_connection_found()
    {
        using var dataSource = HoldingCheckpointerOpening(Folder.ConnectionString("Journal Mode=Delete"), out var checkpointWhileOpening);
        dataSource.GetWalStatus().JournalMode.ShouldBe("delete"); // opens the connection, and closes it again: the pool has none open
        var checkpoint = await checkpointWhileOpening();

        var status = dataSource.GetWalStatus();

        $"{status.JournalMode} {status.WalFileBytes}".ShouldBe("delete 0");
        dataSource.Dispose();
        await Should.ThrowAsync<InvalidOperationException>(checkpoint);
    }

    /// <summary>
    /// A status read after a Clear, while only a connection rented before it is open, comes from the -wal file's size
    /// in the journal mode the checkpoint connection last found, not the one it opened in: here the renter switched
    /// the database to WAL after. Keeping the journal mode found at the opening passed every test before (a hunt).
    /// </summary>
    [Test]
    public void A_status_read_after_a_Clear_with_a_renter_out_says_the_journal_mode_the_checkpoint_connection_last_found()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Journal Mode=Delete;Checkpoint Interval=0;Checkpoint On Close=false")).Build();
        using var renter = dataSource.OpenConnection();
        dataSource.GetWalStatus().JournalMode.ShouldBe("delete"); // opens the checkpoint connection, kept open for the renter
        ConnectionTests.Exec(renter, "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        dataSource.GetWalStatus().JournalMode.ShouldBe("wal");

        dataSource.Clear(); // closes the checkpoint connection; the renter's keeps the files

        var status = dataSource.GetWalStatus();
        $"{status.JournalMode} {status.WalFrames > 0}".ShouldBe("wal True");
    }

    /// <summary>
    /// After a Clear, a checkpoint connection opened beside a connection opened since stays open while a connection
    /// rented before the Clear is out, and checkpoints go on on it once only that one is open: the refusal is for
    /// opening a connection then. Refusing with the connection open passed every test before (a hunt).
    /// </summary>
    [Test]
    public void After_a_Clear_a_checkpoint_connection_still_open_checkpoints_while_only_a_connection_rented_before_it_is_open()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0;Checkpoint On Close=false")).Build();
        using var old = dataSource.OpenConnection();
        ConnectionTests.Exec(old, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        dataSource.Clear();
        using (var fresh = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(fresh, "CREATE TEMP TABLE mine (x)"); // closed on return, not kept idle
            dataSource.Checkpoint().Busy.ShouldBeFalse(); // opens the checkpoint connection
        }

        ConnectionTests.Exec(old, "INSERT INTO t VALUES (2)");

        var result = dataSource.Checkpoint();
        (result.Busy, result.LogFrames > 0, result.CheckpointedFrames == result.LogFrames).ShouldBe((false, true, true));
    }

    /// <summary>
    /// A connection rented before a Clear is no longer the pool's once its return has closed it: a checkpoint or a
    /// status read then opens the checkpoint connection, rather than refuse as though it were still out (a hunt's
    /// mutation left the closed connection among the pool's).
    /// </summary>
    [Test]
    public void After_a_Clear_a_checkpoint_runs_once_the_connections_rented_before_it_came_back()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0;Checkpoint On Close=false")).Build();
        using (var old = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(old, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
            dataSource.Clear();
        }

        dataSource.Checkpoint().Busy.ShouldBeFalse();
        dataSource.GetWalStatus().JournalMode.ShouldBe("wal");
    }

    /// <summary>
    /// After a Clear with a renter out, a connection a renter is opening reads the file at the path as the checkpoint
    /// connection would: a checkpoint then runs rather than refuse as though only the old renter's connection were
    /// open (a hunt's mutation left out the openings under way).
    /// </summary>
    [Test]
    public async Task After_a_Clear_a_checkpoint_runs_while_a_renters_connection_opens()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var hold = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0;Checkpoint On Close=false"))
            .UseConnectionInitializer((_, _) =>
            {
                if (Interlocked.Exchange(ref hold, 0) == 1)
                {
                    entered.SetResult();
                    return release.Task;
                }

                return Task.CompletedTask;
            })
            .Build();
        try
        {
            using var old = dataSource.OpenConnection();
            ConnectionTests.Exec(old, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
            dataSource.Clear();
            Volatile.Write(ref hold, 1);
            var opening = dataSource.OpenConnectionAsync().AsTask();
            await entered.Task.WaitAsync(TimeSpan.FromSeconds(30));

            dataSource.Checkpoint().Busy.ShouldBeFalse();

            release.SetResult();
            await using var opened = await opening;
        }
        finally
        {
            release.TrySetResult(); // lets the opening end
        }
    }

    /// <summary>
    /// The health check's status read, on a database another connection keeps locked (EXCLUSIVE, in rollback-journal
    /// mode) while the checkpoint connection opens: its token ends the opening's wait for the lock. Before, the read
    /// took no token, and the health check's thread-pool thread stayed blocked for Busy Timeout per attempt after the
    /// check had timed out (a user's trial: probes of 1.5-2.4 s against a 1 s timeout, and threads piling up).
    /// </summary>
    [Test]
    public async Task A_status_read_for_the_health_check_ends_its_wait_for_the_checkpoint_connection_with_its_token()
    {
        var connectionString = Folder.ConnectionString("Journal Mode=Delete;Busy Timeout=60000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        SaverDbConnection.ClearAllPools();
        using var dataSource = SaverDataSource.Create(connectionString);
        using var locker = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        locker.Open();
        using (var exclusive = locker.CreateCommand())
        {
            exclusive.CommandText = "BEGIN EXCLUSIVE";
            exclusive.ExecuteNonQuery();
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        var status = Task.Run(() => dataSource.GetWalStatus(timeout.Token));

        (await Task.WhenAny(status, Task.Delay(TimeSpan.FromSeconds(20))) == status).ShouldBeTrue("the read waited for the lock past its token");
        await Should.ThrowAsync<OperationCanceledException>(status);
    }

    /// <summary>
    /// The health check's status read that finds another call opening the checkpoint connection for the first time (no
    /// <c>-wal</c> file to answer from yet) waits for it only as long as its token lets it. Before, a wait that did not
    /// look at the token passed every test (a hunt).
    /// </summary>
    [Test]
    public async Task A_status_read_for_the_health_check_ends_its_wait_for_another_calls_opening_with_its_token()
    {
        using var dataSource = HoldingCheckpointerOpening(Folder.ConnectionString(), out var checkpointWhileOpening);
        var checkpoint = await checkpointWhileOpening();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

        var status = Task.Run(() => dataSource.GetWalStatus(timeout.Token));

        (await Task.WhenAny(status, Task.Delay(TimeSpan.FromSeconds(20))) == status).ShouldBeTrue("the read waited for the other call's opening past its token");
        await Should.ThrowAsync<OperationCanceledException>(status);
        dataSource.Dispose();
        await Should.ThrowAsync<InvalidOperationException>(checkpoint);
    }

    /// <summary>
    /// A pool never cleared, whose one slot a closing connection hands to a caller queued for it, which has not begun
    /// to open yet: a checkpoint runs. A first version of the refusal for a cleared pool (see MovedFileTests) took that
    /// slot for a cleared pool's renter and refused it (a review: 200 times in 200).
    /// </summary>
    [Test]
    public async Task A_checkpoint_runs_on_a_pool_never_cleared_while_a_waiter_takes_a_freed_slot()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Pooling=false;Max Pool Size=1"));
        var first = dataSource.OpenConnection();
        ConnectionTests.Exec(first, "CREATE TABLE t (x)");
        for (var i = 0; i < 20; i++) // the waiter's open begins on the thread pool: it may come first
        {
            var waiting = dataSource.OpenConnectionAsync().AsTask();
            Wait.Until(() => dataSource.Statistics.Waiting == 1);
            first.Dispose(); // its slot goes to the waiter

            Should.NotThrow(() => dataSource.Checkpoint(), $"try {i}");

            first = await waiting.WaitAsync(TimeSpan.FromSeconds(30));
        }

        first.Dispose();
    }

    /// <summary>
    /// The connection initializer fails with a cancellation of its own (a call of its that timed out) as the checkpoint
    /// connection opens, with no Clear or Dispose: an on-demand checkpoint throws it (CheckpointAsync's task faults with
    /// it, as its own token was not cancelled), and a background one records it. A first version of StopOpening took
    /// any cancellation for one of its own (a review); a CheckpointAsync that took it for the caller's passed every
    /// test (a hunt).
    /// </summary>
    [Test]
    public async Task An_initializers_own_cancellation_surfaces_from_the_checkpoint_connections_opening()
    {
        var time = new FakeTimeProvider();
        var fail = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=1"))
            .UseTimeProvider(time)
            .UseConnectionInitializer(_ =>
            {
                if (Volatile.Read(ref fail) == 1)
                {
                    throw new TaskCanceledException("the key vault call timed out");
                }
            })
            .Build();
        using var connection = dataSource.OpenConnection();
        Volatile.Write(ref fail, 1);

        Should.Throw<TaskCanceledException>(() => dataSource.Checkpoint()).Message.ShouldBe("the key vault call timed out");
        using var live = new CancellationTokenSource();
        var checkpoint = dataSource.CheckpointAsync(live.Token);
        (await Should.ThrowAsync<TaskCanceledException>(checkpoint)).Message.ShouldBe("the key vault call timed out");
        checkpoint.IsFaulted.ShouldBeTrue();
        time.Advance(TimeSpan.FromSeconds(1));
        dataSource.LastCheckpointError.ShouldBeOfType<TaskCanceledException>();
    }

    [Test]
    public void The_final_checkpoint_never_creates_a_database_deleted_meanwhile()
    {
        var connectionString = Folder.ConnectionString("Wal Autocheckpoint=0");
        var rented = new SaverDbConnection(connectionString);
        Fill(rented, 5);

        SaverDbConnection.ClearAllPools();
        foreach (var file in Directory.GetFiles(Folder.Path))
        {
            File.Delete(file);
        }

        rented.Close();

        Directory.GetFiles(Folder.Path).ShouldBeEmpty();
    }

    /// <summary>
    /// A catch-up that fails (its checkpoint connection's opening, here) is recorded and logged at warning, as a tick's
    /// failure is. Before, a catch-up's failure left unlogged passed every test (a hunt).
    /// </summary>
    [Test]
    public void A_failing_catch_up_is_recorded_and_logged()
    {
        var armed = 0;
        var provider = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(provider));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=3600;Wal Autocheckpoint=256"))
            .UseConnectionInitializer(_ =>
            {
                if (Volatile.Read(ref armed) == 1)
                {
                    throw new InvalidOperationException("initializer failure"); // the checkpoint connection is opening
                }
            })
            .UseLoggerFactory(loggerFactory).Build();
        using var connection = dataSource.OpenConnection();
        Volatile.Write(ref armed, 1);

        Fill(connection, 70); // 70 commits write more than the 64 pages that queue a catch-up
        Wait.Until(() => dataSource.Checkpointer.CatchUps > 0 && !dataSource.Checkpointer.CatchUpPending);

        dataSource.LastCheckpointError.ShouldNotBeNull();
        var failures = provider.Collector.GetSnapshot().Where(r => r.Id.Id == 3004).ToList();
        failures.Count.ShouldBe(dataSource.Checkpointer.CatchUps); // each catch-up failed
        failures[^1].Exception.ShouldBeSameAs(dataSource.LastCheckpointError);
    }

    /// <summary>
    /// A background checkpoint that fails is recorded and logged at warning, and the next one that succeeds, at a tick
    /// or a catch-up, clears the error. Before, a catch-up that left the error, or a tick's failure left unlogged,
    /// passed every test (hunts).
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public void A_failing_background_checkpoint_is_recorded_not_thrown(bool catchUpNext)
    {
        var time = new FakeTimeProvider();
        var strategy = new SwitchableStrategy();
        var provider = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(provider));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=1;Wal Autocheckpoint=256"))
            .UseTimeProvider(time).UseRetryStrategy(strategy).UseLoggerFactory(loggerFactory).Build();
        using var connection = dataSource.OpenConnection();
        strategy.Fail = true; // the checkpointer's own connection opens through the strategy, and now fails

        time.Advance(TimeSpan.FromSeconds(1));

        dataSource.LastCheckpointError.ShouldBeOfType<InvalidOperationException>();
        provider.Collector.GetSnapshot().Where(r => r.Id.Id == 3004).ShouldHaveSingleItem().Exception.ShouldBeSameAs(dataSource.LastCheckpointError);
        strategy.Fail = false;
        if (catchUpNext)
        {
            Fill(connection, 70); // 70 commits write more than the 64 pages that queue a catch-up
            Wait.Until(() => dataSource.Checkpointer.CatchUps > 0 && !dataSource.Checkpointer.CatchUpPending);
        }
        else
        {
            time.Advance(TimeSpan.FromSeconds(1));
        }

        dataSource.LastCheckpointError.ShouldBeNull();
        dataSource.LastCheckpointResult.ShouldNotBeNull();
    }

    [Test]
    public void Checkpoint_On_Close_truncates_the_wal_when_idle_pruning_closes_the_pools_last_connection()
    {
        using var other = OtherConnection();
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Wal Autocheckpoint=0;Connection Idle Lifetime=1;Checkpoint Interval=0"))
            .UseTimeProvider(time).Build();
        using (var connection = dataSource.OpenConnection())
        {
            Fill(connection, 20);
        }

        new FileInfo(Wal).Length.ShouldBeGreaterThan(40_000);
        time.Advance(TimeSpan.FromSeconds(1)); // idle pruning closes the pool's only connection

        dataSource.Statistics.Total.ShouldBe(0);
        new FileInfo(Wal).Length.ShouldBe(0);
        dataSource.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
    }

    [Test]
    public void Without_pooling_the_last_close_truncates_the_wal_and_leaves_no_file_open_after_a_background_checkpoint()
    {
        using var other = OtherConnection();
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Pooling=false;Checkpoint Interval=1;Wal Autocheckpoint=0"))
            .UseTimeProvider(time).Build();
        using (var connection = dataSource.OpenConnection())
        {
            Fill(connection, 20);
            time.Advance(TimeSpan.FromSeconds(1)); // a background checkpoint opens the checkpointer's own connection
            dataSource.Checkpointer.BackgroundRuns.ShouldBe(1);
            Fill(connection, 20);
        }

        new FileInfo(Wal).Length.ShouldBe(0);
        other.Dispose();
        OpenFiles.Count(Folder.File()).ShouldBe(0); // "every Close closes", the checkpointer's connection too
    }

    /// <summary>
    /// Without pooling every Close drains the pool, and its TRUNCATE waited up to 250 ms for another connection's
    /// reader, holding the write lock meanwhile: each Close stalled, and every other writer (of any process) with it (a
    /// multi-process hunt). It is tried once now: a writer that waits at most 100 ms is never refused.
    /// </summary>
    [Test]
    public void Without_pooling_a_close_beside_a_reader_does_not_hold_other_writers_back()
    {
        var connectionString = Folder.ConnectionString("Pooling=false;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var reader = OtherConnection();
        CheckpointTests.Plain(reader, "BEGIN; SELECT count(*) FROM t");
        using var writer = OtherConnection();
        CheckpointTests.Plain(writer, "PRAGMA busy_timeout = 100");
        using var closed = new CancellationTokenSource();
        var refusals = 0;
        var writes = Task.Factory.StartNew(
            () =>
            {
                var count = 0;
                while (!closed.IsCancellationRequested)
                {
                    // SQLite's own answer, without Microsoft.Data.Sqlite's loop that retries SQLITE_BUSY for 30 s.
                    var result = SQLitePCL.raw.sqlite3_exec(writer.Handle, "INSERT INTO t VALUES (2)");
                    (count, refusals) = result == SQLitePCL.raw.SQLITE_BUSY ? (count, refusals + 1) : (count + 1, refusals);
                    result.ShouldBeOneOf(SQLitePCL.raw.SQLITE_OK, SQLitePCL.raw.SQLITE_BUSY);
                }

                return count;
            },
            TaskCreationOptions.LongRunning);

        for (var i = 0; i < 5; i++)
        {
            using var connection = new SaverDbConnection(connectionString);
            connection.Open();
            ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
        }

        closed.Cancel();
        writes.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        writes.Result.ShouldBeGreaterThan(0);
        refusals.ShouldBe(0);
    }

    [Test]
    public void Without_pooling_a_database_replaced_after_the_last_close_is_the_one_the_checkpointer_bounds()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Pooling=false;Checkpoint Interval=1;Wal Autocheckpoint=0;Journal Size Limit=65536"))
            .UseTimeProvider(time).Build();
        using (var connection = dataSource.OpenConnection())
        {
            Fill(connection, 5);
            time.Advance(TimeSpan.FromSeconds(1));
        }

        foreach (var file in Directory.GetFiles(Folder.Path))
        {
            File.Delete(file); // every connection is closed, so the application may delete the database
        }

        using var fresh = dataSource.OpenConnection();
        Fill(fresh, 100);
        new FileInfo(Wal).Length.ShouldBeGreaterThan(65536);

        time.Advance(TimeSpan.FromSeconds(1)); // past Journal Size Limit: a TRUNCATE checkpoint, on the new file

        new FileInfo(Wal).Length.ShouldBeLessThanOrEqualTo(65536);
        dataSource.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
    }

    [Test]
    public void An_on_demand_checkpoint_or_wal_status_while_no_connection_is_open_leaves_no_file_open()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Checkpoint Interval=0"));
        using (var connection = dataSource.OpenConnection())
        {
            Fill(connection, 5);
        }

        dataSource.Clear();
        dataSource.Checkpoint(CheckpointMode.Truncate).Busy.ShouldBeFalse();
        dataSource.GetWalStatus().JournalMode.ShouldBe("wal");

        OpenFiles.Count(Folder.File()).ShouldBe(0);
    }

    [TestCase("Cache=Shared")]
    [TestCase("Cache=Private")]
    [TestCase("uri")]
    public void Checkpoints_copy_the_wal_while_a_pooled_reader_shares_the_cache(string cache)
    {
        var time = new FakeTimeProvider();
        var connectionString = cache == "uri"
            ? $"Data Source=file:{Folder.File()}?cache=shared;Wal Autocheckpoint=0;Checkpoint Interval=1"
            : Folder.ConnectionString(cache + ";Wal Autocheckpoint=0;Checkpoint Interval=1");
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseTimeProvider(time).Build();
        using var writer = dataSource.OpenConnection();
        Fill(writer, 20);
        using var reader = dataSource.OpenConnection();
        using var snapshot = reader.BeginTransaction(deferred: true);
        ConnectionTests.Scalar(reader, "SELECT count(*) FROM t"); // the latest snapshot: it holds no frame back

        time.Advance(TimeSpan.FromSeconds(1)); // a background checkpoint
        var onDemand = dataSource.Checkpoint(CheckpointMode.Passive);

        dataSource.LastCheckpointError.ShouldBeNull(); // not SQLITE_LOCKED from the shared cache
        dataSource.Checkpointer.BackgroundRuns.ShouldBe(1);
        onDemand.Busy.ShouldBeFalse();
        onDemand.CheckpointedFrames.ShouldBe(onDemand.LogFrames);
        onDemand.LogFrames.ShouldBeGreaterThan(0);
    }

    [Test]
    public void Without_Checkpoint_On_Close_the_wal_is_left_as_it_is()
    {
        using var other = OtherConnection();
        var connectionString = Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint On Close=false");
        using (var connection = new SaverDbConnection(connectionString))
        {
            Fill(connection, 20);
        }

        SaverDbConnection.ClearAllPools();

        new FileInfo(Wal).Length.ShouldBeGreaterThan(40_000);
    }

    [Test]
    public void A_background_checkpoint_never_copies_the_old_wal_into_a_file_that_replaced_a_cleared_pools_database()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=1;Wal Autocheckpoint=0"))
            .UseTimeProvider(time).Build();
        var rented = dataSource.OpenConnection();
        Fill(rented, 20); // frames in the -wal file, not yet copied into the database file

        var backup = Folder.File("backup.db");
        using (var plain = new SqliteConnection($"Data Source={backup};Pooling=False"))
        {
            plain.Open();
            using var create = plain.CreateCommand();
            create.CommandText = "PRAGMA journal_mode = WAL; CREATE TABLE kept (id INTEGER PRIMARY KEY); INSERT INTO kept VALUES (1), (2), (3);";
            create.ExecuteNonQuery();
        }

        dataSource.Clear(); // the README's safe order: clear the pool, then replace the file
        File.Move(backup, Folder.File(), overwrite: true);
        time.Advance(TimeSpan.FromSeconds(1)); // the connection rented before the clear is still out
        rented.Dispose(); // the pool's last connection: the final TRUNCATE empties the old -wal file

        using var check = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        check.Open();
        using var read = check.CreateCommand();
        read.CommandText = "PRAGMA integrity_check";
        read.ExecuteScalar().ShouldBe("ok");
        read.CommandText = "SELECT count(*) FROM kept";
        read.ExecuteScalar().ShouldBe(3L);
    }

    [Test]
    public void A_final_checkpoint_that_succeeds_clears_the_error_of_a_failed_background_one()
    {
        var time = new FakeTimeProvider();
        var strategy = new SwitchableStrategy();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=1;Wal Autocheckpoint=0"))
            .UseTimeProvider(time).UseRetryStrategy(strategy).Build();
        using (var connection = dataSource.OpenConnection())
        {
            Fill(connection, 5);
            strategy.Fail = true; // the checkpointer's own connection opens through the strategy, and now fails
            time.Advance(TimeSpan.FromSeconds(1));
            dataSource.LastCheckpointError.ShouldNotBeNull();
            strategy.Fail = false;
        }

        dataSource.Clear(); // the final TRUNCATE of Checkpoint On Close runs on the pool's last connection, and succeeds

        dataSource.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
        dataSource.LastCheckpointError.ShouldBeNull(); // "cleared by the next background one that succeeds"
    }

    /// <summary>
    /// The checkpoint connection that Clear or Dispose closes while a renter keeps the pool open is logged as closed for
    /// that reason, not as the one that closes with the pool's last connection (a hunt's mutation passed every test).
    /// </summary>
    [TestCase("Clear", "the pool was cleared")]
    [TestCase("Dispose", "the data source was disposed")]
    public void The_checkpoint_connection_closed_by_Clear_or_Dispose_is_logged_with_that_reason(string end, string reason)
    {
        var provider = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(provider).SetMinimumLevel(LogLevel.Debug));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0")).UseLoggerFactory(loggerFactory).Build();
        using var renter = dataSource.OpenConnection(); // keeps the checkpoint connection open after the checkpoint
        dataSource.Checkpoint();

        if (end == "Clear")
        {
            dataSource.Clear();
        }
        else
        {
            dataSource.Dispose();
        }

        var closed = provider.Collector.GetSnapshot().Where(r => r.Id.Id == 1002).ToList();
        closed.ShouldHaveSingleItem().Message.ShouldEndWith(": " + reason);
    }

    /// <summary>
    /// The final checkpoint a Clear left pending runs once, on the pool's last connection, whether idle pruning or its
    /// return after the Clear closes it; a connection closed later for its TEMP table is no drain. Under a hunt's
    /// mutation the return path left the drain pending, and ran a second TRUNCATE then. So too after a Clear that ran
    /// the final checkpoint itself, on the idle last connection (another hunt's mutation left that drain pending).
    /// </summary>
    [Test]
    public void After_a_pending_final_checkpoint_ran_a_connection_closed_for_its_temp_table_runs_none([Values("return", "idle pruning", "the Clear")] string drainedBy)
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Connection Idle Lifetime=1;Checkpoint Interval=0;Wal Autocheckpoint=0"))
            .UseTimeProvider(time).Build();
        var rented = dataSource.OpenConnection();
        Fill(rented, 5);
        if (drainedBy == "the Clear")
        {
            rented.Dispose(); // kept idle
            dataSource.Clear(); // closes the pool's last connection: the final checkpoint runs at once
        }
        else
        {
            dataSource.Clear(); // the final checkpoint waits for the rented connection
            if (drainedBy == "idle pruning")
            {
                using (var fresh = dataSource.OpenConnection())
                {
                    Fill(fresh, 5); // opened since the clear, then kept idle
                }

                rented.Dispose(); // closed, but the idle one is still open
                time.Advance(TimeSpan.FromSeconds(1)); // idle pruning closes the pool's last connection: the final checkpoint runs
            }
            else
            {
                rented.Dispose(); // the pool's last connection, closed on return: the final checkpoint runs
            }
        }

        dataSource.Statistics.Total.ShouldBe(0);
        var drainedAt = dataSource.LastCheckpointTime.ShouldNotBeNull();

        time.Advance(TimeSpan.FromSeconds(10));
        using (var temp = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(temp, "CREATE TEMP TABLE scratch (x)"); // closed on return, not reset: no drain
        }

        dataSource.Statistics.Total.ShouldBe(0);
        dataSource.LastCheckpointTime.ShouldBe(drainedAt); // no second TRUNCATE for a drain already done
    }

    /// <summary>
    /// A Clear while no connection is open has none to run the final checkpoint on, and leaves none pending: a
    /// connection closed later for its TEMP table is no drain (a hunt's mutation left it pending, and a TRUNCATE ran then).
    /// </summary>
    [Test]
    public void A_Clear_while_no_connection_is_open_leaves_no_final_checkpoint_pending()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0;Wal Autocheckpoint=0")).Build();
        using (var first = dataSource.OpenConnection())
        {
            Fill(first, 5);
            ConnectionTests.Exec(first, "CREATE TEMP TABLE scratch (x)"); // closed on return, not reset: the pool is empty
        }

        dataSource.Clear();
        using (var temp = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(temp, "CREATE TEMP TABLE scratch (x)"); // closed on return, not reset: no drain
        }

        dataSource.Statistics.Total.ShouldBe(0);
        dataSource.LastCheckpointTime.ShouldBeNull();
    }

    /// <summary>
    /// A data source whose connection initializer fails the open <paramref name="failNext"/> starts: that returns
    /// once the initializer runs, with a function that lets the initializer fail and returns the open's task. With
    /// <paramref name="succeed"/>, the initializer lets the open succeed instead.
    /// </summary>
    internal static SaverDataSource FailingNextOpen(string connectionString, out Func<Task<Func<Task>>> failNext, bool succeed = false)
    {
        var entered = new SemaphoreSlim(0);
        var release = new SemaphoreSlim(0);
        var fail = 0;
        var dataSource = new SaverDataSourceBuilder(connectionString)
            .UseConnectionInitializer(async (_, cancellationToken) =>
            {
                if (Interlocked.Exchange(ref fail, 0) == 1)
                {
                    entered.Release();
                    await release.WaitAsync(cancellationToken);
                    if (!succeed)
                    {
                        throw new InvalidOperationException("the initializer failed");
                    }
                }
            })
            .Build();
        failNext = async () =>
        {
            Volatile.Write(ref fail, 1);
            var opening = dataSource.OpenConnectionAsync().AsTask();
            (await entered.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBeTrue();
            return () =>
            {
                release.Release();
                return opening;
            };
        };
        return dataSource;
    }

    /// <summary>
    /// A data source whose checkpoint connection, once <paramref name="checkpointWhileOpening"/> is called, opens for an
    /// on-demand checkpoint and waits in its initializer until its token ends the wait (30 s at most); the call returns the
    /// checkpoint's task once the opening waits.
    /// </summary>
    private static SaverDataSource HoldingCheckpointerOpening(string connectionString, out Func<Task<Task>> checkpointWhileOpening)
    {
        var entered = new SemaphoreSlim(0);
        var hold = 0;
        var dataSource = new SaverDataSourceBuilder(connectionString)
            .UseConnectionInitializer(async (_, cancellationToken) =>
            {
                if (Interlocked.Exchange(ref hold, 0) == 1)
                {
                    entered.Release();
                    await Task.Delay(TimeSpan.FromSeconds(30), cancellationToken); // bounded, so that a failing test ends
                }
            })
            .Build();
        checkpointWhileOpening = async () =>
        {
            Volatile.Write(ref hold, 1);
            var checkpoint = Task.Run(() => dataSource.Checkpoint());
            (await entered.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBeTrue();
            return checkpoint;
        };
        return dataSource;
    }

    private SqliteConnection OtherConnection()
    {
        var other = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        other.Open();
        using var command = other.CreateCommand();
        command.CommandText = "PRAGMA journal_mode = WAL; SELECT count(*) FROM sqlite_master;"; // the read opens the WAL index
        command.ExecuteNonQuery();
        return other;
    }

    /// <summary>
    /// A data source on <paramref name="time"/> whose TRUNCATE checkpoints (Checkpoint Mode=Truncate, at every
    /// second) come back busy: <paramref name="reader"/>'s <paramref name="snapshot"/> is older than the rows
    /// <paramref name="writer"/> wrote since.
    /// </summary>
    private SaverDataSource BehindAnOldSnapshot(FakeTimeProvider time, string options, out SaverDbConnection writer, out SaverDbConnection reader, out SaverDbTransaction snapshot)
    {
        var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString($"Checkpoint Interval=1;Checkpoint Mode=Truncate;Wal Autocheckpoint=0;Busy Timeout=10;{options}"))
            .UseTimeProvider(time).Build();
        writer = dataSource.OpenConnection();
        reader = dataSource.OpenConnection();
        Fill(writer, 10);
        snapshot = reader.BeginTransaction(deferred: true);
        ConnectionTests.Scalar(reader, "SELECT count(*) FROM t");
        Fill(writer, 10);
        return dataSource;
    }

    /// <summary>
    /// Creates the folder's test.db in WAL mode with a one-row table t (x), without the data source, so that its pages
    /// count for no catch-up: each <see cref="Update"/> then writes one page.
    /// </summary>
    private void CreateOneRowTable()
    {
        using var setup = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        setup.Open();
        using var create = setup.CreateCommand();
        create.CommandText = "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (0)";
        create.ExecuteNonQuery();
    }

    /// <summary>Commits <paramref name="commits"/> updates of <see cref="CreateOneRowTable"/>'s row, a page each.</summary>
    private static void Update(SaverDbConnection connection, int commits)
    {
        for (var i = 0; i < commits; i++)
        {
            ConnectionTests.Exec(connection, "UPDATE t SET x = x + 1");
        }
    }

    private sealed class SwitchableStrategy : SaverRetryStrategy
    {
        public bool Fail { get; set; }

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
            => Fail ? throw new InvalidOperationException("strategy failure") : attempt(state, cancellationToken);

        public override ValueTask<TResult> ExecuteAsync<TState, TResult>(Func<TState, CancellationToken, ValueTask<TResult>> attempt, TState state, CancellationToken cancellationToken)
            => Fail ? throw new InvalidOperationException("strategy failure") : attempt(state, cancellationToken);
    }

    internal static void Fill(SaverDbConnection connection, int rows)
    {
        if (connection.State != System.Data.ConnectionState.Open)
        {
            connection.Open();
        }

        ConnectionTests.Exec(connection, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, payload BLOB)");
        for (var i = 0; i < rows; i++)
        {
            ConnectionTests.Exec(connection, "INSERT INTO t (payload) VALUES (randomblob(2000))");
        }
    }

    /// <summary>
    /// An on-demand Checkpoint while the pool has no connection open closes the checkpointer's own connection again
    /// after use, also while the pool's last connection is still closing (its slot still taken). A slow close is stood
    /// for by a slow logger of the close.
    /// </summary>
    [Test]
    public void A_checkpoint_while_the_last_connection_closes_does_not_leave_the_checkpoint_connection_open()
    {
        using var closing = new ManualResetEventSlim();
        using var checkpointed = new ManualResetEventSlim();
        using var loggerFactory = LoggerFactory.Create(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(new HookLoggerProvider((id, _) =>
        {
            if (id == 1003) // the pool's connection that could not be reset is closed, its slot not yet freed
            {
                closing.Set();
                checkpointed.Wait(TimeSpan.FromSeconds(10));
            }
        })));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0")).UseLoggerFactory(loggerFactory).Build();
        using (var setup = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(setup, "CREATE TABLE t (x)");
        }

        var holder = dataSource.OpenConnection();
        var transaction = holder.InnerConnection.BeginTransaction(deferred: true); // cannot be reset: closed on return
        Exception? failure = null;
        var checkpointer = new Thread(() =>
        {
            try
            {
                closing.Wait(TimeSpan.FromSeconds(10)).ShouldBeTrue();
                dataSource.Checkpoint();
            }
            catch (Exception exception)
            {
                failure = exception;
            }
            finally
            {
                checkpointed.Set();
            }
        });
        checkpointer.Start();

        holder.Dispose();
        checkpointer.Join();
        GC.KeepAlive(transaction);

        failure.ShouldBeNull();
        dataSource.Statistics.Total.ShouldBe(0);
        OpenFiles.Count(Folder.File()).ShouldBe(0, "the checkpointer's own connection stayed open while the pool has none open");
    }

    /// <summary>
    /// Without pooling a renter's Close drains the pool, and its connection is closed unreset: a transaction begun on
    /// InnerConnection, which the renter's Close does not know of, is still open as Checkpoint On Close runs its
    /// TRUNCATE on that connection, where SQLite would refuse it (SQLITE_LOCKED). It is rolled back first, and the
    /// TRUNCATE empties the WAL. Before a test, dropping that rollback passed every test (a hunt).
    /// </summary>
    [Test]
    public void Without_pooling_the_final_truncate_rolls_back_a_transaction_the_renter_left_on_InnerConnection_first()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Pooling=false;Checkpoint Interval=0;Wal Autocheckpoint=0"));
        using (var connection = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
            var transaction = connection.InnerConnection.BeginTransaction(); // never disposed
            using var insert = connection.InnerConnection.CreateCommand();
            insert.Transaction = transaction;
            insert.CommandText = "INSERT INTO t VALUES (2)";
            insert.ExecuteNonQuery();
        }

        dataSource.LastCheckpointError.ShouldBeNull();
        dataSource.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
        PoolTests.Scalar(Folder.ConnectionString(), "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    /// <summary>
    /// After a Clear, the pool's last connection empties the old -wal file as it closes, though another Open waits
    /// for its slot (Max Pool Size=1): that waiter may leave before the slot is free (its Pool Timeout passes, or the
    /// data source is disposed), and then no connection would be left to run it on. A slow close is stood for by a
    /// slow logger of the close.
    /// </summary>
    [TestCase("waiter times out")]
    [TestCase("data source disposed")]
    public void The_final_truncate_runs_when_a_waiter_leaves_while_the_last_connection_closes(string how)
    {
        var timesOut = how == "waiter times out";
        var armed = 0;
        using var closing = new ManualResetEventSlim();
        using var waiterGone = new ManualResetEventSlim();
        using var loggerFactory = LoggerFactory.Create(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(new HookLoggerProvider((id, message) =>
        {
            // The connection rented across the Clear is closed on return, its slot not yet freed.
            if (id == 1002 && message.Contains("the pool was cleared", StringComparison.Ordinal) && Interlocked.Exchange(ref armed, 0) == 1)
            {
                closing.Set();
                waiterGone.Wait(TimeSpan.FromSeconds(10));
            }
        })));
        var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString($"Max Pool Size=1;Pool Timeout={(timesOut ? "0.5" : "30")};Checkpoint Interval=0;Wal Autocheckpoint=0"))
            .UseLoggerFactory(loggerFactory)
            .Build();
        try
        {
            // Another process keeps the database open, so SQLite's own checkpoint on close does not run.
            using var other = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
            other.Open();
            using (var read = other.CreateCommand())
            {
                read.CommandText = "PRAGMA journal_mode = WAL; SELECT count(*) FROM sqlite_master;"; // the read opens the WAL index
                read.ExecuteNonQuery();
            }

            var wal = Folder.File() + "-wal";
            var holder = dataSource.OpenConnection();
            ConnectionTests.Exec(holder, "CREATE TABLE t (x)");
            ConnectionTests.Exec(holder, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) INSERT INTO t SELECT x FROM c");
            new FileInfo(wal).Length.ShouldBeGreaterThan(0);

            dataSource.Clear(); // the rented connection closes on return, the pool's last: Checkpoint On Close is due
            Exception? waiterError = null;
            var waiter = new Thread(() =>
            {
                try
                {
                    dataSource.OpenConnection().Dispose();
                }
                catch (Exception exception)
                {
                    waiterError = exception;
                }
                finally
                {
                    waiterGone.Set();
                }
            });
            waiter.Start();
            Wait.Until(() => dataSource.Statistics.Waiting == 1);

            Volatile.Write(ref armed, 1);
            var closer = new Thread(holder.Dispose);
            closer.Start();
            closing.Wait(TimeSpan.FromSeconds(10)).ShouldBeTrue();
            if (!timesOut)
            {
                dataSource.Dispose();
            }

            waiter.Join();
            closer.Join();
            waiterError.ShouldBeAssignableTo(timesOut ? typeof(TimeoutException) : typeof(ObjectDisposedException));
            dataSource.Dispose();

            new FileInfo(wal).Length.ShouldBe(0, "the pool's last connection closed after a Clear without the Checkpoint On Close TRUNCATE");
        }
        finally
        {
            dataSource.Dispose();
        }
    }

    /// <summary>
    /// A connection rented before a Clear keeps the files open until it is closed, after Checkpoint On Close has run on
    /// them: Statistics.InUse, which the README has callers wait on before they replace the file, counts it until then.
    /// A slow close is stood for by a slow logger of its PASSIVE checkpoint.
    /// </summary>
    [Test]
    public void Statistics_InUse_stays_above_zero_while_a_connection_rented_before_a_Clear_still_holds_the_files()
    {
        var armed = 0;
        using var inClose = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        using var loggerFactory = LoggerFactory.Create(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(new HookLoggerProvider((id, message) =>
        {
            // Checkpoint On Close's PASSIVE, on the closing connection, before it is disposed.
            if (id == 3001 && message.StartsWith("Passive", StringComparison.Ordinal) && Interlocked.Exchange(ref armed, 0) == 1)
            {
                inClose.Set();
                release.Wait(TimeSpan.FromSeconds(10));
            }
        })));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0;Wal Autocheckpoint=0"))
            .UseLoggerFactory(loggerFactory)
            .Build();
        var holder = dataSource.OpenConnection();
        ConnectionTests.Exec(holder, "CREATE TABLE t (x)");
        ConnectionTests.Exec(holder, "INSERT INTO t VALUES (randomblob(10000))");

        dataSource.Clear(); // the rented connection closes on return
        Volatile.Write(ref armed, 1);
        var closer = new Thread(holder.Dispose);
        closer.Start();
        var closing = inClose.Wait(TimeSpan.FromSeconds(10));
        var statistics = dataSource.Statistics;
        var openFiles = OpenFiles.Count(Folder.File());
        release.Set();
        closer.Join();

        closing.ShouldBeTrue();
        openFiles.ShouldBeGreaterThan(0); // the connection rented before the Clear still has the database open
        statistics.InUse.ShouldBe(1, "Statistics.InUse was 0 (Total " + statistics.Total + ") while the connection rented before the Clear still had the files open: the README's safe order would replace the file now");
    }

    /// <summary>
    /// GetWalStatus, which the health check calls, waits at most one step for a background checkpoint that keeps the
    /// checkpointer's connection (here: a long copy, stood for by a slow logger of its PASSIVE checkpoint).
    /// </summary>
    [Test]
    public async Task GetWalStatus_does_not_wait_out_a_background_checkpoint_that_holds_the_checkpointer()
    {
        using var held = new HeldBackgroundCheckpoint(Folder);
        held.Start();

        var onDemand = Task.Run(() => held.DataSource.Checkpoint());
        var status = Task.Run(() => held.DataSource.GetWalStatus());
        var checkpointReturned = onDemand.Wait(TimeSpan.FromSeconds(10));
        var statusReturned = status.Wait(TimeSpan.FromSeconds(10));
        await held.Release();
        await status;

        checkpointReturned.ShouldBeTrue(); // the on-demand checkpoint gives up after 250 ms, as the change has it
        statusReturned.ShouldBeTrue("GetWalStatus waited for the background checkpoint's whole run on the checkpointer's lock");
    }

    /// <summary>
    /// An on-demand checkpoint that waits for a background one while the data source is disposed throws
    /// ObjectDisposedException rather than report busy, which would tell the caller to try again.
    /// </summary>
    [Test]
    public async Task Checkpoint_waiting_for_a_background_checkpoint_while_the_data_source_is_disposed_throws_ObjectDisposedException()
    {
        using var held = new HeldBackgroundCheckpoint(Folder);
        held.Start();

        // On threads of their own: the pool's threads are held up, and a disposal started late would find the
        // checkpoint already given up.
        var onDemand = Task.Factory.StartNew(() => held.DataSource.Checkpoint(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        var disposal = Task.Factory.StartNew(held.DataSource.Dispose, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        var error = await Should.ThrowAsync<ObjectDisposedException>(onDemand.WaitAsync(TimeSpan.FromSeconds(10)));
        await held.Release();
        await disposal.WaitAsync(TimeSpan.FromSeconds(10));

        error.ObjectName.ShouldBe(typeof(SaverDataSource).FullName);
    }

    /// <summary>
    /// SaverDataSource.CheckpointAsync's token also ends its wait (up to 250 ms) for a background checkpoint that
    /// keeps the checkpoint connection: the call ends with OperationCanceledException carrying that token rather than
    /// answer busy with -1 frames, which would tell the caller to try again.
    /// </summary>
    [Test]
    public async Task A_data_source_CheckpointAsync_cancelled_while_a_background_checkpoint_runs_ends_with_its_token()
    {
        using var held = new HeldBackgroundCheckpoint(Folder);
        held.Start();
        using var cancellation = new CancellationTokenSource();
        Thread? caller = null;

        // On a thread of its own (the call is synchronous inside), cancelled by this thread once that one blocks on
        // the checkpointer's lock: a timer's cancellation would need a pool thread, which the held checkpoint and other
        // tests may keep busy for longer than the 250 ms wait.
        var onDemand = Task.Factory.StartNew(
            () =>
            {
                Volatile.Write(ref caller, Thread.CurrentThread);
                return held.DataSource.CheckpointAsync(CheckpointMode.Passive, cancellation.Token);
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default).Unwrap();
        SpinWait.SpinUntil(
            () => Volatile.Read(ref caller) is { } thread && (thread.ThreadState & ThreadState.WaitSleepJoin) != 0,
            TimeSpan.FromSeconds(10)).ShouldBeTrue("the on-demand checkpoint never waited for the lock");
        cancellation.Cancel();
        var error = await Should.ThrowAsync<OperationCanceledException>(onDemand.WaitAsync(TimeSpan.FromSeconds(10)));
        await held.Release();

        error.CancellationToken.ShouldBe(cancellation.Token);
    }

    /// <summary>
    /// SaverDataSource.CheckpointAsync's token ends the checkpoint's waits for readers too, which the checkpoint
    /// connection makes in SQLite's busy handler (up to 250 ms), and a cancelled call throws rather than answer busy.
    /// The token is cancelled here as the checkpoint connection opens (by its initializer), before the TRUNCATE waits
    /// for the reader: the call ends with OperationCanceledException carrying that token, as connection.CheckpointAsync
    /// does.
    /// </summary>
    [Test]
    public async Task A_data_source_CheckpointAsync_cancelled_before_its_checkpoint_waits_for_a_reader_ends_with_its_token()
    {
        using var cancellation = new CancellationTokenSource();
        var armed = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Busy Timeout=5;Checkpoint Interval=0"))
            .UseConnectionInitializer(_ =>
            {
                if (Volatile.Read(ref armed) == 1)
                {
                    cancellation.Cancel(); // the checkpoint connection is opening
                }
            })
            .Build();
        using var connection = dataSource.OpenConnection();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x)");
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
        using var reader = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        reader.Open();
        using (var read = reader.CreateCommand())
        {
            read.CommandText = "BEGIN; SELECT count(*) FROM t;"; // a reader of the WAL: a TRUNCATE waits for it
            read.ExecuteNonQuery();
        }

        Volatile.Write(ref armed, 1);
        var checkpoint = dataSource.CheckpointAsync(CheckpointMode.Truncate, cancellation.Token);
        var finished = await Task.WhenAny(checkpoint, Task.Delay(TimeSpan.FromSeconds(30)));
        finished.ShouldBeSameAs(checkpoint);
        cancellation.IsCancellationRequested.ShouldBeTrue("the checkpoint connection opened during the call");

        var exception = await Should.ThrowAsync<OperationCanceledException>(
            () => checkpoint,
            customMessage: "the cancelled checkpoint waited out its busy timeout for the reader and returned a busy result");
        exception.CancellationToken.ShouldBe(cancellation.Token);
        checkpoint.Status.ShouldBe(TaskStatus.Canceled); // not faulted with the cancellation (a hunt's mutation passed every test)
    }

    /// <summary>
    /// A data source whose <c>-wal</c> file is past Journal Size Limit, and whose background checkpoint, once
    /// <see cref="Start"/> ticks it, stays in its PASSIVE copy (under the checkpointer's lock) until
    /// <see cref="Release"/>, as a long copy would: a slow logger of that copy stands for it.
    /// </summary>
    private sealed class HeldBackgroundCheckpoint : IDisposable
    {
        private readonly FakeTimeProvider _time = new();
        private readonly ManualResetEventSlim _inCopy = new();
        private readonly ManualResetEventSlim _release = new();
        private readonly ILoggerFactory _loggerFactory;
        private int _armed;
        private Task _tick = Task.CompletedTask;

        public HeldBackgroundCheckpoint(TempFolder folder)
        {
            _loggerFactory = LoggerFactory.Create(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(new HookLoggerProvider((id, message) =>
            {
                if (id == 3001 && message.StartsWith("Passive", StringComparison.Ordinal) && Interlocked.Exchange(ref _armed, 0) == 1)
                {
                    _inCopy.Set();
                    _release.Wait(TimeSpan.FromSeconds(20));
                }
            })));
            DataSource = new SaverDataSourceBuilder(folder.ConnectionString("Checkpoint Interval=1;Wal Autocheckpoint=0;Journal Size Limit=4096"))
                .UseTimeProvider(_time)
                .UseLoggerFactory(_loggerFactory)
                .Build();
            using var connection = DataSource.OpenConnection();
            ConnectionTests.Exec(connection, "CREATE TABLE t (x)");
            ConnectionTests.Exec(connection, "INSERT INTO t VALUES (randomblob(100000))");
        }

        public SaverDataSource DataSource { get; }

        /// <summary>Ticks the background checkpointer and returns once its copy is held.</summary>
        public void Start()
        {
            Volatile.Write(ref _armed, 1);
            _tick = Task.Run(() => _time.Advance(TimeSpan.FromSeconds(1)));
            _inCopy.Wait(TimeSpan.FromSeconds(10)).ShouldBeTrue("the background checkpoint never reached its copy");
        }

        /// <summary>Lets the copy go on; the task ends with the background checkpoint.</summary>
        public Task Release()
        {
            _release.Set();
            return _tick;
        }

        public void Dispose()
        {
            _release.Set();
            DataSource.Dispose();
            _loggerFactory.Dispose();
            _inCopy.Dispose();
            _release.Dispose();
        }
    }

    /// <summary>Calls a hook with each log entry's event id and message, on the logging thread.</summary>
    private sealed class HookLoggerProvider(Action<int, string> hook) : ILoggerProvider, ILogger
    {
        public ILogger CreateLogger(string categoryName) => this;

        public void Dispose()
        {
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            => hook(eventId.Id, formatter(state, exception));
    }
}
