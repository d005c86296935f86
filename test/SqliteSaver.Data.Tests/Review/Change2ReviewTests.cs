using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Shouldly;

namespace SqliteSaver.Data.Tests.Review;

/// <summary>Defects found reviewing 475ae97..cbcdf13 (on-close/over-limit checkpoints, CommandTimeout-bounded backoff, pool counts).</summary>
public class Change2ReviewTests : DatabaseTest
{
    /// <summary>
    /// README ("A database file deleted or replaced under an open pool"): "clear the pool, then delete or replace the
    /// file, and open it again only once the connections rented before the clear are back (Statistics.InUse is 0): until
    /// then they keep the old -wal file at the path". Counts() now leaves out connections still closing, so InUse (and
    /// Total) drop to 0 as soon as such a connection is taken out of the pool, while it still has the files open and runs
    /// Checkpoint On Close on them (a PASSIVE copy, then a TRUNCATE that may wait 250 ms for another checkpoint and
    /// more for readers). A slow close is stood for by a slow logger of its PASSIVE checkpoint.
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
    /// The change bounded the on-demand Checkpoint's wait for the checkpointer's lock (423d9c5 named GetWalStatus too),
    /// but GetWalStatus still takes that lock without a bound: while a background TRUNCATE for a -wal file past the
    /// limit holds it (now through a PASSIVE copy of the whole WAL, the wait at the write gate and the TRUNCATE's
    /// 250 ms of tries), GetWalStatus, "cheap for a health check" (README) and called by SaverHealthCheck, waits it all
    /// out. A long copy is stood for by a slow logger of the background PASSIVE checkpoint.
    /// </summary>
    [Test]
    public async Task GetWalStatus_does_not_wait_out_a_background_checkpoint_that_holds_the_checkpointer()
    {
        var time = new FakeTimeProvider();
        var armed = 0;
        using var inCopy = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        using var loggerFactory = LoggerFactory.Create(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(new HookLoggerProvider((id, message) =>
        {
            // The over-limit TRUNCATE's PASSIVE copy, under the checkpointer's lock.
            if (id == 3001 && message.StartsWith("Passive", StringComparison.Ordinal) && Interlocked.Exchange(ref armed, 0) == 1)
            {
                inCopy.Set();
                release.Wait(TimeSpan.FromSeconds(20));
            }
        })));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=1;Wal Autocheckpoint=0;Journal Size Limit=4096"))
            .UseTimeProvider(time)
            .UseLoggerFactory(loggerFactory)
            .Build();
        using var connection = dataSource.OpenConnection();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x)");
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (randomblob(100000))");

        Volatile.Write(ref armed, 1);
        var tick = Task.Run(() => time.Advance(TimeSpan.FromSeconds(1)));
        inCopy.Wait(TimeSpan.FromSeconds(10)).ShouldBeTrue();

        var onDemand = Task.Run(() => dataSource.Checkpoint());
        var status = Task.Run(() => dataSource.GetWalStatus());
        var checkpointReturned = onDemand.Wait(TimeSpan.FromSeconds(10));
        var statusReturned = status.Wait(TimeSpan.FromSeconds(10));
        release.Set();
        await tick;
        await status;

        checkpointReturned.ShouldBeTrue(); // the on-demand checkpoint gives up after 250 ms, as the change has it
        statusReturned.ShouldBeTrue("GetWalStatus waited for the background checkpoint's whole run on the checkpointer's lock");
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
