using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Shouldly;

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
