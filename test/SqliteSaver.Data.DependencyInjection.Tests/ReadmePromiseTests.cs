using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Shouldly;

namespace SqliteSaver.Data.DependencyInjection.Tests;

/// <summary>README "Hosting" promises no other test covered, checked as written (a README audit).</summary>
public class ReadmePromiseTests
{
    private string _folder = null!;

    [SetUp]
    public void SetUp() => _folder = Directory.CreateTempSubdirectory("saver-di-audit-").FullName;

    [TearDown]
    public void TearDown()
    {
        SaverDbConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    /// <summary>README: "One data source per container: a second `AddSqliteSaverDataSource` registers nothing (its string is still checked)".</summary>
    [Test]
    public void A_second_registration_registers_nothing_but_its_string_is_still_checked()
    {
        var first = $"Data Source={Path.Combine(_folder, "a.db")}";
        var services = new ServiceCollection().AddSqliteSaverDataSource(first);
        var count = services.Count;

        services.AddSqliteSaverDataSource($"Data Source={Path.Combine(_folder, "b.db")}");
        services.Count.ShouldBe(count);
        Should.Throw<ArgumentException>(() => services.AddSqliteSaverDataSource("Data Source=x.db;Max Pool Sise=3"));
        Should.Throw<ArgumentException>(() => services.AddSqliteSaverDataSource("Data Source=x.db;Max Pool Size=0", _ => { }));
        services.Count.ShouldBe(count);

        using var provider = services.BuildServiceProvider();
        provider.GetRequiredService<SaverDataSource>().ConnectionString.ShouldBe(first);
    }

    /// <summary>README: "Its data lists `total`, `idle`, `in_use`, `waiting` and `max_pool_size` as the check leaves the pool, and `wal_bytes` when it read the WAL."</summary>
    [Test]
    public async Task The_health_checks_data_lists_every_documented_figure()
    {
        var services = new ServiceCollection().AddLogging();
        services.AddSqliteSaverDataSource($"Data Source={Path.Combine(_folder, "h.db")};Max Pool Size=5");
        services.AddHealthChecks().AddSqliteSaver(timeout: TimeSpan.FromSeconds(30));
        using var provider = services.BuildServiceProvider();

        var report = await provider.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        var entry = report.Entries["sqlite-saver"];

        entry.Status.ShouldBe(HealthStatus.Healthy);
        entry.Data.Keys.ShouldBe(["total", "idle", "in_use", "waiting", "max_pool_size", "wal_bytes"], ignoreOrder: true);
        entry.Data["max_pool_size"].ShouldBe(5);
        entry.Data["waiting"].ShouldBe(0);
    }

    /// <summary>README: "with the default `Mode=ReadWriteCreate` a missing file is created, empty, and the check is Healthy (use `Mode=ReadWrite` to have a missing file make it Unhealthy)".</summary>
    [Test]
    public async Task A_missing_file_with_Mode_ReadWrite_is_unhealthy()
    {
        var services = new ServiceCollection().AddLogging();
        services.AddSqliteSaverDataSource($"Data Source={Path.Combine(_folder, "missing.db")};Mode=ReadWrite");
        services.AddHealthChecks().AddSqliteSaver(timeout: TimeSpan.FromSeconds(30));
        using var provider = services.BuildServiceProvider();

        var report = await provider.GetRequiredService<HealthCheckService>().CheckHealthAsync();

        report.Entries["sqlite-saver"].Status.ShouldBe(HealthStatus.Unhealthy);
        File.Exists(Path.Combine(_folder, "missing.db")).ShouldBeFalse();
    }
}
