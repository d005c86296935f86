using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Shouldly;

namespace SqliteSaver.Data.Tests.Pooling;

public class LeakTests : DatabaseTest
{
    [Test]
    public void A_connection_never_closed_comes_back_to_the_pool_once_collected_counted_and_logged()
    {
        var provider = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(provider));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1;Pool Timeout=1"))
            .UseLoggerFactory(loggerFactory)
            .Build();

        OpenAndForget(dataSource, "SELECT 1");
        Collect(() => dataSource.Statistics.Idle == 1);

        using var connection = dataSource.OpenConnection(); // the only slot is free again
        var statistics = dataSource.Statistics;
        statistics.Leaked.ShouldBe(1);
        statistics.Total.ShouldBe(1);
        var warning = provider.Collector.GetSnapshot().Where(r => r.Level == LogLevel.Warning).ShouldHaveSingleItem();
        warning.Id.Id.ShouldBe(1005);
    }

    [Test]
    public void A_leaked_write_transaction_is_rolled_back_and_its_write_gate_left()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=2"));
        using (var setup = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(setup, "CREATE TABLE t (x)");
        }

        BeginAndForget(dataSource);
        Collect(() => dataSource.Statistics.Leaked == 1 && dataSource.Statistics.InUse == 0);

        using var connection = dataSource.OpenConnection();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)"); // would wait forever behind a gate still held
        ConnectionTests.Scalar(connection, "SELECT group_concat(x) FROM t").ShouldBe("2");
    }

    /// <summary>Opens a connection in a frame of its own, so nothing on the test's stack keeps it alive.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void OpenAndForget(SaverDataSource dataSource, string sql)
    {
        var connection = dataSource.OpenConnection();
        ConnectionTests.Scalar(connection, sql);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void BeginAndForget(SaverDataSource dataSource)
    {
        var connection = dataSource.OpenConnection();
        var transaction = connection.BeginTransaction();
        using var insert = connection.CreateCommand();
        insert.Transaction = transaction;
        insert.CommandText = "INSERT INTO t VALUES (1)";
        insert.ExecuteNonQuery();
    }

    private static void Collect(Func<bool> reclaimed)
        => Wait.Until(() =>
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            return reclaimed();
        });
}
