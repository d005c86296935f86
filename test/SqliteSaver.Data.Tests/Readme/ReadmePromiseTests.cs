using Microsoft.Extensions.Logging;
using System.Data;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using SqliteSaver.Data.Diagnostics;
using static SqliteSaver.Data.Tests.ConnectionTests;

namespace SqliteSaver.Data.Tests.Readme;

/// <summary>README promises no other test covered, checked as written (a README audit).</summary>
public class ReadmePromiseTests : DatabaseTest
{
    private static List<CollectedMeasurement<long>> Mine(MetricCollector<long> collector, SaverDataSource dataSource)
        => collector.GetMeasurementSnapshot()
            .Where(m => Equals(m.Tags[SaverMetrics.PoolNameTag], dataSource.Name))
            .ToList();

    /// <summary>
    /// README: "`sqlitesaver.checkpoints` ... tagged ... `sqlitesaver.checkpoint.trigger`: ... `pool_drained` (Checkpoint On Close)"
    /// and "On close ... a `Truncate` checkpoint (again after a `Passive` one)"; "Visible: `dataSource.LastCheckpointResult`
    /// and `LastCheckpointTime` for the last checkpoint the data source ran, whether on demand, every interval, as a catch-up or on close".
    /// </summary>
    [Test]
    public void The_checkpoint_on_close_is_counted_as_pool_drained_truncate_and_is_the_last_checkpoint()
    {
        using var checkpoints = new MetricCollector<long>(SaverMetrics.Checkpoints);
        var dataSource = SaverDataSource.Create(Folder.ConnectionString("Checkpoint Interval=0"));
        using (var connection = dataSource.OpenConnection())
        {
            Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        }

        dataSource.LastCheckpointResult.ShouldBeNull();
        dataSource.Clear();

        var drained = Mine(checkpoints, dataSource)
            .Where(m => Equals(m.Tags["sqlitesaver.checkpoint.trigger"], "pool_drained"))
            .Select(m => (string)m.Tags["sqlitesaver.checkpoint.mode"]!)
            .ToList();
        drained.ShouldContain("truncate");
        drained.Last().ShouldBe("truncate");
        dataSource.LastCheckpointResult.ShouldNotBeNull();
        dataSource.LastCheckpointTime.ShouldNotBeNull();
        dataSource.Statistics.LastCheckpointResult.ShouldBe(dataSource.LastCheckpointResult);
        dataSource.Dispose();
        new FileInfo(Folder.File() + "-wal").Exists.ShouldBeFalse();
    }

    /// <summary>README: "with `Pooling=false` its renter does" (Checkpoint On Close: a Truncate checkpoint as the pool's last connection closes).</summary>
    [Test]
    public void With_Pooling_false_the_renters_close_runs_the_truncate_checkpoint()
    {
        using var checkpoints = new MetricCollector<long>(SaverMetrics.Checkpoints);
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Pooling=false;Checkpoint Interval=0"));
        using (var connection = dataSource.OpenConnection())
        {
            Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        }

        Mine(checkpoints, dataSource)
            .Select(m => ((string)m.Tags["sqlitesaver.checkpoint.trigger"]!, (string)m.Tags["sqlitesaver.checkpoint.mode"]!))
            .ShouldContain(("pool_drained", "truncate"));
    }

    /// <summary>
    /// README: "Checkpoint Mode ... a `-wal` file over `Journal Size Limit` always gets `Truncate`" and metrics trigger
    /// `wal_over_limit`; "Starvation: when the `-wal` file is larger than `Journal Size Limit`, the background checkpoint
    /// is a `Truncate` one, after a `Passive` one".
    /// </summary>
    [Test]
    public void A_wal_over_the_limit_gets_a_truncate_tagged_wal_over_limit_at_the_next_interval()
    {
        using var checkpoints = new MetricCollector<long>(SaverMetrics.Checkpoints);
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString(
                "Journal Size Limit=8192;Wal Autocheckpoint=0;Checkpoint Interval=10;Checkpoint Mode=Full"))
            .UseTimeProvider(time).Build();
        using var connection = dataSource.OpenConnection();
        Exec(connection, "CREATE TABLE t (x)");
        for (var i = 0; i < 20; i++)
        {
            Exec(connection, "INSERT INTO t VALUES (randomblob(4000))");
        }

        new FileInfo(Folder.File() + "-wal").Length.ShouldBeGreaterThan(8192);
        time.Advance(TimeSpan.FromSeconds(10));
        Wait.Until(() => Mine(checkpoints, dataSource).Any(m => Equals(m.Tags["sqlitesaver.checkpoint.trigger"], "wal_over_limit")
                                                                  && Equals(m.Tags["sqlitesaver.checkpoint.mode"], "truncate")));

        var tags = Mine(checkpoints, dataSource)
            .Select(m => ((string)m.Tags["sqlitesaver.checkpoint.trigger"]!, (string)m.Tags["sqlitesaver.checkpoint.mode"]!))
            .ToList();
        tags.ShouldNotContain(("interval", "full"));
        new FileInfo(Folder.File() + "-wal").Length.ShouldBeLessThanOrEqualTo(8192);
    }

    /// <summary>README: "`Wal Autocheckpoint=0` turns catch-ups off" (an on-demand checkpoint after many pages is the only one counted).</summary>
    [Test]
    public void With_Wal_Autocheckpoint_0_no_catch_up_runs()
    {
        using var checkpoints = new MetricCollector<long>(SaverMetrics.Checkpoints);
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=10;Journal Size Limit=-1"))
            .UseTimeProvider(time).Build();
        using var connection = dataSource.OpenConnection();
        Exec(connection, "CREATE TABLE t (x)");
        for (var i = 0; i < 300; i++)
        {
            Exec(connection, "INSERT INTO t VALUES (randomblob(3000))");
        }

        // A catch-up, had one been queued, runs on a pool thread and takes the checkpointer's lock; an on-demand
        // checkpoint waits for it, so once ours is recorded any queued catch-up would have been too.
        dataSource.Checkpoint();
        dataSource.Checkpoint();
        Mine(checkpoints, dataSource).Select(m => (string)m.Tags["sqlitesaver.checkpoint.trigger"]!).ShouldAllBe(t => t == "on_demand");
    }

    /// <summary>README: RunInTransaction "opens the connection if it is closed, and then closes it again when it returns or throws".</summary>
    [Test]
    public void RunInTransaction_opens_a_closed_connection_and_closes_it_again_when_it_returns_or_throws()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.RunInTransaction(tx => Exec(connection, "CREATE TABLE t (x)"));
        connection.State.ShouldBe(ConnectionState.Closed);

        Should.Throw<InvalidTimeZoneException>(() => connection.RunInTransaction(tx =>
        {
            Exec(connection, "INSERT INTO t VALUES (1)");
            throw new InvalidTimeZoneException("boom");
        }));
        connection.State.ShouldBe(ConnectionState.Closed);

        connection.Open();
        using var count = connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM t";
        ((long)count.ExecuteScalar()!).ShouldBe(0); // rolled back and rethrown
    }

    /// <summary>
    /// README: "`ConnectionTimeout` is the `Pool Timeout` (how long `Open` waits for a pooled connection), not 15";
    /// "`Pool Timeout` ... 0 to 2147483 seconds". ConnectionTimeout is whole seconds in ADO.NET.
    /// </summary>
    [Test]
    public void ConnectionTimeout_is_the_Pool_Timeout()
    {
        new SaverDbConnection(Folder.ConnectionString()).ConnectionTimeout.ShouldBe(30);
        new SaverDbConnection(Folder.ConnectionString("Pool Timeout=7")).ConnectionTimeout.ShouldBe(7);
    }

    /// <summary>
    /// README: "a `SaverDataSource` ... `transaction.IsolationLevel` is always `Serializable`" and
    /// "`ReadUncommitted` begins deferred".
    /// </summary>
    [Test]
    public void Every_transaction_reports_Serializable()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        foreach (var level in new[] { IsolationLevel.Unspecified, IsolationLevel.ReadUncommitted, IsolationLevel.ReadCommitted, IsolationLevel.RepeatableRead, IsolationLevel.Serializable })
        {
            using var transaction = connection.BeginTransaction(level);
            transaction.IsolationLevel.ShouldBe(IsolationLevel.Serializable);
            transaction.Rollback();
        }
    }

    /// <summary>
    /// README (Statistics): "`dataSource.Statistics` is a snapshot ... `Total`, `Idle`, `InUse`, `Waiting`, `MaxPoolSize`,
    /// ... It is a record, so `Console.WriteLine(dataSource.Statistics)` prints every field."
    /// </summary>
    [Test]
    public void Statistics_prints_every_field()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=3"));
        var text = dataSource.Statistics.ToString();
        foreach (var field in new[] { "Total", "Idle", "InUse", "Waiting", "MaxPoolSize", "Timeouts", "Retries", "TransientErrors", "RetriesExhausted", "LockTimeouts", "Leaked", "LastCheckpointResult", "LastCheckpointTime" })
        {
            text.ShouldContain(field + " = ");
        }

        text.ShouldContain("MaxPoolSize = 3");
    }

    /// <summary>
    /// README: "`Min Pool Size` ... Open connections kept however long they are unused: idle pruning closes none while this
    /// many or fewer are open, rented ones included"; "`Connection Idle Lifetime` ... Idle connections above `Min Pool Size`
    /// close after this long"; "Checkpoint On Close ... idle pruning closes it".
    /// </summary>
    [Test]
    public void Idle_pruning_counts_rented_connections_toward_Min_Pool_Size_and_a_drained_pool_checkpoints()
    {
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Min Pool Size=2;Connection Idle Lifetime=60;Checkpoint Interval=0"))
            .UseTimeProvider(time).Build();
        var a = dataSource.OpenConnection();
        var b = dataSource.OpenConnection();
        var c = dataSource.OpenConnection();
        Exec(a, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        b.Dispose();
        c.Dispose();
        dataSource.Statistics.Total.ShouldBe(3);

        for (var i = 0; i < 10; i++)
        {
            time.Advance(TimeSpan.FromSeconds(30));
        }

        Wait.Until(() => dataSource.Statistics.Total == 2);
        dataSource.Statistics.InUse.ShouldBe(1);
        dataSource.Statistics.Idle.ShouldBe(1);
        a.Dispose();
    }

    /// <summary>README: "`Connection Idle Lifetime` ... 0 keeps them" and "Checkpoint On Close ... idle pruning closes it".</summary>
    [Test]
    public void Idle_pruning_of_the_last_connection_runs_the_pool_drained_checkpoint_and_lifetime_0_keeps_them()
    {
        using var checkpoints = new MetricCollector<long>(SaverMetrics.Checkpoints);
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Connection Idle Lifetime=60;Checkpoint Interval=0"))
            .UseTimeProvider(time).Build();
        using (var connection = dataSource.OpenConnection())
        {
            Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        }

        for (var i = 0; i < 10; i++)
        {
            time.Advance(TimeSpan.FromSeconds(30));
        }

        Wait.Until(() => dataSource.Statistics.Total == 0);
        Wait.Until(() => Mine(checkpoints, dataSource).Any(m => Equals(m.Tags["sqlitesaver.checkpoint.trigger"], "pool_drained")));

        using var keeping = new SaverDataSourceBuilder(Folder.ConnectionString("Connection Idle Lifetime=0;Checkpoint Interval=0", "keep.db"))
            .UseTimeProvider(time).Build();
        keeping.OpenConnection().Dispose();
        for (var i = 0; i < 10; i++)
        {
            time.Advance(TimeSpan.FromSeconds(3600));
        }

        keeping.Statistics.Total.ShouldBe(1);
    }

    /// <summary>README: "`true` and `false` may also be written `yes`/`no` or `1`/`0`"; "A known keyword with an empty value (`Busy Timeout=`) keeps its default".</summary>
    [Test]
    public void Booleans_take_yes_no_1_0_and_an_empty_value_keeps_the_default()
    {
        var builder = new SaverConnectionStringBuilder("Data Source=x.db;Pooling=no;Write Gate=0;Foreign Keys=1;Recursive Triggers=yes;Busy Timeout=;Max Pool Size=");
        builder.Pooling.ShouldBeFalse();
        builder.WriteGate.ShouldBeFalse();
        builder.ForeignKeys.ShouldBe(true);
        builder.RecursiveTriggers.ShouldBeTrue();
        builder.BusyTimeout.ShouldBe(TimeSpan.FromMilliseconds(5000));
        builder.MaxPoolSize.ShouldBe(16);
        using var connection = new SaverDbConnection(Folder.ConnectionString("Busy Timeout=;Foreign Keys=yes"));
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA busy_timeout";
        ((long)command.ExecuteScalar()!).ShouldBe(5000);
        command.CommandText = "PRAGMA foreign_keys";
        ((long)command.ExecuteScalar()!).ShouldBe(1);
    }

    /// <summary>README table: the PRAGMA defaults actually applied to a physical connection.</summary>
    [Test]
    public void The_documented_pragma_defaults_are_applied()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        (string Pragma, object Expected)[] expected =
        [
            ("busy_timeout", 5000L), ("journal_mode", "wal"), ("synchronous", 1L), ("journal_size_limit", 67108864L),
            ("wal_autocheckpoint", 1000L), ("recursive_triggers", 0L), ("foreign_keys", 1L),
        ];
        foreach (var (pragma, value) in expected)
        {
            command.CommandText = "PRAGMA " + pragma;
            command.ExecuteScalar().ShouldBe(value, pragma);
        }

        connection.CreateCommand().CommandTimeout.ShouldBe(30);
    }

    /// <summary>
    /// README metrics: "`db.client.connection.timeouts` ... Callers that gave up after `Pool Timeout`";
    /// "`db.client.connection.wait_time` ... Obtaining a connection from the pool (Open), when it got one"; Logging:
    /// "pool timeout (1004)". A cancelled wait is no timeout, and neither a timed-out nor a cancelled wait is a wait time.
    /// </summary>
    [Test]
    public async Task A_cancelled_or_timed_out_pool_wait_records_no_wait_time_and_only_the_timeout_counts()
    {
        using var waitTime = new MetricCollector<double>((object?)null, SaverMetrics.MeterName, "db.client.connection.wait_time");
        using var timeouts = new MetricCollector<long>((object?)null, SaverMetrics.MeterName, "db.client.connection.timeouts");
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1;Pool Timeout=0.2;Checkpoint Interval=0"));
        using var held = dataSource.OpenConnection();
        waitTime.Clear();

        using var cancellation = new CancellationTokenSource();
        var waiting = dataSource.OpenConnectionAsync(cancellation.Token).AsTask();
        Wait.Until(() => dataSource.Statistics.Waiting == 1);
        await cancellation.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(waiting);
        dataSource.Statistics.Timeouts.ShouldBe(0);

        Should.Throw<TimeoutException>(() => dataSource.OpenConnection());
        dataSource.Statistics.Timeouts.ShouldBe(1);
        timeouts.GetMeasurementSnapshot().Where(m => Equals(m.Tags[SaverMetrics.PoolNameTag], dataSource.Name)).Sum(m => m.Value).ShouldBe(1);
        waitTime.GetMeasurementSnapshot().Count(m => Equals(m.Tags[SaverMetrics.PoolNameTag], dataSource.Name)).ShouldBe(0);
    }

    /// <summary>
    /// README: "A synchronous execution ... started meanwhile blocks its thread until they have ended, at most its
    /// `CommandTimeout` (... the others throw SQLITE_BUSY)" and "`sqlitesaver.lock_timeouts` ... A command's wait for its
    /// connection's earlier asynchronous execution is not counted."
    /// </summary>
    [Test]
    public async Task A_sync_command_behind_a_waiting_async_one_throws_busy_and_is_no_lock_timeout()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Checkpoint Interval=0"));
        using (var setup = dataSource.OpenConnection())
        {
            Exec(setup, "CREATE TABLE t (x)");
        }

        await using var holder = await dataSource.OpenConnectionAsync();
        await using var connection = await dataSource.OpenConnectionAsync();
        var transaction = await holder.BeginTransactionAsync(); // holds the process's write gate
        using var write = connection.CreateCommand();
        write.CommandText = "INSERT INTO t VALUES (1)";
        var pending = write.ExecuteNonQueryAsync();
        pending.IsCompleted.ShouldBeFalse("the write waits at the gate");

        using var quick = connection.CreateCommand();
        quick.CommandText = "SELECT 1";
        quick.CommandTimeout = 1;
        var error = await Task.Run(() => Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => quick.ExecuteScalar()));
        await transaction.RollbackAsync();
        await transaction.DisposeAsync();
        (await pending.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBe(1);

        error.SqliteErrorCode.ShouldBe(5);
        dataSource.Statistics.LockTimeouts.ShouldBe(0);
    }

    /// <summary>
    /// README Logging: "`SqliteSaver.Data.Checkpoint` ... Warning ... a background checkpoint (or the final one of
    /// `Checkpoint On Close`) that failed (3004)"; "The numbers are the messages' `EventId`s".
    /// </summary>
    [Test]
    public void A_failed_final_checkpoint_is_logged_as_warning_3004_in_the_checkpoint_category()
    {
        var provider = new Microsoft.Extensions.Logging.Testing.FakeLoggerProvider();
        using var factory = Microsoft.Extensions.Logging.LoggerFactory.Create(logging => logging.AddProvider(provider).SetMinimumLevel(Microsoft.Extensions.Logging.LogLevel.Debug));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0")).UseLoggerFactory(factory).Build();
        var connection = dataSource.OpenConnection();
        Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        dataSource.Clear();
        connection.InnerConnection.Close(); // the final TRUNCATE of Checkpoint On Close then fails on it
        connection.Close();

        dataSource.LastCheckpointError.ShouldNotBeNull();
        var warning = provider.Collector.GetSnapshot().Single(r => r.Level == Microsoft.Extensions.Logging.LogLevel.Warning);
        (warning.Id.Id, warning.Category).ShouldBe((3004, "SqliteSaver.Data.Checkpoint"));
    }
}
