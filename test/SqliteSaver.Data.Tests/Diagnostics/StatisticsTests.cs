using Microsoft.Data.Sqlite;
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
        statistics.Leaked.ShouldBe(0);
        statistics.LastCheckpoint.ShouldBe(result);
        statistics.LastCheckpointTime.ShouldNotBeNull();
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
        Leaked = 0,
    };
}
