using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Polly;
using Polly.CircuitBreaker;
using Shouldly;

namespace SqliteSaver.Data.DependencyInjection.Tests;

public class HealthCheckTests
{
    private string _folder = null!;

    [SetUp]
    public void SetUp() => _folder = Directory.CreateTempSubdirectory("saver-health-").FullName;

    [TearDown]
    public void TearDown()
    {
        SaverDbConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    [Test]
    public async Task A_database_that_opens_and_answers_is_healthy()
    {
        using var provider = Provider("Data Source={0}");

        var entry = await Check(provider);

        entry.Status.ShouldBe(HealthStatus.Healthy);
        $"total {entry.Data["total"]}, idle {entry.Data["idle"]}, in use {entry.Data["in_use"]}".ShouldBe("total 1, idle 1, in use 0"); // as the check left the pool (before, as it found it: total 0)
        provider.GetRequiredService<SaverDataSource>().Statistics.InUse.ShouldBe(0); // the check gave its connection back
    }

    [Test]
    public async Task An_exhausted_pool_is_degraded_and_the_check_does_not_queue_for_a_connection()
    {
        using var provider = Provider("Data Source={0};Max Pool Size=1;Pool Timeout=60");
        var dataSource = provider.GetRequiredService<SaverDataSource>();
        await using var held = await dataSource.OpenConnectionAsync();

        var entry = await Check(provider).WaitAsync(TimeSpan.FromSeconds(30)); // queued, it would wait out the 60 s

        entry.Status.ShouldBe(HealthStatus.Degraded);
        entry.Description.ShouldBe("Every pooled connection is in use (1 of Max Pool Size=1) and 0 callers wait.");
        dataSource.Statistics.Timeouts.ShouldBe(0);
    }

    /// <summary>
    /// A waiting caller is counted in the message and the data: an exhausted pool reports its figures as a healthy one
    /// does (a mutation hunt: with the waiters miscounted, or the data left off, no test failed).
    /// </summary>
    [Test]
    public async Task An_exhausted_pool_says_how_many_callers_wait_and_lists_its_figures()
    {
        using var provider = Provider("Data Source={0};Max Pool Size=1;Pool Timeout=60");
        var dataSource = provider.GetRequiredService<SaverDataSource>();
        var held = await dataSource.OpenConnectionAsync();
        var waiter = dataSource.OpenConnectionAsync().AsTask();
        SpinWait.SpinUntil(() => dataSource.Statistics.Waiting == 1, TimeSpan.FromSeconds(30)).ShouldBeTrue("the second caller never queued");

        var entry = await Check(provider).WaitAsync(TimeSpan.FromSeconds(30));

        await held.DisposeAsync();
        await (await waiter.WaitAsync(TimeSpan.FromSeconds(30))).DisposeAsync();
        entry.Status.ShouldBe(HealthStatus.Degraded, entry.Description);
        entry.Description.ShouldBe("Every pooled connection is in use (1 of Max Pool Size=1) and 1 caller waits.");
        $"total {entry.Data["total"]}, idle {entry.Data["idle"]}, in use {entry.Data["in_use"]}, waiting {entry.Data["waiting"]}, max {entry.Data["max_pool_size"]}"
            .ShouldBe("total 1, idle 0, in use 1, waiting 1, max 1");
    }

    /// <summary>
    /// The limit is the largest healthy size: a WAL of exactly Journal Size Limit bytes is healthy, one byte more is not.
    /// A plain connection, kept open, writes the WAL (so no close checkpoints it) and the check's data source sets the limit
    /// from the file's measured size.
    /// </summary>
    [TestCase(0, HealthStatus.Healthy)]
    [TestCase(-1, HealthStatus.Degraded)]
    public async Task A_wal_is_degraded_only_once_it_is_larger_than_its_limit(int limitMinusWalBytes, HealthStatus expected)
    {
        using var writer = WriteWal(out var walBytes);
        var limit = walBytes + limitMinusWalBytes;
        using var provider = Provider($"Data Source={{0}};Journal Size Limit={limit};Wal Autocheckpoint=0;Checkpoint Interval=0");

        var entry = await Check(provider);

        entry.Status.ShouldBe(expected, entry.Description);
        ((long)entry.Data["wal_bytes"]).ShouldBe(walBytes);
        if (expected == HealthStatus.Degraded)
        {
            entry.Description.ShouldBe($"The -wal file is {walBytes} bytes, over Journal Size Limit={limit}: long readers or writers keep checkpoints from resetting it.");
        }
    }

    /// <summary>
    /// Journal Size Limit=0 is a limit too, of no bytes: any -wal file with something in it is over it. -1 is none: no
    /// -wal file is over it (a mutation hunt: with 0 taken for no limit, or -1 for a limit, no test failed).
    /// </summary>
    [TestCase(0, HealthStatus.Degraded)]
    [TestCase(-1, HealthStatus.Healthy)]
    public async Task A_journal_size_limit_of_0_is_exceeded_by_any_wal_and_one_of_minus_1_by_none(int limit, HealthStatus expected)
    {
        using var writer = WriteWal(out var walBytes);
        using var provider = Provider($"Data Source={{0}};Journal Size Limit={limit};Wal Autocheckpoint=0;Checkpoint Interval=0");

        var entry = await Check(provider);

        entry.Status.ShouldBe(expected, entry.Description);
        ((long)entry.Data["wal_bytes"]).ShouldBe(walBytes);
    }

    [Test]
    public async Task A_file_that_is_not_a_database_is_unhealthy_or_the_chosen_failure_status()
    {
        var path = Path.Combine(_folder, "check.db");
        await File.WriteAllTextAsync(path, new string('x', 4096));
        using var provider = Provider("Data Source={0}");
        using var lenient = Provider("Data Source={0};Max Pool Size=3", HealthStatus.Degraded);

        var entry = await Check(provider);
        var lenientEntry = await Check(lenient);

        entry.Status.ShouldBe(HealthStatus.Unhealthy);
        entry.Description.ShouldNotBeNull().ShouldContain("cannot be opened");
        entry.Exception.ShouldBeOfType<Microsoft.Data.Sqlite.SqliteException>().SqliteErrorCode.ShouldBe(26); // SQLITE_NOTADB
        lenientEntry.Status.ShouldBe(HealthStatus.Degraded);
        ((int)entry.Data["max_pool_size"]).ShouldBe(16); // the pool's figures on a failed check too (a hunt: untested)
        ((int)lenientEntry.Data["max_pool_size"]).ShouldBe(3);
        ((int)entry.Data["in_use"]).ShouldBe(0);
    }

    [Test]
    public async Task A_timeout_from_the_connection_initializer_is_not_taken_for_an_exhausted_pool()
    {
        using var provider = Provider(
            "Data Source={0}",
            configure: builder => builder.UseConnectionInitializer(_ => throw new TimeoutException("The key vault did not answer.")));

        var entry = await Check(provider);

        entry.Status.ShouldBe(HealthStatus.Unhealthy);
        entry.Description.ShouldNotBeNull().ShouldContain("cannot be opened: The key vault did not answer.");
        entry.Exception.ShouldBeOfType<TimeoutException>();
    }

    [Test]
    public async Task A_disposed_data_source_is_unhealthy_and_said_to_be_disposed()
    {
        using var provider = Provider("Data Source={0}");
        provider.GetRequiredService<SaverDataSource>().Dispose();

        var entry = await Check(provider);

        entry.Status.ShouldBe(HealthStatus.Unhealthy);
        entry.Description.ShouldBe("The data source was disposed: the application is stopping, or something disposed it.");
        entry.Exception.ShouldBeOfType<ObjectDisposedException>();
    }

    [Test]
    public async Task A_data_source_that_cannot_be_built_makes_the_check_unhealthy_rather_than_throw()
    {
        using var provider = Provider("Data Source={0};Max Pool Size=2", configure: builder => builder.ConnectionStringBuilder.MinPoolSize = 5);

        var entry = await Check(provider); // HealthCheckService builds the check outside its own try: a throw escaped it

        entry.Status.ShouldBe(HealthStatus.Unhealthy);
        entry.Description.ShouldNotBeNull().ShouldStartWith("The data source cannot be built: Connection-string keyword 'Min Pool Size' (5) must not exceed 'Max Pool Size' (2)");
        entry.Exception.ShouldBeOfType<ArgumentException>();
    }

    /// <summary>
    /// A check run after its container was disposed (the application stopping) says so, with the failure status chosen
    /// at registration, rather than "cannot be built" (a mutation hunt: neither was tested).
    /// </summary>
    [Test]
    public async Task A_check_after_its_container_was_disposed_says_so_with_the_chosen_failure_status()
    {
        await using var provider = Provider("Data Source={0}", HealthStatus.Degraded);
        provider.GetRequiredService<SaverDataSource>();
        var registration = provider.GetRequiredService<IOptions<HealthCheckServiceOptions>>().Value.Registrations.Single();
        var check = registration.Factory(provider);
        await provider.DisposeAsync(); // as the host does when the application stops

        var result = await check.CheckHealthAsync(new HealthCheckContext { Registration = registration });

        result.Status.ShouldBe(HealthStatus.Degraded);
        result.Description.ShouldBe("The data source was disposed: the application is stopping, or something disposed it.");
        result.Exception.ShouldBeOfType<ObjectDisposedException>();
    }

    /// <summary>
    /// The check is registered under the name and with the tags given, so a probe's tag filter finds it, or leaves it
    /// out (a mutation hunt: every test used the default name and no tags).
    /// </summary>
    [Test]
    public async Task The_check_has_the_name_and_tags_it_was_registered_with()
    {
        var services = new ServiceCollection().AddLogging();
        services.AddSqliteSaverDataSource($"Data Source={Path.Combine(_folder, "check.db")}");
        services.AddHealthChecks().AddSqliteSaver(name: "orders-db", tags: ["ready"]);
        using var provider = services.BuildServiceProvider();
        var health = provider.GetRequiredService<HealthCheckService>();

        var ready = await health.CheckHealthAsync(registration => registration.Tags.Contains("ready"));
        var live = await health.CheckHealthAsync(registration => registration.Tags.Contains("live"));

        ready.Entries.Keys.ShouldBe(["orders-db"]);
        ready.Entries["orders-db"].Status.ShouldBe(HealthStatus.Healthy);
        ready.Entries["orders-db"].Tags.ShouldBe(["ready"]);
        live.Entries.ShouldBeEmpty();
    }

    /// <summary>A null builder or name is an ArgumentNullException naming it, not a NullReferenceException.</summary>
    [Test]
    public void Null_arguments_to_AddSqliteSaver_are_ArgumentNullException_naming_the_parameter()
    {
        var builder = new ServiceCollection().AddHealthChecks();

        Should.Throw<ArgumentNullException>(() => ((IHealthChecksBuilder)null!).AddSqliteSaver()).ParamName.ShouldBe("builder");
        Should.Throw<ArgumentNullException>(() => builder.AddSqliteSaver(name: null!)).ParamName.ShouldBe("name");
    }

    /// <summary>
    /// An exhausted pool whose only connection stays inside SQLite (an application function holds it there): the check
    /// reads the WAL status on the checkpoint connection, which will not open while no pool connection can say that
    /// the file at the path is still theirs. Busy, not broken: Degraded. Before, Unhealthy, "The database cannot be
    /// opened" (a review of the replaced-file check).
    /// </summary>
    [Test]
    public async Task An_exhausted_pool_whose_only_connection_is_inside_SQLite_is_degraded()
    {
        using var provider = Provider("Data Source={0};Max Pool Size=1;Checkpoint Interval=0");
        var dataSource = provider.GetRequiredService<SaverDataSource>();
        using var holding = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var rented = await dataSource.OpenConnectionAsync();
        rented.InnerConnection.CreateFunction("hold", () =>
        {
            holding.Set();
            release.Wait(TimeSpan.FromSeconds(30));
            return 1L;
        });
        var held = Task.Factory.StartNew(
            () =>
            {
                using var command = rented.CreateCommand();
                command.CommandText = "SELECT hold()";
                return command.ExecuteScalar();
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
        holding.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();

        var entry = await Check(provider);

        release.Set();
        (await held).ShouldBe(1L);
        await rented.DisposeAsync();
        entry.Status.ShouldBe(HealthStatus.Degraded, entry.Description);
        entry.Description.ShouldNotBeNull().ShouldStartWith("Every pooled connection is in use (1 of Max Pool Size=1)");
    }

    /// <summary>
    /// The pool was cleared (before a restore, say) while its only connection was rented, before the checkpoint
    /// connection ever opened: that connection will not open while only connections rented before the clear are,
    /// so the WAL cannot be looked at. Busy, not broken: Degraded. Before, Unhealthy (a data-source lifetime hunt).
    /// </summary>
    [Test]
    public async Task An_exhausted_pool_cleared_before_its_checkpoint_connection_opened_is_degraded()
    {
        using var provider = Provider("Data Source={0};Max Pool Size=1");
        var dataSource = provider.GetRequiredService<SaverDataSource>();
        await using var held = await dataSource.OpenConnectionAsync();
        dataSource.Clear();

        var entry = await Check(provider);

        entry.Status.ShouldBe(HealthStatus.Degraded, entry.Description);
        entry.Description.ShouldNotBeNull().ShouldStartWith("Every pooled connection is in use (1 of Max Pool Size=1)");
    }

    /// <summary>
    /// The database file is deleted after a check ran, which opened the data source's checkpoint connection: the next
    /// check is Unhealthy and says why. Before, Healthy: only the checkpoint connection's opening asked whether the
    /// file was still at the path, and <c>SELECT 1</c> on a pooled connection reads the deleted file (a bug hunt's finding).
    /// </summary>
    [TestCase(false)]
    [TestCase(true)] // the only connection held: the check reads the WAL status alone
    public async Task A_database_file_deleted_after_a_check_is_unhealthy_at_the_next(bool exhausted)
    {
        using var provider = Provider("Data Source={0};Max Pool Size=1;Checkpoint Interval=0");
        (await Check(provider)).Status.ShouldBe(HealthStatus.Healthy);
        await using var held = exhausted ? await provider.GetRequiredService<SaverDataSource>().OpenConnectionAsync() : null;
        foreach (var file in Directory.GetFiles(_folder))
        {
            File.Delete(file);
        }

        var entry = await Check(provider);

        entry.Status.ShouldBe(HealthStatus.Unhealthy);
        entry.Description.ShouldNotBeNull().ShouldStartWith("The WAL status cannot be read: The database file");
        entry.Description.ShouldContain("was replaced or deleted while the pool's connections had it open");
    }

    /// <summary>
    /// A resilience pipeline's circuit breaker is open: the connection opens (the pool's), and the pipeline refuses the
    /// <c>SELECT 1</c>. The check says so rather than "The database cannot be opened" (a bug hunt's finding).
    /// </summary>
    [Test]
    public async Task A_pipeline_refusing_SELECT_1_is_not_said_to_be_a_database_that_cannot_be_opened()
    {
        var control = new CircuitBreakerManualControl();
        var pipeline = new ResiliencePipelineBuilder()
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions { ShouldHandle = new PredicateBuilder().Handle<TimeoutException>(), ManualControl = control })
            .Build();
        using var provider = Provider("Data Source={0}", configure: builder => builder.UseResiliencePipeline(pipeline));
        (await Check(provider)).Status.ShouldBe(HealthStatus.Healthy);
        await control.IsolateAsync();

        var entry = await Check(provider);

        entry.Status.ShouldBe(HealthStatus.Unhealthy);
        entry.Description.ShouldNotBeNull().ShouldStartWith("SELECT 1 failed: The circuit is manually held open");
        entry.Exception.ShouldBeOfType<IsolatedCircuitException>();
        provider.GetRequiredService<SaverDataSource>().Statistics.InUse.ShouldBe(0);
    }

    /// <summary>
    /// Writes a WAL of about 100 kB into check.db on a plain connection, which is returned to be kept open (so that no
    /// close checkpoints the WAL), and gives the -wal file's size.
    /// </summary>
    private Microsoft.Data.Sqlite.SqliteConnection WriteWal(out long walBytes)
    {
        var path = Path.Combine(_folder, "check.db");
        var writer = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path};Pooling=False");
        writer.Open();
        using (var command = writer.CreateCommand())
        {
            command.CommandText = "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t (x); INSERT INTO t VALUES (randomblob(100000))";
            command.ExecuteNonQuery();
        }

        walBytes = new FileInfo(path + "-wal").Length;
        return writer;
    }

    private ServiceProvider Provider(string connectionStringFormat, HealthStatus? failureStatus = null, Action<SaverDataSourceBuilder>? configure = null)
    {
        var services = new ServiceCollection().AddLogging();
        services.AddSqliteSaverDataSource(string.Format(System.Globalization.CultureInfo.InvariantCulture, connectionStringFormat, Path.Combine(_folder, "check.db")), configure);
        services.AddHealthChecks().AddSqliteSaver(failureStatus: failureStatus);
        return services.BuildServiceProvider();
    }

    private static async Task<HealthReportEntry> Check(ServiceProvider provider)
    {
        var report = await provider.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        return report.Entries["sqlite-saver"];
    }
}
