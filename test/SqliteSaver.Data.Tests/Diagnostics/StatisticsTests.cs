using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Diagnostics;

public class StatisticsTests : DatabaseTest
{
    [Test]
    public async Task Total_idle_in_use_and_waiting_follow_the_pool()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=2"));
        dataSource.Statistics.ShouldBe(Expected(total: 0, idle: 0, inUse: 0, waiting: 0));

        var first = dataSource.OpenConnection();
        var second = dataSource.OpenConnection();
        var third = dataSource.OpenConnectionAsync().AsTask();
        Wait.Until(() => dataSource.Statistics.Waiting == 1);
        dataSource.Statistics.ShouldBe(Expected(total: 2, idle: 0, inUse: 2, waiting: 1));

        first.Dispose();
        (await third).Dispose();
        dataSource.Statistics.ShouldBe(Expected(total: 2, idle: 1, inUse: 1, waiting: 0));

        second.Dispose();
        dataSource.Statistics.ShouldBe(Expected(total: 2, idle: 2, inUse: 0, waiting: 0));
    }

    /// <summary>
    /// A connection the pool is closing keeps its files open, and runs the final checkpoint on them: it counts as in
    /// use until it is closed (read here from the log of that checkpoint, which runs on it before it closes). It is no
    /// renter's, though: the health check, which calls the pool exhausted when its renters reach Max Pool Size, opens a
    /// connection then, waiting only for that close (a hunt's mutation counted it as a renter).
    /// </summary>
    [Test]
    public void A_connection_being_closed_counts_as_in_use_until_it_is_closed()
    {
        SaverDataSource? dataSource = null;
        SaverDataSourceStatistics? duringFinalCheckpoint = null;
        var rentersThen = -1;
        var logs = FakeLogCollector.Create(new FakeLogCollectorOptions
        {
            OutputSink = line =>
            {
                if (duringFinalCheckpoint is null && line.Contains("checkpoint on", StringComparison.Ordinal))
                {
                    (duringFinalCheckpoint, rentersThen) = (dataSource!.Statistics, dataSource.Pool.Renters());
                }
            },
        });
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(new FakeLoggerProvider(logs)).SetMinimumLevel(LogLevel.Debug));
        using (dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=2;Checkpoint Interval=0")).UseLoggerFactory(loggerFactory).Build())
        {
            using (var connection = dataSource.OpenConnection())
            {
                ConnectionTests.Exec(connection, "CREATE TABLE t (x)");
            }
            dataSource.Clear(); // its idle connection is the last: the final TRUNCATE of Checkpoint On Close runs on it
        }

        var seen = duringFinalCheckpoint.ShouldNotBeNull();
        (seen.Total, seen.Idle, seen.InUse).ShouldBe((1, 0, 1));
        rentersThen.ShouldBe(0);
    }

    [Test]
    public void Timeouts_retries_and_the_last_checkpoint_are_counted()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=0.05;Retry=2;Base Delay=0.001;Busy Timeout=0;Checkpoint Interval=0");
        using var dataSource = SaverDataSource.Create(connectionString);
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using (var connection = dataSource.OpenConnection())
        {
            Should.Throw<TimeoutException>(() => dataSource.OpenConnection());
            using var holder = HoldWriteLock();

            Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)"));
        }

        var result = dataSource.Checkpoint(CheckpointMode.Passive);

        var statistics = dataSource.Statistics;
        statistics.Timeouts.ShouldBe(1);
        statistics.Retries.ShouldBe(2);
        statistics.TransientErrors.ShouldBe(3);
        statistics.RetriesExhausted.ShouldBe(1);
        statistics.LockTimeouts.ShouldBe(0);
        statistics.Leaked.ShouldBe(0);
        statistics.LastCheckpointResult.ShouldBe(result);
        statistics.LastCheckpointTime.ShouldNotBeNull();
    }

    /// <summary>
    /// A command, a BeginTransaction and an asynchronous command whose CommandTimeout (1 s) runs out while they wait for
    /// a lock: another connection's, then this process's write queue behind a transaction of the data source. Each is
    /// a lock timeout, not retries exhausted: Busy Timeout (5 s) and Retry (5) would wait longer, as with the defaults
    /// (6 attempts of 5 s against a Default Timeout of 30 s) for any lock held past 30 s. Before, a new user's trial
    /// found, nothing counted or logged them.
    /// </summary>
    [Test]
    public async Task Lock_waits_that_outlast_the_CommandTimeout_are_counted_as_lock_timeouts()
    {
        var connectionString = Folder.ConnectionString("Default Timeout=1;Busy Timeout=5000;Retry=5;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = SaverDataSource.Create(connectionString);
        using (var holder = HoldWriteLock())
        {
            using var connection = dataSource.OpenConnection();
            Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)")).Message.ShouldContain("for a lock another connection held");
            Should.Throw<SqliteException>(() => connection.BeginTransaction()).Message.ShouldContain("for a lock another connection held");
        }

        await using var first = dataSource.OpenConnection();
        await using var second = dataSource.OpenConnection();
        using var transaction = first.BeginTransaction();
        await using var command = second.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (2)";
        (await Should.ThrowAsync<SqliteException>(() => command.ExecuteNonQueryAsync())).Message.ShouldContain("in this process's write queue");

        var statistics = dataSource.Statistics;
        statistics.LockTimeouts.ShouldBe(3);
        statistics.RetriesExhausted.ShouldBe(0);
        statistics.Retries.ShouldBe(0);
    }

    /// <summary>Retries count attempts run again: one whose backoff delay is cancelled never runs.</summary>
    [Test]
    public async Task A_retry_cancelled_during_its_backoff_is_not_counted_as_an_attempt_run_again()
    {
        var connectionString = Folder.ConnectionString("Retry=3;Base Delay=60;Max Delay=60;Jitter=0;Busy Timeout=0;Default Timeout=0;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = SaverDataSource.Create(connectionString);
        using var holder = HoldWriteLock();
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1)";
        using var cancellation = new CancellationTokenSource();

        var write = command.ExecuteNonQueryAsync(cancellation.Token);
        Wait.Until(() => dataSource.Statistics.TransientErrors == 1); // the first attempt met SQLITE_BUSY; a 60 s backoff starts
        await cancellation.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(write);

        dataSource.Statistics.TransientErrors.ShouldBe(1);
        dataSource.Statistics.Retries.ShouldBe(0); // the one attempt was never run again
    }

    /// <summary>As above for a synchronous write, which Cancel() stops in its backoff (a hunt: counting it passed).</summary>
    [Test]
    public void A_synchronous_retry_cancelled_during_its_backoff_is_not_counted_as_an_attempt_run_again()
    {
        var connectionString = Folder.ConnectionString("Retry=3;Base Delay=60;Max Delay=60;Jitter=0;Busy Timeout=0;Default Timeout=0;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = SaverDataSource.Create(connectionString);
        using var holder = HoldWriteLock();
        using var connection = dataSource.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1)";

        var write = Task.Factory.StartNew(command.ExecuteNonQuery, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Wait.Until(() => dataSource.Statistics.TransientErrors == 1); // the first attempt met SQLITE_BUSY; a 60 s backoff starts
        command.Cancel();
        Should.Throw<SqliteException>(() => write.WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult()).SqliteErrorCode.ShouldBe(9);

        dataSource.Statistics.TransientErrors.ShouldBe(1);
        dataSource.Statistics.Retries.ShouldBe(0); // the one attempt was never run again
    }

    /// <summary>The last checkpoint's time is the data source's clock's (a hunt: the system clock's passed before).</summary>
    [Test]
    public void The_last_checkpoint_time_comes_from_the_data_sources_clock()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0")).UseTimeProvider(time).Build();
        time.Advance(TimeSpan.FromMinutes(5));

        dataSource.Checkpoint(CheckpointMode.Passive);

        dataSource.Statistics.LastCheckpointTime.ShouldBe(time.GetUtcNow());
    }

    [Test]
    public void The_name_is_the_connection_string_without_its_password_unless_one_is_given()
    {
        using var unnamed = SaverDataSource.Create(Folder.ConnectionString("Password=secret;Max Pool Size=3"));
        using var named = new SaverDataSourceBuilder(Folder.ConnectionString()) { Name = "orders" }.Build();

        unnamed.Name.ShouldNotContain("secret");
        unnamed.Name.ShouldContain("Max Pool Size=3");
        named.Name.ShouldBe("orders");
    }

    private static SaverDataSourceStatistics Expected(int total, int idle, int inUse, int waiting) => new()
    {
        Total = total,
        Idle = idle,
        InUse = inUse,
        Waiting = waiting,
        MaxPoolSize = 2,
        Timeouts = 0,
        Retries = 0,
        TransientErrors = 0,
        RetriesExhausted = 0,
        LockTimeouts = 0,
        Leaked = 0,
    };
}
