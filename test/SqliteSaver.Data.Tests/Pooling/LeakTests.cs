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
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(provider).SetMinimumLevel(LogLevel.Debug));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1;Pool Timeout=1"))
            .UseLoggerFactory(loggerFactory)
            .Build();

        OpenAndForget(dataSource, "SELECT 1");
        Collect(() => dataSource.Statistics.Leaked == 1);

        dataSource.Statistics.Total.ShouldBe(0); // closed, not reused: its state is unknown
        using var connection = dataSource.OpenConnection(); // the only slot is free again
        dataSource.Statistics.Total.ShouldBe(1);
        var warning = provider.Collector.GetSnapshot().Where(r => r.Level == LogLevel.Warning).ShouldHaveSingleItem();
        warning.Id.Id.ShouldBe(1005);
        var opened = provider.Collector.GetSnapshot().Where(r => r.Id.Id == 1001).Select(r => r.GetStructuredStateValue("ConnectionId")).ToList();
        opened.ShouldContain(warning.GetStructuredStateValue("ConnectionId")); // names the physical connection it closed, as its open was logged
    }

    /// <summary>
    /// README: "closed (1002, and why)": the physical connection of a collected connection is closed because it was
    /// collected, not because "it could not be reset" (a hunt: that reason falling through passed before).
    /// </summary>
    [Test]
    public void The_physical_connection_of_a_collected_connection_is_logged_as_closed_because_it_was_collected()
    {
        var provider = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(provider).SetMinimumLevel(LogLevel.Debug));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0")).UseLoggerFactory(loggerFactory).Build();

        OpenAndForget(dataSource, "SELECT 1");
        Collect(() => dataSource.Statistics.Leaked == 1 && dataSource.Statistics.Total == 0);

        var leaked = provider.Collector.GetSnapshot().Single(r => r.Id.Id == 1005).GetStructuredStateValue("ConnectionId");
        var closed = provider.Collector.GetSnapshot().Where(r => r.Id.Id == 1002 && r.GetStructuredStateValue("ConnectionId") == leaked).ShouldHaveSingleItem();
        closed.Message.ShouldEndWith(": its SaverDbConnection was garbage collected while open");
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

    [Test]
    public void A_writer_queued_behind_a_leaked_write_transaction_gets_the_write_lock_with_the_gate()
    {
        // Without waits for the lock or retries, the queued writer fails with SQLITE_BUSY if the gate is handed on
        // while the leaked connection still holds SQLite's write lock.
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Busy Timeout=0;Retry=0"));
        using (var setup = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(setup, "CREATE TABLE t (x)");
        }

        for (var round = 1; round <= 10; round++)
        {
            BeginAndForget(dataSource);
            var writer = Task.Factory.StartNew(
                () =>
                {
                    using var connection = dataSource.OpenConnection();
                    ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)");
                },
                TaskCreationOptions.LongRunning);
            Wait.Until(() => writer.IsCompleted || dataSource.Executor.Gate!.WaitingCount == 1);
            Collect(() => dataSource.Statistics.Leaked == round);
            writer.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        }

        using var check = dataSource.OpenConnection();
        ConnectionTests.Scalar(check, "SELECT group_concat(x) FROM t").ShouldBe("2,2,2,2,2,2,2,2,2,2");
    }

    [Test]
    public void A_reader_still_in_use_keeps_its_connection_from_being_reclaimed()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1"));
        using (var setup = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(setup, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3)");
        }

        var holder = new ReaderHolder();
        var connection = ReadWithoutKeepingTheConnection(dataSource, holder);
        for (var i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        IsAlive(connection).ShouldBeTrue(); // the reader's command holds it
        ReadNext(holder).ShouldBe(2L);
        dataSource.Statistics.Leaked.ShouldBe(0);

        holder.Reader = null; // now nothing holds the connection: it leaks, and is taken back
        Collect(() => dataSource.Statistics.Leaked == 1 && dataSource.Statistics.Total == 0);
    }

    /// <summary>Opens a connection and a reader on it, keeping only the reader (and a weak reference to the connection).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference<SaverDbConnection> ReadWithoutKeepingTheConnection(SaverDataSource dataSource, ReaderHolder holder)
    {
        var connection = dataSource.OpenConnection();
        var command = connection.CreateCommand();
        command.CommandText = "SELECT x FROM t ORDER BY x";
        holder.Reader = command.ExecuteReader();
        holder.Reader.Read().ShouldBeTrue();
        return new WeakReference<SaverDbConnection>(connection);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool IsAlive(WeakReference<SaverDbConnection> connection) => connection.TryGetTarget(out _);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static long ReadNext(ReaderHolder holder)
    {
        holder.Reader!.Read().ShouldBeTrue();
        return holder.Reader.GetInt64(0);
    }

    private sealed class ReaderHolder
    {
        public System.Data.Common.DbDataReader? Reader { get; set; }
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

    internal static void Collect(Func<bool> reclaimed)
        => Wait.Until(() =>
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            return reclaimed();
        });
}
