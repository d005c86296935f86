using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Review;

/// <summary>Defects found by the review of the library's diagnostics: metrics, logs, statistics.</summary>
public class DiagnosticsReviewTests : DatabaseTest
{
    /// <summary>
    /// README, Logging: "A metrics listener or a logger that throws loses that measurement or message; the pool, the
    /// write gate and the caller's operation carry on as if nobody listened". Microsoft.Extensions.Logging's logger
    /// rethrows what a provider's IsEnabled throws (as an AggregateException), and Telemetry.StartOpening asks the pool
    /// logger IsEnabled(Debug) outside any try, so opening a physical connection fails.
    /// </summary>
    [Test]
    public void A_logger_whose_IsEnabled_throws_does_not_fail_Open()
    {
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(new IsEnabledThrowingProvider()).SetMinimumLevel(LogLevel.Trace));
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0")).UseLoggerFactory(loggerFactory).Build();

        var opened = Should.NotThrow(() => dataSource.OpenConnection());

        using (opened)
        {
            ConnectionTests.Scalar(opened, "SELECT 1").ShouldBe(1L);
        }

        Should.NotThrow(() => dataSource.Checkpoint()); // the checkpoint connection is opened the same way
    }

    /// <summary>
    /// README, Logging: category SqliteSaver.Data.Pool logs each physical connection "opened (with how long it took),
    /// ... closed (and why)". The checkpoint connection (and a pooled in-memory database's keep-alive connection) is
    /// opened through PhysicalConnectionFactory, which logs 1001 "Opened physical connection N", but Checkpointer.Close
    /// (and ConnectionPool.Clear for the anchor) disposes it without Telemetry.Closed: the log shows connections that
    /// opened and never closed, though the data source was disposed and nothing is open.
    /// </summary>
    [TestCase("file")]
    [TestCase("memory")]
    public void Every_physical_connection_logged_as_opened_is_logged_as_closed(string database)
    {
        var provider = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(provider).SetMinimumLevel(LogLevel.Debug));
        var connectionString = database == "file" ? Folder.ConnectionString("Checkpoint Interval=0") : "Data Source=:memory:";
        using (var dataSource = new SaverDataSourceBuilder(connectionString).UseLoggerFactory(loggerFactory).Build())
        {
            if (database == "file")
            {
                dataSource.Checkpoint(); // the pool has no connection open: the checkpoint connection opens, then closes again
            }

            dataSource.OpenConnection().Dispose();
        }

        var pool = provider.Collector.GetSnapshot().Where(r => r.Category == "SqliteSaver.Data.Pool").ToList();
        var opened = pool.Where(r => r.Id.Id == 1001).Select(r => r.GetStructuredStateValue("ConnectionId")).ToList();
        var closed = pool.Where(r => r.Id.Id is 1002 or 1003 or 1005).Select(r => r.GetStructuredStateValue("ConnectionId")).ToList();
        opened.Count.ShouldBeGreaterThan(1);
        closed.ShouldBe(opened, ignoreOrder: true, customMessage: string.Join(Environment.NewLine, pool.Select(r => r.Message)));
    }

    /// <summary>
    /// README: sqlitesaver.retries and Statistics.Retries count "Attempts the built-in policy ran again after
    /// SQLITE_BUSY / SQLITE_LOCKED". RetryPolicy.NextDelay calls Telemetry.Retrying (counting the retry) before the
    /// backoff delay; when the caller's token cancels that delay, no attempt runs again, yet a retry is counted.
    /// </summary>
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

    private sealed class IsEnabledThrowingProvider : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new IsEnabledThrowingLogger();

        public void Dispose()
        {
        }
    }

    /// <summary>A broken log sink: its level check throws.</summary>
    private sealed class IsEnabledThrowingLogger : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => throw new InvalidOperationException("The log sink is broken.");

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            => throw new InvalidOperationException("The log sink is broken.");
    }
}
