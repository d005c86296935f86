using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Pooling;

public class InitializerTests : DatabaseTest
{
    [Test]
    public void The_initializer_runs_once_per_physical_connection_after_the_pragmas()
    {
        var runs = 0;
        string? journalMode = null;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0"))
            .UseConnectionInitializer(connection =>
            {
                Interlocked.Increment(ref runs);
                using var command = connection.CreateCommand();
                command.CommandText = "PRAGMA journal_mode";
                journalMode = (string?)command.ExecuteScalar();
                connection.CreateFunction("twice", (long x) => 2 * x);
            })
            .Build();

        for (var i = 0; i < 3; i++)
        {
            using var connection = dataSource.OpenConnection();
            ConnectionTests.Scalar(connection, "SELECT twice(21)").ShouldBe(42L);
        }

        runs.ShouldBe(1);
        journalMode.ShouldBe("wal");
    }

    /// <summary>
    /// Code that sets a connection's ConnectionString to what it already is (a framework that copies it back) keeps a
    /// data source's connection with that data source and its initializer; another string moves it to the shared pool.
    /// </summary>
    [Test]
    public void A_data_source_connection_set_to_its_own_connection_string_stays_with_the_data_source()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0"))
            .UseConnectionInitializer(connection => connection.CreateFunction("twice", (long x) => 2 * x))
            .Build();
        using var connection = dataSource.CreateConnection();

        connection.ConnectionString = connection.ConnectionString;
        connection.Open();

        ConnectionTests.Scalar(connection, "SELECT twice(21)").ShouldBe(42L);
        connection.Close();
        connection.ConnectionString = Folder.ConnectionString("Checkpoint Interval=0;Retry=4");
        connection.Open();
        Should.Throw<SqliteException>(() => ConnectionTests.Scalar(connection, "SELECT twice(21)")).Message.ShouldContain("no such function");
    }

    /// <summary>
    /// Setting a data source's connection to the string it has changes nothing, also once the data source is disposed:
    /// it cannot be opened, as without the setter (it does not slip into the shared pool unnoticed). Another string
    /// moves it to that string's shared pool.
    /// </summary>
    [Test]
    public void A_connection_of_a_disposed_data_source_set_to_its_own_connection_string_stays_disposed_another_string_opens()
    {
        var connectionString = Folder.ConnectionString("Checkpoint Interval=0");
        var dataSource = SaverDataSource.Create(connectionString);
        using var connection = dataSource.CreateConnection();
        dataSource.Dispose();

        connection.ConnectionString = connectionString;

        Should.Throw<ObjectDisposedException>(connection.Open).ObjectName.ShouldBe(typeof(SaverDataSource).FullName);
        connection.ConnectionString = connectionString + ";Retry=4";
        connection.Open();
        ConnectionTests.Scalar(connection, "SELECT 42").ShouldBe(42L);
    }

    [Test]
    public async Task The_async_initializer_is_awaited_by_OpenAsync_with_its_token()
    {
        using var cancellation = new CancellationTokenSource();
        CancellationToken seen = default;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString())
            .UseConnectionInitializer(async (connection, cancellationToken) =>
            {
                seen = cancellationToken;
                await Task.Yield();
                connection.CreateCollation("reverse", (a, b) => string.CompareOrdinal(b, a));
            })
            .Build();

        await using var connection = await dataSource.OpenConnectionAsync(cancellation.Token);

        seen.ShouldBe(cancellation.Token);
        ConnectionTests.Scalar(connection, "SELECT x FROM (SELECT 'a' AS x UNION SELECT 'b') ORDER BY x COLLATE reverse LIMIT 1").ShouldBe("b");
    }

    /// <summary>
    /// OpenAsync hands back an unfinished task while an async initializer awaits, rather than blocking its caller until
    /// the initializer is done (a mutation hunt: with the initializer run synchronously there, no test failed).
    /// </summary>
    [Test]
    public async Task OpenAsync_does_not_block_its_caller_while_an_async_initializer_awaits()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString())
            .UseConnectionInitializer((_, _) => release.Task)
            .Build();
        try
        {
            Task<SaverDbConnection>? opening = null;
            var caller = new Thread(() => opening = dataSource.OpenConnectionAsync().AsTask());
            caller.Start();

            caller.Join(TimeSpan.FromSeconds(10)).ShouldBeTrue("OpenConnectionAsync blocked its caller while the initializer awaited");
            opening!.IsCompleted.ShouldBeFalse();
            release.SetResult();
            await using var connection = await opening;
            ConnectionTests.Scalar(connection, "SELECT 1").ShouldBe(1L);
        }
        finally
        {
            release.TrySetResult(); // lets a blocked caller end
        }
    }

    [Test]
    public void A_synchronous_Open_waits_for_an_async_initializer()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString())
            .UseConnectionInitializer(async (connection, cancellationToken) =>
            {
                await Task.Delay(10, cancellationToken);
                connection.CreateFunction("answer", () => 42L);
            })
            .Build();

        using var connection = dataSource.OpenConnection();

        ConnectionTests.Scalar(connection, "SELECT answer()").ShouldBe(42L);
    }

    [Test]
    public async Task An_initializer_that_throws_closes_the_connection_reaches_the_caller_and_loses_no_slot()
    {
        var failures = 2;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1;Pool Timeout=5"))
            .UseConnectionInitializer(_ =>
            {
                if (Interlocked.Decrement(ref failures) >= 0)
                {
                    throw new InvalidOperationException("extension missing");
                }
            })
            .Build();

        Should.Throw<InvalidOperationException>(() => dataSource.OpenConnection()).Message.ShouldBe("extension missing");
        (await Should.ThrowAsync<InvalidOperationException>(dataSource.OpenConnectionAsync().AsTask())).Message.ShouldBe("extension missing");
        dataSource.Statistics.Total.ShouldBe(0);
        OpenFiles.Count(Folder.File()).ShouldBe(0); // the connections whose initializer failed were closed

        using var connection = dataSource.OpenConnection(); // the single slot is free again, so this does not time out
        ConnectionTests.Scalar(connection, "SELECT 1").ShouldBe(1L);
        dataSource.Statistics.Total.ShouldBe(1);
    }

    [Test]
    public void Null_initializers_are_refused()
    {
        var builder = new SaverDataSourceBuilder(Folder.ConnectionString());

        Should.Throw<ArgumentNullException>(() => builder.UseConnectionInitializer((Action<SqliteConnection>)null!)).ParamName.ShouldBe("initializer");
        Should.Throw<ArgumentNullException>(() => builder.UseConnectionInitializer((Func<SqliteConnection, CancellationToken, Task>)null!)).ParamName.ShouldBe("initializer");
        Should.Throw<ArgumentNullException>(() => builder.UseLoggerFactory(null!)).ParamName.ShouldBe("loggerFactory");
    }

    /// <summary>
    /// OpenAsync awaits an asynchronous connection initializer, also for the connection that keeps a pooled :memory:
    /// database alive: under a single-threaded SynchronizationContext (a UI thread) an initializer that resumes on it
    /// would deadlock a caller blocked on it.
    /// </summary>
    [TestCase("Data Source={0}")]
    [TestCase("Data Source=:memory:")]
    public void OpenAsync_on_a_single_threaded_SynchronizationContext_awaits_an_async_initializer_without_deadlocking(string connectionString)
    {
        using var dataSource = new SaverDataSourceBuilder(string.Format(System.Globalization.CultureInfo.InvariantCulture, connectionString, Folder.File()))
            .UseConnectionInitializer(async (connection, cancellationToken) =>
            {
                await Task.Yield(); // resumes on the caller's SynchronizationContext, as UI code does
                connection.CreateFunction("answer", () => 42L);
            })
            .Build();

        var opened = new SingleThreadedContext().Start(async () =>
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            return ConnectionTests.Scalar(connection, "SELECT answer()");
        });

        opened.Wait(TimeSpan.FromSeconds(10)).ShouldBeTrue("OpenAsync did not complete within 10 s on a single-threaded SynchronizationContext");
        opened.Result.ShouldBe(42L);
    }
}
