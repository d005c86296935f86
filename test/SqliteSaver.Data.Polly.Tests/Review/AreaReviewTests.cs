using System.Diagnostics;
using Microsoft.Data.Sqlite;
using Polly;
using Polly.Timeout;
using Shouldly;

namespace SqliteSaver.Data.Polly.Tests.Review;

public class AreaReviewTests
{
    private string _folder = null!;

    [SetUp]
    public void SetUp() => _folder = Directory.CreateTempSubdirectory("saver-polly-review-").FullName;

    [TearDown]
    public void TearDown()
    {
        SaverDbConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    [Test]
    public async Task A_timeout_in_the_pipeline_ends_the_wait_of_the_PRAGMAs_a_new_connection_runs([Values] bool async)
    {
        // SaverRetryStrategy runs "the PRAGMAs applied to a new physical connection" through the strategy, and the
        // README says the token a pipeline hands each attempt ends its waits for another connection's lock. Here
        // another connection holds an EXCLUSIVE lock on a rollback-journal database, so the PRAGMAs wait in SQLite's
        // busy handler: for the 5 s Busy Timeout unless the attempt's token (the pipeline's 200 ms timeout) ends it.
        var path = Path.Combine(_folder, "rollback.db");
        using (var create = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            create.Open();
            using var command = create.CreateCommand();
            command.CommandText = "CREATE TABLE t (x)";
            command.ExecuteNonQuery();
        }

        using var holder = new SqliteConnection($"Data Source={path};Pooling=False");
        holder.Open();
        using (var begin = holder.CreateCommand())
        {
            begin.CommandText = "BEGIN EXCLUSIVE";
            begin.ExecuteNonQuery();
        }

        await using var dataSource = new SaverDataSourceBuilder($"Data Source={path};Journal Mode=Delete;Busy Timeout=5000;Write Gate=false")
            .UseResiliencePipeline(new ResiliencePipelineBuilder().AddTimeout(TimeSpan.FromMilliseconds(200)).Build())
            .Build();

        var waited = Stopwatch.StartNew();
        var exception = async
            ? await Should.ThrowAsync<Exception>(async () => await dataSource.OpenConnectionAsync())
            : Should.Throw<Exception>(() => dataSource.OpenConnection());
        waited.Stop();

        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), $"the pipeline's timeout is 200 ms; the PRAGMAs waited out the 5 s Busy Timeout ({exception.GetType().Name}: {exception.Message})");
        exception.ShouldBeOfType<TimeoutRejectedException>();
    }
}
