using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Shouldly;

namespace SqliteSaver.Data.DependencyInjection.Tests;

/// <summary>The health check while the pool passes through a state: a connection closing, another caller timing out, the checkpoint connection opening.</summary>
public class HealthCheckStateTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    private string _folder = null!;

    [SetUp]
    public void SetUp() => _folder = Directory.CreateTempSubdirectory("saver-health-state-").FullName;

    [TearDown]
    public void TearDown()
    {
        SaverDbConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    [Test]
    public async Task A_pool_whose_only_connection_is_closing_with_no_renter_is_not_reported_as_every_connection_in_use()
    {
        // The pool's last connection is closing (Clear here; idle pruning and Pooling=false closes alike), nobody has it
        // rented: the pool keeps its slot until it is closed, so Statistics.InUse counts it. The closing is held open
        // by a logger that blocks on the pool's 'closed' message, written before the slot is freed.
        using var blocker = new BlockingPoolCloseLogger();
        await using var provider = Provider("Data Source={0};Max Pool Size=1;Pool Timeout=60", blocker);
        var dataSource = provider.GetRequiredService<SaverDataSource>();
        await using (var connection = await dataSource.OpenConnectionAsync())
        {
            await using var command = connection.CreateCommand();
            command.CommandText = "CREATE TABLE t (x); INSERT INTO t VALUES (1)";
            await command.ExecuteNonQueryAsync();
        }

        blocker.Arm();
        var clear = Task.Run(dataSource.Clear);
        blocker.Blocked.Wait(Bound).ShouldBeTrue("the pool never logged closing its connection");
        dataSource.Statistics.InUse.ShouldBe(1); // the closing connection, as documented

        var check = Check(provider);
        SpinWait.SpinUntil(() => check.IsCompleted || dataSource.Statistics.Waiting > 0, Bound).ShouldBeTrue();
        blocker.Release();
        await clear.WaitAsync(Bound);
        var entry = await check.WaitAsync(Bound);

        entry.Status.ShouldBe(
            HealthStatus.Healthy,
            $"no connection is rented, one is only closing, yet the check said: {entry.Description}");
    }

    [Test]
    public async Task A_check_whose_wait_for_a_connection_times_out_is_degraded_and_reports_the_wal_size_as_every_check_does()
    {
        // As above, but the closing outlasts Pool Timeout: the check found a free slot, queued for it and timed out.
        using var blocker = new BlockingPoolCloseLogger();
        await using var provider = Provider("Data Source={0};Max Pool Size=1;Pool Timeout=1", blocker);
        var dataSource = provider.GetRequiredService<SaverDataSource>();
        await using (var connection = await dataSource.OpenConnectionAsync())
        {
            await using var command = connection.CreateCommand();
            command.CommandText = "CREATE TABLE t (x); INSERT INTO t VALUES (1)";
            await command.ExecuteNonQueryAsync();
        }

        blocker.Arm();
        var clear = Task.Run(dataSource.Clear);
        blocker.Blocked.Wait(Bound).ShouldBeTrue("the pool never logged closing its connection");
        try
        {
            var entry = await Check(provider).WaitAsync(Bound);

            entry.Status.ShouldBe(HealthStatus.Degraded, $"the check said: {entry.Description}");
            entry.Description.ShouldStartWith("Every pooled connection stayed in use");
            entry.Exception.ShouldBeAssignableTo<TimeoutException>();
            entry.Data.ShouldContainKey("wal_bytes");
            ((long)entry.Data["wal_bytes"]).ShouldBeGreaterThanOrEqualTo(0);
        }
        finally
        {
            blocker.Release();
            await clear.WaitAsync(Bound);
        }
    }

    [Test]
    public async Task A_timeout_from_the_connection_initializer_is_unhealthy_even_when_another_callers_pool_wait_timed_out_meanwhile()
    {
        using var entered = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var calls = 0;
        await using var provider = Provider(
            "Data Source={0};Max Pool Size=1;Pool Timeout=1",
            blocker: null,
            configure: builder => builder.UseConnectionInitializer(_ =>
            {
                if (Interlocked.Increment(ref calls) == 1)
                {
                    entered.Set();
                    release.Wait(Bound);
                    throw new TimeoutException("The key vault did not answer.");
                }
            }));
        var dataSource = provider.GetRequiredService<SaverDataSource>();

        var check = Task.Run(() => Check(provider));
        entered.Wait(Bound).ShouldBeTrue("the health check's connection never ran the initializer");

        // Another caller queues behind the health check's slot and gives up after Pool Timeout: the pool counts it.
        await Should.ThrowAsync<TimeoutException>(async () => await dataSource.OpenConnectionAsync());
        dataSource.Statistics.Timeouts.ShouldBe(1);
        release.Set();
        var entry = await check.WaitAsync(Bound);

        // README: Unhealthy when the connection initializer fails, even with a TimeoutException.
        entry.Status.ShouldBe(HealthStatus.Unhealthy, $"the check said: {entry.Description}");
        entry.Exception.ShouldBeOfType<TimeoutException>().Message.ShouldBe("The key vault did not answer.");
    }

    [Test]
    public async Task A_health_check_on_an_exhausted_pool_ends_at_its_registration_timeout_while_the_checkpoint_connection_opens()
    {
        // The pool is exhausted, so the check reads the WAL status on the checkpoint connection, which it opens first
        // (running the connection initializer, here one waiting on a key vault that does not answer).
        using var release = new ManualResetEventSlim();
        var calls = 0;
        var services = new ServiceCollection().AddLogging();
        services.AddSqliteSaverDataSource(
            string.Format(CultureInfo.InvariantCulture, "Data Source={0};Max Pool Size=1;Checkpoint Interval=0", Path.Combine(_folder, "check.db")),
            builder => builder.UseConnectionInitializer(_ =>
            {
                if (Interlocked.Increment(ref calls) == 2)
                {
                    release.Wait(Bound);
                }
            }));
        services.AddHealthChecks().AddSqliteSaver(timeout: TimeSpan.FromSeconds(1));
        await using var provider = services.BuildServiceProvider();
        var dataSource = provider.GetRequiredService<SaverDataSource>();
        try
        {
            await using var held = await dataSource.OpenConnectionAsync();

            var check = Check(provider);
            var ended = await Task.WhenAny(check, Task.Delay(TimeSpan.FromSeconds(15)));

            ended.ShouldBeSameAs(check, "the check ran on past its 1 s timeout, blocked on the checkpoint connection's open, deaf to its token");

            // The cancellation reaches the host as a timeout, not as a WAL status that could not be read (a mutation
            // hunt: with the catch taking cancellations too, no test failed).
            (await check).Description.ShouldBe("A timeout occurred while running check.");
        }
        finally
        {
            release.Set();
        }
    }

    private ServiceProvider Provider(string connectionStringFormat, BlockingPoolCloseLogger? blocker, Action<SaverDataSourceBuilder>? configure = null)
    {
        var services = new ServiceCollection().AddLogging(logging =>
        {
            logging.SetMinimumLevel(LogLevel.Debug);
            if (blocker is not null)
            {
                logging.AddProvider(blocker);
            }
        });
        services.AddSqliteSaverDataSource(string.Format(CultureInfo.InvariantCulture, connectionStringFormat, Path.Combine(_folder, "check.db")), configure);
        services.AddHealthChecks().AddSqliteSaver();
        return services.BuildServiceProvider();
    }

    private static async Task<HealthReportEntry> Check(ServiceProvider provider)
    {
        var report = await provider.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        return report.Entries["sqlite-saver"];
    }

    /// <summary>Once armed, blocks the first 'closed physical connection' message (event 1002) until released.</summary>
    private sealed class BlockingPoolCloseLogger : ILoggerProvider, ILogger
    {
        private readonly ManualResetEventSlim _release = new();
        private int _armed;

        public ManualResetEventSlim Blocked { get; } = new();

        public void Arm() => Volatile.Write(ref _armed, 1);

        public void Release() => _release.Set();

        public ILogger CreateLogger(string categoryName) => categoryName == "SqliteSaver.Data.Pool" ? this : Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id == 1002 && Interlocked.CompareExchange(ref _armed, 0, 1) == 1)
            {
                Blocked.Set();
                _release.Wait(Bound);
            }
        }

        public void Dispose()
        {
            _release.Set();
            _release.Dispose();
            Blocked.Dispose();
        }
    }
}
