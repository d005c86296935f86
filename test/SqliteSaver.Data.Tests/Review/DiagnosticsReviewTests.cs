using Microsoft.Extensions.Logging;
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
