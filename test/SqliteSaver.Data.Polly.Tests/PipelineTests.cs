using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Polly;
using Polly.Retry;
using Shouldly;

namespace SqliteSaver.Data.Polly.Tests;

public class PipelineTests
{
    private string _folder = null!;
    private string _connectionString = null!;

    [SetUp]
    public void SetUp()
    {
        _folder = Directory.CreateTempSubdirectory("saver-polly-").FullName;
        // Retry=0: any retry seen below is the pipeline's own.
        _connectionString = $"Data Source={Path.Combine(_folder, "polly.db")};Busy Timeout=0;Retry=0;Write Gate=false";
        using var connection = new SaverDbConnection(_connectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "CREATE TABLE t (x)";
        command.ExecuteNonQuery();
    }

    [TearDown]
    public void TearDown()
    {
        SaverDbConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    [Test]
    public void The_pipelines_retry_count_and_delays_are_used_and_its_last_error_surfaces()
    {
        var time = new FakeTimeProvider();
        var retries = new ConcurrentQueue<(int Attempt, TimeSpan Delay)>();
        using var dataSource = new SaverDataSourceBuilder(_connectionString)
            .UseResiliencePipeline(Pipeline(time, maxRetries: 3, TimeSpan.FromSeconds(7), retries))
            .Build();
        using var holder = HoldWriteLock();
        using var connection = dataSource.OpenConnection();

        var write = Task.Run(() => Insert(connection));
        var seen = DriveRetries(time, retries, 3, write);

        Should.Throw<SqliteException>(() => write.GetAwaiter().GetResult()).SqliteErrorCode.ShouldBe(5);
        seen.ShouldBe([(0, TimeSpan.FromSeconds(7)), (1, TimeSpan.FromSeconds(7)), (2, TimeSpan.FromSeconds(7))]);
    }

    [Test]
    public async Task A_write_succeeds_once_the_lock_frees_between_the_pipelines_attempts()
    {
        var time = new FakeTimeProvider();
        var retries = new ConcurrentQueue<(int Attempt, TimeSpan Delay)>();
        using var dataSource = new SaverDataSourceBuilder(_connectionString)
            .UseResiliencePipeline(Pipeline(time, maxRetries: 5, TimeSpan.FromSeconds(1), retries))
            .Build();
        var holder = HoldWriteLock();
        await using var connection = await dataSource.OpenConnectionAsync();

        var write = Task.Run(async () =>
        {
            await using var command = connection.CreateCommand();
            command.CommandText = "INSERT INTO t VALUES (1)";
            return await command.ExecuteNonQueryAsync();
        });
        DriveRetries(time, retries, 1, write);
        Wait.Until(() => !retries.IsEmpty);
        holder.Dispose();
        var second = DriveRetries(time, retries, 1, write);

        (await write.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBe(1);
        second.ShouldBe([(1, TimeSpan.FromSeconds(1))]);
    }

    [Test]
    public void A_unit_of_work_is_run_again_by_the_pipeline()
    {
        var retries = new ConcurrentQueue<(int Attempt, TimeSpan Delay)>();
        using var dataSource = new SaverDataSourceBuilder(_connectionString)
            .UseResiliencePipeline(Pipeline(TimeProvider.System, maxRetries: 2, TimeSpan.Zero, retries))
            .Build();
        using var connection = dataSource.OpenConnection();
        var attempts = 0;

        connection.RunInTransaction(_ =>
        {
            if (++attempts == 1)
            {
                throw new SqliteException("SQLite Error 5: 'database is locked'.", 5);
            }

            Insert(connection);
        });

        attempts.ShouldBe(2);
        retries.Count.ShouldBe(1);
    }

    [Test]
    public void The_builder_rejects_a_null_pipeline()
    {
        Should.Throw<ArgumentNullException>(() => new SaverDataSourceBuilder(_connectionString).UseResiliencePipeline(null!));
    }

    private static ResiliencePipeline Pipeline(TimeProvider time, int maxRetries, TimeSpan delay, ConcurrentQueue<(int, TimeSpan)> retries)
        => new ResiliencePipelineBuilder { TimeProvider = time }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<SqliteException>(SaverRetryStrategy.IsTransient),
                MaxRetryAttempts = maxRetries,
                Delay = delay,
                BackoffType = DelayBackoffType.Constant,
                UseJitter = false,
                OnRetry = args =>
                {
                    retries.Enqueue((args.AttemptNumber, args.RetryDelay));
                    return default;
                },
            })
            .Build();

    /// <summary>
    /// Takes <paramref name="count"/> retries as the pipeline reports them. Polly reports a retry before it starts
    /// the delay's timer, so the fake clock is moved on by that delay until the next attempt has shown itself (a
    /// further retry, or the end of <paramref name="work"/>).
    /// </summary>
    private static List<(int, TimeSpan)> DriveRetries(FakeTimeProvider time, ConcurrentQueue<(int Attempt, TimeSpan Delay)> retries, int count, Task work)
    {
        var seen = new List<(int, TimeSpan)>();
        while (seen.Count < count)
        {
            Wait.Until(() => !retries.IsEmpty);
            retries.TryDequeue(out var retry).ShouldBeTrue();
            seen.Add(retry);
            Wait.Until(() =>
            {
                time.Advance(retry.Delay);
                return !retries.IsEmpty || work.IsCompleted;
            });
        }

        return seen;
    }

    private static int Insert(SaverDbConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1)";
        return command.ExecuteNonQuery();
    }

    private SqliteConnection HoldWriteLock()
    {
        var holder = new SqliteConnection($"Data Source={Path.Combine(_folder, "polly.db")};Pooling=False");
        holder.Open();
        using var begin = holder.CreateCommand();
        begin.CommandText = "BEGIN IMMEDIATE";
        begin.ExecuteNonQuery();
        return holder;
    }

    private static class Wait
    {
        public static void Until(Func<bool> condition)
        {
            if (!SpinWait.SpinUntil(condition, TimeSpan.FromSeconds(30)))
            {
                throw new TimeoutException("The condition was not met within 30 s.");
            }
        }
    }
}
