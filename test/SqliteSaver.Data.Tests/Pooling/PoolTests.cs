using System.Data;
using System.Runtime.CompilerServices;
using Dapper;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using SqliteSaver.Data.Pooling;

namespace SqliteSaver.Data.Tests.Pooling;

public class PoolTests : DatabaseTest
{
    [Test]
    public void Sequential_opens_reuse_one_physical_connection()
    {
        var connectionString = Folder.ConnectionString();
        SqliteConnection? first = null;

        for (var i = 0; i < 50; i++)
        {
            using var connection = new SaverDbConnection(connectionString);
            connection.Open();
            first ??= connection.InnerConnection;
            connection.InnerConnection.ShouldBeSameAs(first);
        }

        SaverDataSource.GetShared(connectionString).Statistics.Total.ShouldBe(1);
    }

    [Test]
    public void Many_threads_never_open_more_than_Max_Pool_Size_physical_connections()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=3");
        var dataSource = SaverDataSource.GetShared(connectionString);
        var physical = new System.Collections.Concurrent.ConcurrentDictionary<SqliteConnection, byte>();
        var queued = 0;

        var threads = Enumerable.Range(0, 8).Select(_ => new Thread(() =>
        {
            for (var i = 0; i < 20; i++)
            {
                using var connection = new SaverDbConnection(connectionString);
                connection.Open();
                physical.TryAdd(connection.InnerConnection, 0);
                ConnectionTests.Scalar(connection, "SELECT 1");
                // Held until another thread queues for a connection, so that the pool really runs out.
                if (SpinWait.SpinUntil(() => dataSource.Statistics.Waiting > 0, TimeSpan.FromMilliseconds(200)))
                {
                    Interlocked.Increment(ref queued);
                }
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        physical.Count.ShouldBeLessThanOrEqualTo(3);
        dataSource.Statistics.Total.ShouldBeLessThanOrEqualTo(3);
        queued.ShouldBeGreaterThan(0); // the threads did run the pool out
    }

    [Test]
    public void Four_threads_inserting_ten_rows_each_through_a_pool_of_three_give_forty_rows()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=3");
        Execute(connectionString, "CREATE TABLE t (id INTEGER PRIMARY KEY, thread INTEGER, n INTEGER)");

        var threads = Enumerable.Range(0, 4).Select(thread => new Thread(() =>
        {
            for (var n = 0; n < 10; n++)
            {
                using var connection = new SaverDbConnection(connectionString);
                connection.Open();
                using var command = connection.CreateCommand();
                command.CommandText = "INSERT INTO t (thread, n) VALUES ($thread, $n)";
                command.Parameters.AddWithValue("$thread", thread);
                command.Parameters.AddWithValue("$n", n);
                command.ExecuteNonQuery();
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(40L);
        Scalar(connectionString, "SELECT count(DISTINCT thread || '-' || n) FROM t").ShouldBe(40L);
    }

    [Test]
    public void An_exhausted_pool_times_out_with_a_message_naming_the_limits()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=2;Pool Timeout=0.2");
        using var a = new SaverDbConnection(connectionString);
        using var b = new SaverDbConnection(connectionString);
        a.Open();
        b.Open();

        using var c = new SaverDbConnection(connectionString);
        var error = Should.Throw<TimeoutException>(() => c.Open());

        error.Message.ShouldContain("Max Pool Size=2");
        error.Message.ShouldContain("Pool Timeout=0.2 s");
        error.Message.ShouldContain("2 of Max Pool Size=2 connections are in use");
        c.State.ShouldBe(ConnectionState.Closed);
    }

    /// <summary>
    /// Pool Timeout bounds the wait for a free connection, not the opening of a new one: its PRAGMAs (here the switch
    /// of a rollback-journal file to WAL, busy behind another connection's read lock) wait as a write's attempts do,
    /// Busy Timeout each for Retry + 1 attempts, and then fail with SQLITE_BUSY saying so, as README's Bounded waits has it.
    /// </summary>
    [Test]
    public void A_new_connections_PRAGMAs_wait_for_a_lock_held_elsewhere_for_the_retry_attempts_not_Pool_Timeout()
    {
        using (var create = new SqliteConnection($"Data Source={Folder.File()};Pooling=False"))
        {
            create.Open();
            using var table = create.CreateCommand();
            table.CommandText = "CREATE TABLE t (x)";
            table.ExecuteNonQuery();
        }

        using var reader = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        reader.Open();
        using (var read = reader.CreateCommand())
        {
            read.CommandText = "BEGIN; SELECT count(*) FROM t;";
            read.ExecuteNonQuery();
        }

        using var connection = new SaverDbConnection(Folder.ConnectionString("Pool Timeout=0.01;Busy Timeout=50;Retry=2;Base Delay=0.01;Max Delay=0.01;Checkpoint Interval=0"));
        var error = Should.Throw<SqliteException>(connection.Open);

        error.SqliteErrorCode.ShouldBe(5);
        error.Message.ShouldContain("Gave up after 3 attempts");
        connection.State.ShouldBe(ConnectionState.Closed);
    }

    [Test]
    public async Task An_exhausted_pool_times_out_asynchronously_too()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=0.2");
        await using var a = new SaverDbConnection(connectionString);
        await a.OpenAsync();

        await using var b = new SaverDbConnection(connectionString);
        var error = await Should.ThrowAsync<TimeoutException>(() => b.OpenAsync());

        error.Message.ShouldContain("Max Pool Size=1");
    }

    [Test]
    public void A_waiter_gets_the_connection_returned_by_another_thread()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=30");
        var holder = new SaverDbConnection(connectionString);
        holder.Open();
        var held = holder.InnerConnection;
        var dataSource = SaverDataSource.GetShared(connectionString);

        var waiter = Task.Run(() =>
        {
            using var connection = new SaverDbConnection(connectionString);
            connection.Open();
            return connection.InnerConnection;
        });
        Wait.Until(() => dataSource.Statistics.Waiting == 1);
        holder.Close();

        waiter.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        waiter.Result.ShouldBeSameAs(held);
    }

    [Test]
    public void Waiters_are_served_first_come_first_served()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=30");
        var dataSource = SaverDataSource.GetShared(connectionString);
        var holder = new SaverDbConnection(connectionString);
        holder.Open();
        var order = new System.Collections.Concurrent.ConcurrentQueue<int>();

        var waiters = new List<Thread>();
        for (var i = 0; i < 5; i++)
        {
            var id = i;
            var thread = new Thread(() =>
            {
                using var connection = new SaverDbConnection(connectionString);
                connection.Open();
                order.Enqueue(id);
            });
            thread.Start();
            waiters.Add(thread);
            Wait.Until(() => dataSource.Statistics.Waiting == id + 1);
        }

        holder.Close();
        waiters.ForEach(t => t.Join());

        order.ShouldBe([0, 1, 2, 3, 4]);
    }

    [Test]
    public async Task OpenAsync_waits_without_a_thread_and_honours_cancellation_without_losing_the_slot()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=30");
        var dataSource = SaverDataSource.GetShared(connectionString);
        var holder = new SaverDbConnection(connectionString);
        await holder.OpenAsync();

        using var cancellation = new CancellationTokenSource();
        await using var waiting = new SaverDbConnection(connectionString);
        var open = waiting.OpenAsync(cancellation.Token);
        Wait.Until(() => dataSource.Statistics.Waiting == 1);
        open.IsCompleted.ShouldBeFalse();
        await cancellation.CancelAsync();

        await Should.ThrowAsync<OperationCanceledException>(() => open);
        dataSource.Statistics.Waiting.ShouldBe(0);
        await holder.CloseAsync();

        await waiting.OpenAsync(); // the cancelled open is over: it does not refuse this one as "already opening"
        waiting.State.ShouldBe(ConnectionState.Open);
        dataSource.Statistics.Total.ShouldBe(1);
    }

    /// <summary>
    /// RunInTransactionAsync on a closed connection opens it with its token: cancelled while the open waits for an
    /// exhausted pool, it ends then, running nothing, rather than when Pool Timeout has passed.
    /// </summary>
    [Test]
    public async Task RunInTransactionAsync_cancelled_while_its_open_waits_for_the_pool_ends_without_running()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=5");
        var dataSource = SaverDataSource.GetShared(connectionString);
        await using var holder = new SaverDbConnection(connectionString);
        await holder.OpenAsync();
        using var cancellation = new CancellationTokenSource();
        await using var connection = new SaverDbConnection(connectionString);
        var ran = false;

        var run = connection.RunInTransactionAsync((_, _) => Task.FromResult(ran = true), cancellation.Token);
        Wait.Until(() => dataSource.Statistics.Waiting == 1);
        await cancellation.CancelAsync();

        await Should.ThrowAsync<OperationCanceledException>(() => run);
        ran.ShouldBeFalse();
        connection.State.ShouldBe(ConnectionState.Closed);
    }

    /// <summary>
    /// Guards README's "Pool Timeout ... 0 waits without limit": with Pool Timeout=0 an Open of an exhausted pool
    /// queues and gets the connection returned later, synchronous or not. A zero handed to the wait as it is would
    /// give up at once with a PoolTimeoutException.
    /// </summary>
    [Test]
    public async Task With_Pool_Timeout_0_an_Open_waits_in_the_queue_until_a_connection_comes_free([Values] bool async)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=0");
        var dataSource = SaverDataSource.GetShared(connectionString);
        var holder = new SaverDbConnection(connectionString);
        await holder.OpenAsync();
        var held = holder.InnerConnection;
        await using var waiting = new SaverDbConnection(connectionString);

        var open = async ? waiting.OpenAsync() : Task.Factory.StartNew(waiting.Open, TaskCreationOptions.LongRunning);
        Wait.Until(() => dataSource.Statistics.Waiting == 1 || open.IsCompleted);
        open.IsCompleted.ShouldBeFalse();
        dataSource.Statistics.Waiting.ShouldBe(1);
        await holder.CloseAsync();

        await open.WaitAsync(TimeSpan.FromSeconds(30));
        waiting.InnerConnection.ShouldBeSameAs(held);
        dataSource.Statistics.Waiting.ShouldBe(0);
    }

    [Test]
    public void Sync_Open_cancelled_while_queued_leaves_the_queue()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=30");
        var dataSource = SaverDataSource.GetShared(connectionString);
        using var holder = new SaverDbConnection(connectionString);
        holder.Open();
        using var cancellation = new CancellationTokenSource();

        var rent = Task.Run(() => dataSource.Pool.Rent(cancellation.Token));
        Wait.Until(() => dataSource.Statistics.Waiting == 1);
        cancellation.Cancel();

        Should.Throw<OperationCanceledException>(() => rent.GetAwaiter().GetResult());
        dataSource.Statistics.Waiting.ShouldBe(0);
    }

    [Test]
    public void Idle_connections_above_Min_Pool_Size_close_after_the_idle_lifetime()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Min Pool Size=1;Connection Idle Lifetime=60")).UseTimeProvider(time).Build();
        var connections = Enumerable.Range(0, 3).Select(_ => dataSource.OpenConnection()).ToList();
        connections.ForEach(c => c.Dispose());
        dataSource.Statistics.Idle.ShouldBe(3);

        time.Advance(TimeSpan.FromSeconds(59));
        dataSource.Statistics.Idle.ShouldBe(3);

        time.Advance(TimeSpan.FromSeconds(31));
        dataSource.Statistics.Idle.ShouldBe(1);
        dataSource.Statistics.Total.ShouldBe(1);
    }

    /// <summary>
    /// A connection idle for exactly Connection Idle Lifetime when the pool looks has stayed idle for it, and closes
    /// then, not at the next look half a lifetime later (a hunt's mutation of "at least" into "more than").
    /// </summary>
    [Test]
    public void A_connection_idle_for_exactly_the_idle_lifetime_when_the_pool_looks_is_closed()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Connection Idle Lifetime=60")).UseTimeProvider(time).Build();
        dataSource.OpenConnection().Dispose(); // idle from 0 s, as the pool's timer starts: it looks at 30 s, 60 s, ...

        time.Advance(TimeSpan.FromSeconds(60));

        dataSource.Statistics.Total.ShouldBe(0);
    }

    [Test]
    public void A_connection_used_recently_is_not_pruned()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Connection Idle Lifetime=60")).UseTimeProvider(time).Build();
        dataSource.OpenConnection().Dispose();

        time.Advance(TimeSpan.FromSeconds(50));
        dataSource.OpenConnection().Dispose();
        time.Advance(TimeSpan.FromSeconds(40));

        dataSource.Statistics.Idle.ShouldBe(1);
        time.Advance(TimeSpan.FromSeconds(30));
        dataSource.Statistics.Idle.ShouldBe(0);
    }

    /// <summary>
    /// Open takes the most recently returned idle connection, so that under light load one connection serves every
    /// renter and the others, left idle, close after Connection Idle Lifetime. Taking the longest-idle one instead
    /// (rotating through them all, each idle too briefly to age out), or pruning from the most recently returned end
    /// of the idle list, kept every connection open for good (a hunt's mutations).
    /// </summary>
    [Test]
    public void Under_light_load_the_most_recently_returned_connection_is_reused_so_the_others_close_after_the_idle_lifetime()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Connection Idle Lifetime=60")).UseTimeProvider(time).Build();
        var connections = Enumerable.Range(0, 3).Select(_ => dataSource.OpenConnection()).ToList();
        var lastReturned = connections[^1].InnerConnection;
        connections.ForEach(c => c.Dispose());
        dataSource.Statistics.Idle.ShouldBe(3);

        for (var step = 0; step < 12; step++)
        {
            time.Advance(TimeSpan.FromSeconds(10));
            using var connection = dataSource.OpenConnection();
            connection.InnerConnection.ShouldBeSameAs(lastReturned);
        }

        dataSource.Statistics.Total.ShouldBe(1); // 120 s on: the two left idle since the start are closed
        dataSource.Statistics.Idle.ShouldBe(1);
    }

    /// <summary>
    /// The pool looks for expired idle connections every half Connection Idle Lifetime, so one is closed within 1.5
    /// times it wherever its return falls between two looks, as README's keyword table says. Looking once per
    /// lifetime passed the test above, whose connections are returned just as the pool's timer starts (a hunt's mutation).
    /// </summary>
    [Test]
    public void An_idle_connection_returned_between_the_pools_looks_closes_within_one_and_a_half_idle_lifetimes()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Connection Idle Lifetime=60")).UseTimeProvider(time).Build();
        var connection = dataSource.OpenConnection(); // the pool and its timer exist from here, at 0 s
        time.Advance(TimeSpan.FromSeconds(1));
        connection.Dispose(); // idle from 1 s

        time.Advance(TimeSpan.FromSeconds(59));
        dataSource.Statistics.Idle.ShouldBe(1); // 59 s idle: not yet

        time.Advance(TimeSpan.FromSeconds(31));
        dataSource.Statistics.Idle.ShouldBe(0); // at 91 s, 1.5 lifetimes after its return
        dataSource.Statistics.Total.ShouldBe(0);
    }

    /// <summary>
    /// Under two seconds of Connection Idle Lifetime the pool looks every second rather than every half of it, as
    /// README's keyword table says ("or every second if that is longer"): a connection idle for the whole lifetime is
    /// closed at the next whole second (a hunt's mutation dropped the floor, and looked every quarter second here).
    /// </summary>
    [Test]
    public void Under_two_seconds_of_idle_lifetime_the_pool_looks_every_second()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Connection Idle Lifetime=0.5")).UseTimeProvider(time).Build();
        dataSource.OpenConnection().Dispose(); // idle from 0 s, as the pool's timer starts

        time.Advance(TimeSpan.FromSeconds(0.5));
        dataSource.Statistics.Idle.ShouldBe(1); // idle for the lifetime, but not looked at yet

        time.Advance(TimeSpan.FromSeconds(0.5));
        dataSource.Statistics.Total.ShouldBe(0);
    }

    /// <summary>
    /// Disposing a data source stops its pool's idle timer: a system timer left running keeps the pool, and with it the
    /// data source, reachable for good (a hunt's mutation left it running).
    /// </summary>
    [Test]
    public void A_disposed_data_sources_pool_stops_looking_for_idle_connections_and_can_be_collected()
    {
        var pool = DisposedPool(Folder.ConnectionString("Connection Idle Lifetime=60"));

        LeakTests.Collect(() => !pool.IsAlive);
    }

    /// <summary>
    /// A private in-memory database holds no file to release and belongs to its data source: another component's (or
    /// test's) ClearAllPools emptied it, committed rows and all (a bug hunt). Its own Clear still does.
    /// </summary>
    [Test]
    public void ClearAllPools_leaves_a_data_sources_private_memory_database_which_its_own_Clear_empties()
    {
        using var memory = SaverDataSource.Create("Data Source=:memory:");
        using (var connection = memory.OpenConnection())
        {
            ConnectionTests.Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        }

        SaverDbConnection.ClearAllPools();

        using (var again = memory.OpenConnection())
        {
            ConnectionTests.Scalar(again, "SELECT count(*) FROM t").ShouldBe(1L);
        }

        memory.Clear();
        using var cleared = memory.OpenConnection();
        ConnectionTests.Scalar(cleared, "SELECT count(*) FROM sqlite_master").ShouldBe(0L);
    }

    [Test]
    public void ClearAllPools_closes_idle_connections_at_once_and_rented_ones_on_return()
    {
        var path = Folder.File();
        var connectionString = Folder.ConnectionString();
        Execute(connectionString, "CREATE TABLE t (x)");
        using (var a = new SaverDbConnection(connectionString))
        using (var b = new SaverDbConnection(connectionString))
        {
            a.Open();
            b.Open();
        }

        OpenFiles.Count(path).ShouldBeGreaterThan(0);
        SaverDbConnection.ClearAllPools();
        OpenFiles.Count(path).ShouldBe(0);

        using var rented = new SaverDbConnection(connectionString);
        rented.Open();
        SaverDbConnection.ClearAllPools();
        OpenFiles.Count(path).ShouldBeGreaterThan(0);
        rented.Close();

        OpenFiles.Count(path).ShouldBe(0);
        OpenFiles.Count(path + "-wal").ShouldBe(0);
        File.Delete(path);
        File.Delete(path + "-wal");
        File.Delete(path + "-shm");
        File.Exists(path).ShouldBeFalse();
    }

    /// <summary>
    /// Each Build makes a new data source with a pool of its own and the builder's settings as they stand then: disposing
    /// the first leaves the second working (a mutation hunt: with Build handing back the first again, no test failed).
    /// </summary>
    [Test]
    public void Each_Build_makes_a_new_data_source_with_the_builders_settings_as_they_stand()
    {
        var builder = new SaverDataSourceBuilder(Folder.ConnectionString()) { Name = "first" };
        using var first = builder.Build();
        builder.Name = "second";
        builder.ConnectionStringBuilder.MaxPoolSize = 2;
        using var second = builder.Build();

        second.ShouldNotBeSameAs(first);
        $"{first.Name} {first.Statistics.MaxPoolSize}, {second.Name} {second.Statistics.MaxPoolSize}".ShouldBe("first 16, second 2");
        first.OpenConnection().Dispose();
        first.Dispose();
        using var connection = second.OpenConnection();
        ConnectionTests.Scalar(connection, "SELECT 1").ShouldBe(1L);
        second.Statistics.Total.ShouldBe(1);
    }

    [Test]
    public void ClearPool_leaves_the_pool_usable()
    {
        var connectionString = Folder.ConnectionString();
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var before = connection.InnerConnection;
        connection.Close();

        SaverDbConnection.ClearPool(connection);
        connection.Open();

        connection.InnerConnection.ShouldNotBeSameAs(before);
        SaverDataSource.GetShared(connectionString).Statistics.Total.ShouldBe(1);
    }

    [Test]
    public void Without_pooling_each_open_opens_and_each_close_closes_the_file()
    {
        var connectionString = Folder.ConnectionString("Pooling=false");
        SqliteConnection first;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            first = connection.InnerConnection;
            OpenFiles.Count(Folder.File()).ShouldBe(1);
        }

        OpenFiles.Count(Folder.File()).ShouldBe(0);
        using var again = new SaverDbConnection(connectionString);
        again.Open();
        again.InnerConnection.ShouldNotBeSameAs(first);
    }

    [Test]
    public void Without_pooling_more_connections_than_the_default_Max_Pool_Size_open_as_with_Microsoft_Data_Sqlite()
    {
        // Pool Timeout=1 only keeps the failure short: with its default the 17th Open waits 30 s, then throws.
        var connectionString = Folder.ConnectionString("Pooling=False;Pool Timeout=1");
        var plain = new List<SqliteConnection>();
        var saver = new List<SaverDbConnection>();
        try
        {
            for (var i = 0; i < 17; i++)
            {
                var connection = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
                plain.Add(connection);
                connection.Open(); // Microsoft.Data.Sqlite opens as many as asked
            }

            for (var i = 0; i < 17; i++)
            {
                var connection = new SaverDbConnection(connectionString);
                saver.Add(connection);
                Should.NotThrow(() => connection.Open(), $"connection {i + 1}");
            }
        }
        finally
        {
            saver.ForEach(c => c.Dispose());
            plain.ForEach(c => c.Dispose());
        }
    }

    [Test]
    public void A_physical_connection_that_fails_its_check_is_replaced_and_the_slot_kept()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        var dataSource = SaverDataSource.GetShared(connectionString);
        SqliteConnection broken;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            broken = connection.InnerConnection;
            broken.Close();
        }

        dataSource.Statistics.Total.ShouldBe(0);
        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.ShouldNotBeSameAs(broken);
        next.InnerConnection.State.ShouldBe(ConnectionState.Open);
        dataSource.Statistics.Total.ShouldBe(1);
    }

    [Test]
    public void A_connection_returned_in_a_transaction_begun_on_its_inner_connection_is_replaced_not_handed_on()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        Execute(connectionString, "CREATE TABLE t (x)");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            var transaction = connection.InnerConnection.BeginTransaction(); // never disposed
            using var insert = connection.InnerConnection.CreateCommand();
            insert.Transaction = transaction;
            insert.CommandText = "INSERT INTO t VALUES (1)";
            insert.ExecuteNonQuery();
        }

        for (var i = 0; i < 3; i++)
        {
            Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L); // rolled back, and usable
        }

        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            var transaction = connection.InnerConnection.BeginTransaction(); // never disposed, and ended by SQLite
            using var insert = connection.InnerConnection.CreateCommand();
            insert.Transaction = transaction;
            insert.CommandText = "INSERT INTO t VALUES (1); COMMIT";
            insert.ExecuteNonQuery();
        }

        Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L);

        using var disposedProperly = new SaverDbConnection(connectionString);
        disposedProperly.Open();
        var inner = disposedProperly.InnerConnection;
        using (var transaction = inner.BeginTransaction())
        {
            transaction.Commit();
        }

        disposedProperly.Close();
        disposedProperly.Open();
        disposedProperly.InnerConnection.ShouldBeSameAs(inner); // nothing left open: kept
    }

    /// <summary>
    /// A Clear that comes while a returned connection is being reset (here from SQLite's rollback hook, as the reset
    /// rolls back a transaction begun on InnerConnection) still closes it: it belongs to the cleared generation however
    /// far its return had gone. Kept idle, it was handed to the next renter with the file that was at the path before
    /// the Clear (a hunt's mutation looked at the generation only before the reset).
    /// </summary>
    [Test]
    public void A_connection_whose_reset_a_Clear_overtakes_is_closed_not_kept_idle()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString());
        var connection = dataSource.OpenConnection();
        var inner = connection.InnerConnection;
        using (var begin = inner.CreateCommand())
        {
            begin.CommandText = "BEGIN";
            begin.ExecuteNonQuery();
        }

        var clears = 0;
        SQLitePCL.raw.sqlite3_rollback_hook(inner.Handle, _ =>
        {
            if (Interlocked.Increment(ref clears) == 1)
            {
                dataSource.Clear();
            }
        }, null);

        connection.Dispose();

        clears.ShouldBe(1); // the reset rolled back, and the Clear ran then
        dataSource.Statistics.Total.ShouldBe(0);
        using var next = dataSource.OpenConnection();
        next.InnerConnection.ShouldNotBeSameAs(inner);
    }

    [Test]
    public void A_connection_whose_inner_state_cannot_be_checked_is_closed_and_its_slot_kept()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=5");
        Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        var dataSource = SaverDataSource.GetShared(connectionString);
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            var command = connection.InnerConnection.CreateCommand();
            command.CommandText = "SELECT x FROM t";
            var reader = command.ExecuteReader(); // neither is disposed: the statement stays active
            reader.Read().ShouldBeTrue();
            SQLitePCL.raw.sqlite3_interrupt(connection.InnerConnection.Handle); // as a late Cancel() would
        }

        dataSource.Statistics.InUse.ShouldBe(0);
        Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(2L); // Pool Timeout=5: a lost slot would time out
    }

    [TestCase("Max Pool Size=1")]
    [TestCase("Max Pool Size=1;Pooling=False")]
    public void A_transaction_on_the_inner_connection_that_SQL_ended_closes_cleanly_when_cleared_unpooled_or_leaked(string options)
    {
        var connectionString = Folder.ConnectionString(options);
        Execute(connectionString, "CREATE TABLE t (x)");
        var connection = new SaverDbConnection(connectionString);
        BeginOnInnerAndCommitAsSql(connection, 1);
        SaverDbConnection.ClearPool(connection);
        connection.Close(); // Microsoft.Data.Sqlite's rollback of the ended transaction threw here

        var dataSource = SaverDataSource.GetShared(connectionString);
        LeakInnerTransaction(connectionString, 2);
        Wait.Until(() =>
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            return dataSource.Statistics.Leaked == 1 && dataSource.Statistics.InUse == 0; // and the process is still here
        });
        Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1,2");
    }

    /// <summary>
    /// Max Pool Size is the most physical connections open at once: the slot of a connection Clear closes is free
    /// only once it is closed, after the Checkpoint On Close checkpoint a reader keeps waiting.
    /// </summary>
    [Test]
    public void Clear_never_lets_more_than_Max_Pool_Size_physical_connections_be_open_at_once()
    {
        var opened = new OpenedConnections();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0"))
            .UseConnectionInitializer(opened.Add)
            .Build();

        using (var first = dataSource.OpenConnection())
        {
            ConnectionTests.Scalar(first, "CREATE TABLE t (x)");
            ConnectionTests.Scalar(first, "INSERT INTO t VALUES (1)");
        }

        // Another process reading keeps the TRUNCATE checkpoint of Checkpoint On Close waiting (at most 250 ms).
        using var reader = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        reader.Open();
        using (var begin = reader.CreateCommand())
        {
            begin.CommandText = "BEGIN; SELECT count(*) FROM t;";
            begin.ExecuteScalar();
        }

        var clear = new Thread(dataSource.Clear);
        clear.Start();
        Wait.Until(() => dataSource.Statistics.Idle == 0); // Clear has taken the idle connection
        using (var next = dataSource.OpenConnection())
        {
            ConnectionTests.Scalar(next, "SELECT count(*) FROM t");
        }

        clear.Join();
        opened.MostOthersOpen.ShouldBe(0, "a new physical connection opened while the one Clear took out was still open, with Max Pool Size=1");
    }

    /// <summary>
    /// A second Open or OpenAsync of one connection while its first Open or OpenAsync waits for an exhausted pool (two
    /// Dapper queries of a closed connection awaited together do this) is refused with InvalidOperationException; the
    /// first opens the connection, and no pool slot is lost. Before, both rented and the second overwrote the first's
    /// physical connection, which nothing returned then: its slot was lost for good, neither Close nor the leak
    /// collection saw it, and the pool timed out (an async hunt's finding). A first fix made the second wait for the
    /// first: a synchronous Open could then block the very thread the first open's completion needed, and a second
    /// open waited up to twice Pool Timeout (a review).
    /// </summary>
    [TestCase("OpenAsync", "OpenAsync")]
    [TestCase("Open", "OpenAsync")]
    [TestCase("OpenAsync", "Open")]
    [TestCase("Dapper", "Dapper")]
    public async Task A_second_open_while_the_first_waits_for_the_pool_is_refused_and_loses_no_slot(string firstOpen, string secondOpen)
    {
        await using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=2;Pool Timeout=5"));
        var holders = new[] { await dataSource.OpenConnectionAsync(), await dataSource.OpenConnectionAsync() };
        var connection = dataSource.CreateConnection();
        Task first = firstOpen switch
        {
            "Dapper" => connection.QueryAsync<long>("SELECT 1"),
            "Open" => Task.Factory.StartNew(connection.Open, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default),
            _ => connection.OpenAsync(),
        };
        Wait.Until(() => dataSource.Statistics.Waiting > 0 || first.IsCompleted);
        first.IsCompleted.ShouldBeFalse("the first open waits for the pool");
        var second = secondOpen switch
        {
            "Dapper" => Should.ThrowAsync<InvalidOperationException>(() => connection.QueryAsync<long>("SELECT 2")),
            "Open" => Task.FromResult(Should.Throw<InvalidOperationException>(connection.Open)),
            _ => Should.ThrowAsync<InvalidOperationException>(() => connection.OpenAsync()),
        };
        (await second).Message.ShouldStartWith("The connection is already opening");
        dataSource.Statistics.Waiting.ShouldBe(1, "the refused open rents nothing");
        foreach (var holder in holders)
        {
            await holder.DisposeAsync();
        }

        await first.WaitAsync(TimeSpan.FromSeconds(30));
        connection.State.ShouldBe(firstOpen == "Dapper" ? ConnectionState.Closed : ConnectionState.Open);
        await connection.DisposeAsync();
        dataSource.Statistics.InUse.ShouldBe(0);
        await using var a = await dataSource.OpenConnectionAsync();
        await using var b = await dataSource.OpenConnectionAsync();
    }

    /// <summary>
    /// A synchronous Open after an OpenAsync not awaited yet, on a single-threaded SynchronizationContext, whose
    /// connection initializer awaits without ConfigureAwait(false), so that the first open's completion needs that
    /// thread: the Open is refused at once, and the OpenAsync, awaited, opens the connection. On the first fix above
    /// the Open waited for it and the thread hung for good (a review).
    /// </summary>
    [Test]
    public async Task A_synchronous_Open_after_an_OpenAsync_not_awaited_on_a_single_threaded_context_does_not_hang()
    {
        await using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString())
            .UseConnectionInitializer(async (_, _) => await Task.Yield())
            .Build();
        var connection = dataSource.CreateConnection();
        var done = new SingleThreadedContext().Start(async () =>
        {
            var first = connection.OpenAsync();
            var refused = first.IsCompleted ? "opened at once" : Should.Throw<InvalidOperationException>(connection.Open).Message;
            await first;
            return $"{refused[..33]}; {connection.State}";
        });

        (await done.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBe("The connection is already opening; Open");
        connection.Dispose();
    }

    /// <summary>
    /// A connection that cannot be reset (here: a transaction begun on its InnerConnection) is closed on return, and
    /// only then is its slot handed to the longest waiter, which would otherwise open a connection while the old one
    /// still closes (rolls back, frees a large TEMP table ...).
    /// </summary>
    [Test]
    public void A_connection_closed_on_return_is_closed_before_a_waiter_opens_one_in_its_slot()
    {
        var opened = new OpenedConnections();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0"))
            .UseConnectionInitializer(opened.Add)
            .Build();

        var holder = dataSource.OpenConnection();
        var inner = holder.InnerConnection;
        var transaction = inner.BeginTransaction(deferred: true);

        var waiter = new Thread(() =>
        {
            using var next = dataSource.OpenConnection();
            ConnectionTests.Scalar(next, "SELECT 1");
        });
        waiter.Start();
        Wait.Until(() => dataSource.Statistics.Waiting == 1);
        holder.Dispose();
        waiter.Join();
        GC.KeepAlive(transaction);

        opened.MostOthersOpen.ShouldBe(0, "a waiter opened a physical connection in the slot of one still being closed, with Max Pool Size=1");
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void LeakInnerTransaction(string connectionString, int value)
        => BeginOnInnerAndCommitAsSql(new SaverDbConnection(connectionString), value);

    private static void BeginOnInnerAndCommitAsSql(SaverDbConnection connection, int value)
    {
        connection.Open();
        var transaction = connection.InnerConnection.BeginTransaction(); // never disposed
        using var insert = connection.InnerConnection.CreateCommand();
        insert.Transaction = transaction;
        insert.CommandText = $"INSERT INTO t VALUES ({value}); COMMIT";
        insert.ExecuteNonQuery();
    }

    [Test]
    public void A_failed_open_gives_its_slot_back()
    {
        var missingFolder = Path.Combine(Folder.Path, "missing");
        var connectionString = $"Data Source={Path.Combine(missingFolder, "x.db")};Max Pool Size=1;Pool Timeout=1";
        var dataSource = SaverDataSource.GetShared(connectionString);

        for (var i = 0; i < 3; i++)
        {
            using var connection = new SaverDbConnection(connectionString);
            Should.Throw<SqliteException>(() => connection.Open()).SqliteErrorCode.ShouldBe(14); // SQLITE_CANTOPEN
            dataSource.Statistics.Total.ShouldBe(0);
        }

        Directory.CreateDirectory(missingFolder);
        using var fixedConnection = new SaverDbConnection(connectionString);
        fixedConnection.Open();
        fixedConnection.State.ShouldBe(ConnectionState.Open);
    }

    [Test]
    public void A_failed_open_hands_the_slot_to_a_waiter()
    {
        var time = new FakeTimeProvider();
        var missingFolder = Path.Combine(Folder.Path, "later");
        var connectionString = $"Data Source={Path.Combine(missingFolder, "x.db")};Max Pool Size=1;Pool Timeout=30";
        Directory.CreateDirectory(missingFolder);
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseTimeProvider(time).Build();
        var holder = dataSource.OpenConnection();

        var waiter = Task.Run(() => dataSource.OpenConnection());
        Wait.Until(() => dataSource.Statistics.Waiting == 1);
        holder.InnerConnection.Close(); // the returned connection fails its check; its slot must pass to the waiter
        holder.Dispose();

        waiter.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        waiter.Result.State.ShouldBe(ConnectionState.Open);
        waiter.Result.Dispose();
        dataSource.Statistics.Total.ShouldBe(1);
    }

    /// <summary>
    /// So too an open that fails (here in the connection initializer) while another caller waits for the pool's only
    /// slot: the waiter gets the slot and opens, rather than wait out Pool Timeout. Freeing the slot without handing
    /// it on passed every test before (a hunt): the test above has a returned connection fail its check.
    /// </summary>
    [Test]
    public async Task An_open_that_fails_hands_its_slot_to_a_waiter()
    {
        using var dataSource = Wal.CheckpointerTests.FailingNextOpen(Folder.ConnectionString("Max Pool Size=1;Pool Timeout=120"), out var failNext);
        var fail = await failNext(); // the opening holds the only slot, in its initializer
        var waiter = dataSource.OpenConnectionAsync().AsTask();
        Wait.Until(() => dataSource.Statistics.Waiting == 1);

        (await Should.ThrowAsync<Exception>(fail())).ToString().ShouldContain("the initializer failed");

        await using var opened = await waiter.WaitAsync(TimeSpan.FromSeconds(30));
        opened.State.ShouldBe(ConnectionState.Open);
    }

    [Test]
    public void Closing_a_connection_whose_inner_connection_was_closed_mid_transaction_frees_its_slot_and_the_gate()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1;Pool Timeout=1;Default Timeout=1"));
        var connection = dataSource.OpenConnection();
        connection.BeginTransaction();
        connection.InnerConnection.Close();

        connection.Close();

        dataSource.Executor.Gate.ShouldNotBeNull().IsHeld.ShouldBeFalse();
        dataSource.Statistics.InUse.ShouldBe(0);
        using var next = dataSource.OpenConnection();
        next.RunInTransaction(transaction => ConnectionTests.Exec(next, "CREATE TABLE t (x)"));
    }

    [Test]
    public async Task A_connection_disposed_while_its_OpenAsync_waits_gives_back_what_the_pool_grants_it_later()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1;Pool Timeout=30"));
        var holder = dataSource.OpenConnection();
        var abandoned = dataSource.CreateConnection();
        var opening = abandoned.OpenAsync();
        Wait.Until(() => dataSource.Statistics.Waiting == 1);

        await abandoned.DisposeAsync();
        holder.Dispose();

        await Should.ThrowAsync<ObjectDisposedException>(opening);
        abandoned.State.ShouldBe(ConnectionState.Closed);
        dataSource.Statistics.InUse.ShouldBe(0);
        using var next = dataSource.OpenConnection();
        next.State.ShouldBe(ConnectionState.Open);
    }

    [Test]
    public async Task The_connection_string_cannot_change_while_OpenAsync_waits_so_a_connection_never_goes_back_to_another_pool()
    {
        var first = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=30", "a.db");
        var second = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=30", "b.db");
        Execute(first, "CREATE TABLE only_in_a (x)");
        var holder = new SaverDbConnection(first);
        holder.Open();
        using var connection = new SaverDbConnection(first);
        var opening = connection.OpenAsync();
        Wait.Until(() => SaverDataSource.GetShared(first).Statistics.Waiting == 1);

        Should.Throw<InvalidOperationException>(() => connection.ConnectionString = second).Message.ShouldContain("opening");
        holder.Close();
        await opening;
        connection.Close();
        connection.ConnectionString = second; // closed now

        Scalar(second, "SELECT count(*) FROM sqlite_master WHERE name = 'only_in_a'").ShouldBe(0L);
        SaverDataSource.GetShared(first).Statistics.InUse.ShouldBe(0);
    }

    [Test]
    public void Disposing_a_data_source_fails_its_waiters_with_ObjectDisposedException()
    {
        var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1;Pool Timeout=30"));
        var holder = dataSource.OpenConnection();
        var waiter = Task.Run(() => dataSource.OpenConnection());
        Wait.Until(() => dataSource.Statistics.Waiting == 1);

        dataSource.Dispose();

        Should.Throw<ObjectDisposedException>(() => waiter.GetAwaiter().GetResult());
        holder.Dispose();
        dataSource.Statistics.Total.ShouldBe(0);
        Should.Throw<ObjectDisposedException>(() => dataSource.OpenConnection());
    }

    /// <summary>
    /// Asynchronous waiters whose Pool Timeout ends as the data source is disposed get ObjectDisposedException or the
    /// pool's own timeout. Before, one that Dispose had failed as its wait timed out got a bare "The operation has
    /// timed out." TimeoutException, neither counted nor logged (a bug hunt's finding; it showed within a few rounds
    /// of these, as the timing of the Dispose moves across the timeout).
    /// </summary>
    [Test]
    public async Task Async_waiters_timing_out_as_the_data_source_is_disposed_get_ObjectDisposedException_or_the_pool_timeout()
    {
        for (var round = 0; round < 60; round++)
        {
            var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1;Pool Timeout=0.03", $"{round}.db"));
            var holder = dataSource.OpenConnection();
            var waiters = Enumerable.Range(0, 24).Select(_ => Task.Run(async () =>
            {
                await using var connection = await dataSource.OpenConnectionAsync();
            })).ToArray();
            Wait.Until(() => dataSource.Statistics.Waiting > 20 || waiters.Any(waiter => waiter.IsCompleted));
            var until = System.Diagnostics.Stopwatch.GetTimestamp() + (System.Diagnostics.Stopwatch.Frequency * (25 + (round % 10)) / 1000);
            SpinWait.SpinUntil(() => System.Diagnostics.Stopwatch.GetTimestamp() >= until); // around the timeout

            dataSource.Dispose();

            foreach (var waiter in waiters)
            {
                var error = await Should.ThrowAsync<Exception>(waiter.WaitAsync(TimeSpan.FromSeconds(30)));
                if (error is not ObjectDisposedException)
                {
                    error.ShouldBeOfType<PoolTimeoutException>().Message.ShouldContain("Pool Timeout=0.03 s");
                }
            }

            holder.Dispose();
        }
    }

    /// <summary>The Pool Timeout error names the value as written: before, 0.07 was 0.0700001, rounded up a tick (a bug hunt's finding).</summary>
    [TestCase("0.07")]
    [TestCase("1.11")]
    public void The_pool_timeout_error_names_Pool_Timeout_as_written(string poolTimeout)
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString($"Max Pool Size=1;Pool Timeout={poolTimeout}"));
        using var holder = dataSource.OpenConnection();

        Should.Throw<PoolTimeoutException>(() => dataSource.OpenConnection()).Message.ShouldContain($"Pool Timeout={poolTimeout} s:");
    }

    [Test]
    public void Open_and_Close_of_a_pooled_connection_allocate_nothing()
    {
#if DEBUG
        Assert.Ignore("Debug builds compile async state machines as classes, so Rent allocates one; make test runs Release.");
#endif
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        connection.Close();

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            connection.Open();
            connection.Close();
        }

        (GC.GetAllocatedBytesForCurrentThread() - before).ShouldBe(0);
    }

    /// <summary>
    /// An application that builds a new connection string for every open (its keywords spaced, cased or ordered anew)
    /// gets one pool per database and options, as always, but the process-wide table that
    /// finds a string's data source keeps at most <see cref="SaverDataSource.MaxSharedConnectionStrings"/> strings;
    /// those past it are parsed at each open. Before, it kept every string it ever saw.
    /// </summary>
    [Test]
    public void The_table_of_connection_strings_seen_stays_bounded_and_strings_past_it_still_find_their_pool()
    {
        var connectionString = Folder.ConnectionString("Retry=8");
        var dataSource = SaverDataSource.GetShared(connectionString);
        for (var i = 0; i <= SaverDataSource.MaxSharedConnectionStrings; i++)
        {
            // The same keywords and values, spaced differently: a string of its own, the same pool.
            var spelling = $"{connectionString};{new string(' ', i % 64)}Retry={new string(' ', i / 64)}8";
            SaverDataSource.GetShared(spelling).ShouldBeSameAs(dataSource);
        }

        SaverDataSource.SharedConnectionStringCount.ShouldBeLessThanOrEqualTo(SaverDataSource.MaxSharedConnectionStrings);
        using var connection = new SaverDbConnection($"{connectionString}; Retry = 8 ;;");
        connection.Open();
        dataSource.Statistics.InUse.ShouldBe(1);
    }

    [Test]
    public void Strings_naming_different_files_or_passwords_never_share_a_pool_whatever_their_values_hold()
    {
        // The pool key joined the values with a control character: a file name, or a password, holding it and the
        // rest of a key spelled out another string's key, and that string's renters got this one's file and password.
        const string Separator = "\u001f";
        var file = Folder.File("a.db");
        var tail = string.Join(Separator, "", "Mode=ReadWriteCreate", "Cache=Default", "Password=", "Foreign Keys=", "Recursive Triggers=False", "Default Timeout=30", "Vfs=");
        var tricky = new SaverConnectionStringBuilder { DataSource = file + tail + "unix" }.ConnectionString;
        var plain = new SaverConnectionStringBuilder { DataSource = file, Vfs = "unix" + tail }.ConnectionString;

        SaverDataSource.GetShared(tricky).ShouldNotBeSameAs(SaverDataSource.GetShared(plain));
        new SaverDbConnection(plain).DataSource.ShouldBe(file);
    }

    internal static void Execute(string connectionString, string sql)
    {
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    internal static object? Scalar(string connectionString, string sql)
    {
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    /// <summary>The pool of a data source opened once and disposed, held weakly; a method of its own, so that nothing of it stays on the caller's stack.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference DisposedPool(string connectionString)
    {
        using var dataSource = SaverDataSource.Create(connectionString);
        dataSource.OpenConnection().Dispose();
        return new WeakReference(dataSource.Pool);
    }

    /// <summary>Physical connections as the connection initializer sees them open, and the most it found open before one.</summary>
    private sealed class OpenedConnections
    {
        private readonly List<SqliteConnection> _opened = [];

        public int MostOthersOpen { get; private set; }

        public int Count
        {
            get
            {
                lock (_opened)
                {
                    return _opened.Count;
                }
            }
        }

        public void Add(SqliteConnection connection)
        {
            lock (_opened)
            {
                MostOthersOpen = Math.Max(MostOthersOpen, _opened.Count(c => c.State == ConnectionState.Open));
                _opened.Add(connection);
            }
        }
    }
}
