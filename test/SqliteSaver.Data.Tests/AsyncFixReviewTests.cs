using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests;

/// <summary>Defects found reviewing 67612b0 (synchronous calls without the caller's context, slept backoff, checkpoint tokens).</summary>
public class AsyncFixReviewTests : DatabaseTest
{
    /// <summary>
    /// SaverDataSource.CheckpointAsync's token is documented (README, XML doc) to end the checkpoint's waits, but the
    /// checkpoint connection waits for readers in SQLite's own busy handler (sqlite3_busy_timeout, up to 250 ms),
    /// which no token reaches, and a busy result is returned even though the token was cancelled. The token is cancelled
    /// here as the checkpoint connection opens (by its initializer), so it is cancelled before the TRUNCATE waits for
    /// the reader: the call should end with OperationCanceledException carrying that token, as connection.CheckpointAsync does.
    /// </summary>
    [Test]
    public async Task A_data_source_CheckpointAsync_cancelled_before_its_checkpoint_waits_for_a_reader_ends_with_its_token()
    {
        using var cancellation = new CancellationTokenSource();
        var armed = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Busy Timeout=5;Checkpoint Interval=0"))
            .UseConnectionInitializer(_ =>
            {
                if (Volatile.Read(ref armed) == 1)
                {
                    cancellation.Cancel(); // the checkpoint connection is opening
                }
            })
            .Build();
        using var connection = dataSource.OpenConnection();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x)");
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
        using var reader = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        reader.Open();
        using (var read = reader.CreateCommand())
        {
            read.CommandText = "BEGIN; SELECT count(*) FROM t;"; // a reader of the WAL: a TRUNCATE waits for it
            read.ExecuteNonQuery();
        }

        Volatile.Write(ref armed, 1);
        var checkpoint = dataSource.CheckpointAsync(CheckpointMode.Truncate, cancellation.Token);
        var finished = await Task.WhenAny(checkpoint, Task.Delay(TimeSpan.FromSeconds(30)));
        finished.ShouldBeSameAs(checkpoint);
        cancellation.IsCancellationRequested.ShouldBeTrue("the checkpoint connection opened during the call");

        var exception = await Should.ThrowAsync<OperationCanceledException>(
            () => checkpoint,
            customMessage: "the cancelled checkpoint waited out its busy timeout for the reader and returned a busy result");
        exception.CancellationToken.ShouldBe(cancellation.Token);
    }

    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A synchronous Open made from a task running on a single-threaded TaskScheduler (an actor's or a
    /// ConcurrentExclusiveSchedulerPair's exclusive scheduler) with an async initializer that awaits without
    /// ConfigureAwait(false): Synchronously.WithoutContext clears SynchronizationContext.Current but not
    /// TaskScheduler.Current, which an await captures as well, so the initializer's continuation is queued to the scheduler
    /// whose only thread Open blocks, and Open never returns, the deadlock 67612b0 fixes for a UI-style context.
    /// </summary>
    [Test]
    public void A_synchronous_Open_in_a_task_on_a_single_threaded_TaskScheduler_completes_with_an_async_initializer()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0"))
            .UseConnectionInitializer(async (connection, cancellationToken) =>
            {
                await Task.Yield(); // resumes on TaskScheduler.Current when there is no SynchronizationContext
                connection.CreateFunction("answer", () => 42L);
            })
            .Build();
        using var scheduler = new SingleThreadedScheduler();

        var answer = Task.Factory.StartNew(
            () =>
            {
                using var connection = dataSource.OpenConnection();
                return ConnectionTests.Scalar(connection, "SELECT answer()");
            },
            CancellationToken.None,
            TaskCreationOptions.None,
            scheduler);
        if (!answer.Wait(Generous))
        {
            scheduler.RunPendingHere(answer, Generous); // so that the Open ends and the test cleans up
            Assert.Fail($"Deadlocked: the synchronous Open on the single-threaded TaskScheduler did not complete within {Generous.TotalSeconds} s; it completed only once what it had queued to that scheduler was run on another thread.");
        }

        answer.Result.ShouldBe(42L);
    }

    /// <summary>A TaskScheduler that runs the tasks queued to it on one thread of its own, one at a time.</summary>
    private sealed class SingleThreadedScheduler : TaskScheduler, IDisposable
    {
        private readonly BlockingCollection<Task> _queue = [];

        public SingleThreadedScheduler()
        {
            var thread = new Thread(() =>
            {
                foreach (var task in _queue.GetConsumingEnumerable())
                {
                    TryExecuteTask(task);
                }
            })
            { IsBackground = true }; // a deadlocked one must not keep the test run alive
            thread.Start();
        }

        public override int MaximumConcurrencyLevel => 1;

        /// <summary>Runs what is queued on the calling thread until <paramref name="done"/> completes.</summary>
        public void RunPendingHere(Task done, TimeSpan bound)
        {
            var deadline = DateTime.UtcNow + bound;
            while (!done.IsCompleted && DateTime.UtcNow < deadline)
            {
                if (_queue.TryTake(out var task, TimeSpan.FromMilliseconds(100)))
                {
                    TryExecuteTask(task);
                }
            }
        }

        public void Dispose()
        {
            _queue.CompleteAdding();
            _queue.Dispose();
        }

        protected override void QueueTask(Task task) => _queue.Add(task);

        protected override bool TryExecuteTaskInline(Task task, bool taskWasPreviouslyQueued) => false;

        protected override IEnumerable<Task> GetScheduledTasks() => _queue.ToArray();
    }
}
