using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

public class ProviderFactoryTests : DatabaseTest
{
    [TearDown]
    public void Unregister() => DbProviderFactories.UnregisterFactory(SaverProviderFactory.InvariantName);

    [Test]
    public void Code_that_knows_only_DbProviderFactory_runs_CRUD_after_RegisterFactory_with_the_instance()
    {
        DbProviderFactories.RegisterFactory(SaverProviderFactory.InvariantName, SaverProviderFactory.Instance);

        GenericCrud(DbProviderFactories.GetFactory(SaverProviderFactory.InvariantName), Folder.ConnectionString());
    }

    [Test]
    public void Code_that_knows_only_DbProviderFactory_runs_CRUD_after_RegisterFactory_with_the_type()
    {
        DbProviderFactories.RegisterFactory(SaverProviderFactory.InvariantName, typeof(SaverProviderFactory));

        GenericCrud(DbProviderFactories.GetFactory(SaverProviderFactory.InvariantName), Folder.ConnectionString());
    }

    [Test]
    public void The_factory_creates_the_library_types()
    {
        var factory = SaverProviderFactory.Instance;

        factory.CreateConnection().ShouldBeOfType<SaverDbConnection>();
        factory.CreateCommand().ShouldBeOfType<SaverDbCommand>();
        factory.CreateParameter().ShouldBeOfType<SqliteParameter>();
        factory.CreateConnectionStringBuilder().ShouldBeOfType<SaverConnectionStringBuilder>();
        using var dataSource = factory.CreateDataSource(Folder.ConnectionString());
        dataSource.ShouldBeOfType<SaverDataSource>();
        using var connection = dataSource.OpenConnection();
        connection.ShouldBeOfType<SaverDbConnection>().State.ShouldBe(System.Data.ConnectionState.Open);
    }

    /// <summary>
    /// Code that knows only a <see cref="DbConnection"/> finds its provider through
    /// <see cref="DbProviderFactories.GetFactory(DbConnection)"/> (a DbDataAdapter's or a CommandBuilder's way, a
    /// generic repository's), and creates its commands there: it must get this library's factory, not
    /// Microsoft.Data.Sqlite's, whose commands do not run on a SaverDbConnection. A command from the factory has no
    /// connection yet: its CommandTimeout is 30 s (Default Timeout's default, and Microsoft.Data.Sqlite's), and what
    /// ADO.NET code sets on it reads back.
    /// </summary>
    [Test]
    public void A_connections_provider_factory_is_this_one_and_its_commands_keep_what_ADO_NET_code_sets()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());

        DbProviderFactories.GetFactory(connection).ShouldBeSameAs(SaverProviderFactory.Instance);
        using var command = SaverProviderFactory.Instance.CreateCommand()!;
        command.CommandTimeout.ShouldBe(30);
        new SaverDbCommand().CommandTimeout.ShouldBe(30);
        command.UpdatedRowSource = System.Data.UpdateRowSource.None;
        command.UpdatedRowSource.ShouldBe(System.Data.UpdateRowSource.None);
        command.UpdatedRowSource = System.Data.UpdateRowSource.FirstReturnedRecord;
        command.UpdatedRowSource.ShouldBe(System.Data.UpdateRowSource.FirstReturnedRecord);
    }

    /// <summary>
    /// Code written for Microsoft.Data.Sqlite may create a data source from the factory for every call and never
    /// dispose it, as that one only wraps the process-wide pool: each had a pool of its own here, whose connections
    /// kept the file open (100 descriptors on the database and 100 on its -wal after 100 calls; a bug hunt).
    /// </summary>
    [Test]
    public void Data_sources_from_the_factory_share_the_process_wide_pool()
    {
        var connectionString = Folder.ConnectionString();
        for (var i = 0; i < 100; i++)
        {
            var dataSource = SaverProviderFactory.Instance.CreateDataSource(connectionString); // never disposed
            using var connection = dataSource.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT 1";
            command.ExecuteScalar();
        }

        using var shared = new SaverDbConnection(connectionString);
        shared.Open();
        SaverDataSource.GetShared(connectionString).Statistics.Total.ShouldBe(1);
        OpenFiles.Count(Folder.File()).ShouldBeLessThanOrEqualTo(2); // a pooled connection, and the checkpointer's
    }

    [Test]
    public void Disposing_a_data_source_from_the_factory_closes_nothing_of_the_shared_pool()
    {
        var connectionString = Folder.ConnectionString();
        using var shared = new SaverDbConnection(connectionString);
        shared.Open();
        var dataSource = SaverProviderFactory.Instance.CreateDataSource(connectionString);
        using (var connection = dataSource.OpenConnection())
        {
            connection.State.ShouldBe(System.Data.ConnectionState.Open);
        }

        dataSource.Dispose();

        ConnectionTests.Scalar(shared, "SELECT 42").ShouldBe(42L);
        SaverDataSource.GetShared(connectionString).Statistics.Idle.ShouldBe(1); // the second connection, kept
        dataSource.ConnectionString.ShouldBe(connectionString);
        using var again = dataSource.OpenConnection(); // disposing it did nothing, as with Microsoft.Data.Sqlite's
        ((SaverDataSource)dataSource).GetWalStatus().JournalMode.ShouldBe("wal");
    }

    /// <summary>
    /// README: tests that expect a fresh in-memory database per connection should use a data source each. From the
    /// factory, on the shared pool, every data source for Data Source=:memory: had the same database (a review).
    /// </summary>
    [Test]
    public void Each_data_source_from_the_factory_for_memory_has_a_database_of_its_own()
    {
        using var first = SaverProviderFactory.Instance.CreateDataSource("Data Source=:memory:");
        using var second = SaverProviderFactory.Instance.CreateDataSource("Data Source=:memory:");
        using (var connection = first.OpenConnection())
        {
            ConnectionTests.Exec((SaverDbConnection)connection, "CREATE TABLE t (x)");
        }

        using var other = (SaverDbConnection)second.OpenConnection();
        ConnectionTests.Scalar(other, "SELECT count(*) FROM sqlite_master").ShouldBe(0L);
    }

    /// <summary>
    /// A builder-made data source used through <see cref="DbDataSource"/> (code written against the base type) hands
    /// out connections of its own pool, which has what the builder set, not of the process's shared pool for the same
    /// string.
    /// </summary>
    [Test]
    public async Task A_builder_made_data_source_used_as_a_DbDataSource_hands_out_connections_of_its_own_pool()
    {
        var connectionString = Folder.ConnectionString();
        await using DbDataSource dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var statistics = () => ((SaverDataSource)dataSource).Statistics;

        await using var opened = await dataSource.OpenConnectionAsync();
        await using var created = dataSource.CreateConnection();
        created.Open();
        statistics().InUse.ShouldBe(2);

        SaverDataSource.GetShared(connectionString).Statistics.Total.ShouldBe(0);
    }

    [Test]
    public async Task A_data_source_opens_connections_sync_and_async()
    {
        await using var dataSource = SaverDataSource.Create(Folder.ConnectionString());
        await using DbConnection connection = await ((DbDataSource)dataSource).OpenConnectionAsync();
        await using var command = dataSource.CreateCommand("SELECT 40 + 2");

        connection.State.ShouldBe(System.Data.ConnectionState.Open);
        (await command.ExecuteScalarAsync()).ShouldBe(42L);
        dataSource.ConnectionString.ShouldBe(Folder.ConnectionString());
    }

    private static void GenericCrud(DbProviderFactory factory, string connectionString)
    {
        using var connection = factory.CreateConnection()!;
        connection.ConnectionString = connectionString;
        connection.Open();

        Run(factory, connection, "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)");
        Run(factory, connection, "INSERT INTO item (name) VALUES (@name)", ("@name", "first")).ShouldBe(1);
        Run(factory, connection, "UPDATE item SET name = @name WHERE id = 1", ("@name", "renamed")).ShouldBe(1);

        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT name FROM item WHERE id = 1";
            command.ExecuteScalar().ShouldBe("renamed");
        }

        Run(factory, connection, "DELETE FROM item").ShouldBe(1);
    }

    private static int Run(DbProviderFactory factory, DbConnection connection, string sql, params (string Name, object Value)[] parameters)
    {
        using var command = factory.CreateCommand()!;
        command.Connection = connection;
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            var parameter = factory.CreateParameter()!;
            parameter.ParameterName = name;
            parameter.Value = value;
            command.Parameters.Add(parameter);
        }

        return command.ExecuteNonQuery();
    }
}
