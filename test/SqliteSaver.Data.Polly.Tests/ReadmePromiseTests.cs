using Microsoft.Data.Sqlite;
using Polly;
using Polly.Retry;
using Shouldly;

namespace SqliteSaver.Data.Polly.Tests;

/// <summary>README: "With a Polly pipeline (`UseResiliencePipeline`) the retry counters stay at 0" (a README audit).</summary>
public class ReadmePromiseTests
{
    private string _folder = null!;

    [SetUp]
    public void SetUp() => _folder = Directory.CreateTempSubdirectory("saver-polly-audit-").FullName;

    [TearDown]
    public void TearDown()
    {
        SaverDbConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    [Test]
    public void With_a_pipeline_the_built_in_retry_counters_stay_at_zero()
    {
        var path = Path.Combine(_folder, "p.db");
        var pipeline = new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<SqliteException>(SaverRetryStrategy.IsTransient),
                MaxRetryAttempts = 3,
                Delay = TimeSpan.FromMilliseconds(1),
                BackoffType = DelayBackoffType.Constant,
            })
            .Build();
        using var dataSource = new SaverDataSourceBuilder($"Data Source={path};Busy Timeout=0;Retry=5;Base Delay=0.001;Checkpoint Interval=0")
            .UseResiliencePipeline(pipeline)
            .Build();
        using (var setup = dataSource.OpenConnection())
        {
            using var create = setup.CreateCommand();
            create.CommandText = "CREATE TABLE t (x)";
            create.ExecuteNonQuery();
        }

        using var holder = new SqliteConnection($"Data Source={path};Pooling=False");
        holder.Open();
        using (var begin = holder.CreateCommand())
        {
            begin.CommandText = "BEGIN IMMEDIATE";
            begin.ExecuteNonQuery();
        }

        using var connection = dataSource.OpenConnection();
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (1)";
        Should.Throw<SqliteException>(() => insert.ExecuteNonQuery()).SqliteErrorCode.ShouldBe(5);

        var statistics = dataSource.Statistics;
        statistics.Retries.ShouldBe(0);
        statistics.TransientErrors.ShouldBe(0);
        statistics.RetriesExhausted.ShouldBe(0);
    }
}
