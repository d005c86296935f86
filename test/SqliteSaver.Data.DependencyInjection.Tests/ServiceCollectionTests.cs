using System.Data.Common;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Shouldly;

namespace SqliteSaver.Data.DependencyInjection.Tests;

public class ServiceCollectionTests
{
    private string _folder = null!;
    private string _connectionString = null!;

    [SetUp]
    public void SetUp()
    {
        _folder = Directory.CreateTempSubdirectory("saver-di-").FullName;
        _connectionString = $"Data Source={Path.Combine(_folder, "di.db")}";
    }

    [TearDown]
    public void TearDown()
    {
        SaverDbConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    [Test]
    public void The_data_source_is_one_singleton_as_itself_and_as_DbDataSource_and_connections_are_transient()
    {
        using var provider = new ServiceCollection()
            .AddSqliteSaverDataSource(_connectionString, builder => builder.Name = "main-db")
            .BuildServiceProvider();

        var dataSource = provider.GetRequiredService<SaverDataSource>();
        provider.GetRequiredService<DbDataSource>().ShouldBeSameAs(dataSource);
        dataSource.Name.ShouldBe("main-db");
        dataSource.ConnectionString.ShouldBe(_connectionString);

        var first = provider.GetRequiredService<SaverDbConnection>();
        var second = provider.GetRequiredService<DbConnection>();
        second.ShouldBeOfType<SaverDbConnection>().ShouldNotBeSameAs(first);

        first.Open();
        using var command = first.CreateCommand();
        command.CommandText = "SELECT 40 + 2";
        command.ExecuteScalar().ShouldBe(42L);
        first.Close();
        dataSource.Statistics.Total.ShouldBe(1); // the connection rented from the registered data source's own pool
    }

    [Test]
    public void Disposing_the_container_disposes_the_data_source_and_closes_its_connections()
    {
        SaverDataSource dataSource;
        using (var provider = new ServiceCollection().AddSqliteSaverDataSource(_connectionString).BuildServiceProvider())
        {
            dataSource = provider.GetRequiredService<SaverDataSource>();
            using var scope = provider.CreateScope();
            scope.ServiceProvider.GetRequiredService<SaverDbConnection>().Open(); // disposed with the scope
            dataSource.Statistics.Idle.ShouldBe(0);
        }

        dataSource.Statistics.Total.ShouldBe(0);
        Should.Throw<ObjectDisposedException>(() => dataSource.OpenConnection());
    }

    [Test]
    public void The_containers_logger_factory_is_used()
    {
        var logs = new FakeLoggerProvider();
        using var provider = new ServiceCollection()
            .AddLogging(logging => logging.AddProvider(logs).SetMinimumLevel(LogLevel.Debug))
            .AddSqliteSaverDataSource(_connectionString)
            .BuildServiceProvider();

        provider.GetRequiredService<SaverDataSource>().OpenConnection().Dispose();

        logs.Collector.GetSnapshot().ShouldContain(r => r.Category == "SqliteSaver.Data.Pool" && r.Id.Id == 1001);
    }

    /// <summary>
    /// Each resolution is a new connection, as <see cref="DbConnection"/> too, also within one scope: two repositories
    /// in one request that each take a <see cref="DbConnection"/> do not share one (a mutation hunt: registered scoped,
    /// no test failed).
    /// </summary>
    [Test]
    public void Connections_are_transient_within_a_scope_as_DbConnection_too()
    {
        using var provider = new ServiceCollection().AddSqliteSaverDataSource(_connectionString).BuildServiceProvider();
        using var scope = provider.CreateScope();

        var first = scope.ServiceProvider.GetRequiredService<DbConnection>();
        var second = scope.ServiceProvider.GetRequiredService<DbConnection>();

        second.ShouldNotBeSameAs(first);
        scope.ServiceProvider.GetRequiredService<SaverDbConnection>().ShouldNotBeSameAs(scope.ServiceProvider.GetRequiredService<SaverDbConnection>());
    }

    /// <summary>
    /// A logger factory given in <c>configure</c> is the one used, not the container's: <c>configure</c> has the last
    /// word, as for every other setting (a mutation hunt: with the container's applied after <c>configure</c>, no test failed).
    /// </summary>
    [Test]
    public void A_logger_factory_set_in_configure_wins_over_the_containers()
    {
        var containerLogs = new FakeLoggerProvider();
        var ownLogs = new FakeLoggerProvider();
        using var ownFactory = LoggerFactory.Create(logging => logging.AddProvider(ownLogs).SetMinimumLevel(LogLevel.Debug));
        using var provider = new ServiceCollection()
            .AddLogging(logging => logging.AddProvider(containerLogs).SetMinimumLevel(LogLevel.Debug))
            .AddSqliteSaverDataSource(_connectionString, builder => builder.UseLoggerFactory(ownFactory))
            .BuildServiceProvider();

        provider.GetRequiredService<SaverDataSource>().OpenConnection().Dispose();

        ownLogs.Collector.GetSnapshot().ShouldContain(r => r.Category == "SqliteSaver.Data.Pool" && r.Id.Id == 1001);
        containerLogs.Collector.GetSnapshot().ShouldNotContain(r => r.Category != null && r.Category.StartsWith("SqliteSaver.Data", StringComparison.Ordinal));
    }

    [Test]
    public void Bad_arguments_are_refused_at_registration()
    {
        var services = new ServiceCollection();

        var missing = Should.Throw<ArgumentNullException>(() => services.AddSqliteSaverDataSource(null!));
        missing.ParamName.ShouldBe("connectionString");
        missing.Message.ShouldContain("GetConnectionString returns null when the configuration has no entry of that name"); // the usual cause
        Should.Throw<ArgumentNullException>(() => ((IServiceCollection)null!).AddSqliteSaverDataSource(_connectionString)).ParamName.ShouldBe("services");
        Should.Throw<ArgumentException>(() => services.AddSqliteSaverDataSource("Data Source=x.db;Retry=lots")).Message.ShouldContain("Retry");
    }

    [TestCase("Max Pool Size=3", "Data Source")] // no Data Source
    [TestCase("Data Source=file:relative.db", "Data Source")]
    [TestCase("Data Source=x.db;Min Pool Size=4;Max Pool Size=3", "Min Pool Size")]
    public void A_string_the_data_source_would_refuse_is_refused_at_registration_unless_configure_may_still_change_it(string connectionString, string keyword)
    {
        var services = new ServiceCollection();

        Should.Throw<ArgumentException>(() => services.AddSqliteSaverDataSource(connectionString)).ParamName.ShouldBe(keyword);
        services.ShouldBeEmpty();

        services.AddSqliteSaverDataSource(connectionString, dataSource => dataSource.ConnectionStringBuilder.ConnectionString = _connectionString);
        using var provider = services.BuildServiceProvider();
        provider.GetRequiredService<SaverDataSource>().ConnectionString.ShouldBe(_connectionString);
    }
}
