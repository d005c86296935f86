using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;
using Polly;
using Polly.Retry;
using Shouldly;
using SqliteSaver.Data.Tests;

namespace SqliteSaver.Data.Polly.Tests;

/// <summary>A synchronous call through a Polly pipeline under a single-threaded SynchronizationContext (a UI thread).</summary>
public class SynchronizationContextTests
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);
    private string _folder = null!;

    [SetUp]
    public void SetUp() => _folder = Directory.CreateTempSubdirectory("saver-polly-context-").FullName;

    [TearDown]
    public void TearDown()
    {
        SaverDbConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    /// <summary>
    /// A synchronous ExecuteNonQuery on a UI-style thread, through a pipeline whose OnRetry callback awaits as UI code
    /// does (no ConfigureAwait(false)): PipelineRetryStrategy.Execute runs pipeline.Execute on the caller's thread,
    /// which blocks it on the callback's task while the callback's continuation is posted to that same thread, so the
    /// write never returns. Expected: it fails with SQLITE_BUSY once the pipeline's two retries are spent.
    /// </summary>
    [Test]
    public void A_synchronous_write_on_a_single_threaded_SynchronizationContext_completes_with_an_async_OnRetry()
    {
        var file = Path.Combine(_folder, "context.db");
        var retries = 0;
        var pipeline = new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<SqliteException>(SaverRetryStrategy.IsTransient),
                MaxRetryAttempts = 2,
                Delay = TimeSpan.FromMilliseconds(1),
                OnRetry = async _ =>
                {
                    await Task.Yield(); // resumes on the caller's SynchronizationContext, as UI code does
                    Interlocked.Increment(ref retries);
                },
            })
            .Build();
        using var dataSource = new SaverDataSourceBuilder($"Data Source={file};Busy Timeout=0;Checkpoint Interval=0")
            .UseResiliencePipeline(pipeline)
            .Build();
        using (var connection = dataSource.OpenConnection())
        {
            Execute(connection, "CREATE TABLE t (x)");
        }

        using var holder = new SqliteConnection($"Data Source={file};Pooling=False"); // another process's write lock
        holder.Open();
        using (var begin = holder.CreateCommand())
        {
            begin.CommandText = "BEGIN IMMEDIATE";
            begin.ExecuteNonQuery();
        }

        var context = new SingleThreadedContext();
        var write = context.Start(() =>
        {
            using var connection = dataSource.OpenConnection();
            return Task.FromResult(Execute(connection, "INSERT INTO t VALUES (1)")); // blocks the context's thread
        });
        var ended = ((IAsyncResult)write).AsyncWaitHandle.WaitOne(Generous);
        if (!ended)
        {
            context.RunPendingHere(write, Generous); // so that the write ends and the test cleans up
        }

        holder.Dispose();
        ended.ShouldBeTrue($"the synchronous write on the single-threaded SynchronizationContext did not end within {Generous.TotalSeconds} s: it ended only once what the OnRetry callback had posted to that context was run on another thread");
        Should.Throw<SqliteException>(() => write.GetAwaiter().GetResult()).SqliteErrorCode.ShouldBe(5);
        retries.ShouldBe(2);
    }

    /// <summary>
    /// A synchronous RunInTransaction through a pipeline runs the pipeline without the caller's SynchronizationContext
    /// and puts that context back afterwards: code after the call on a UI thread still runs on it.
    /// </summary>
    [Test]
    public void A_synchronous_unit_of_work_through_a_pipeline_leaves_the_callers_SynchronizationContext_in_place()
    {
        var pipeline = new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<SqliteException>(SaverRetryStrategy.IsTransient),
                MaxRetryAttempts = 2,
                Delay = TimeSpan.FromMilliseconds(1),
            })
            .Build();
        using var dataSource = new SaverDataSourceBuilder($"Data Source={Path.Combine(_folder, "context.db")};Checkpoint Interval=0")
            .UseResiliencePipeline(pipeline)
            .Build();
        var context = new SynchronizationContext();
        SynchronizationContext? inside = context;
        SynchronizationContext? after = null;
        var caller = new Thread(() =>
        {
            SynchronizationContext.SetSynchronizationContext(context);
            using var connection = dataSource.OpenConnection();
            connection.RunInTransaction(transaction =>
            {
                inside = SynchronizationContext.Current;
                return Execute(connection, "CREATE TABLE t (x)");
            });
            after = SynchronizationContext.Current;
        })
        {
            IsBackground = true,
        };

        caller.Start();

        caller.Join(Generous).ShouldBeTrue();
        inside.ShouldBeNull(); // the pipeline ran without the context
        after.ShouldBeSameAs(context);
    }

    private static int Execute(SaverDbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteNonQuery();
    }
}
