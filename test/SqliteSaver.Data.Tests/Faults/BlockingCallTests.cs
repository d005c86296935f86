using System.Collections.Concurrent;
using Shouldly;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>
/// Calls that block their thread on other work end: on a single-threaded SynchronizationContext with an async
/// connection initializer, on a thread pool whose every thread a synchronous writer holds, and when cancelled while
/// the checkpoint connection's PRAGMAs back off.
/// </summary>
public class BlockingCallTests : DatabaseTest
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A synchronous Open on a UI-style thread (a single-threaded SynchronizationContext) with an async connection
    /// initializer that awaits as UI code does (no ConfigureAwait(false)) completes: the initializer is started without
    /// the context, so its continuation is not posted to the thread Open blocks.
    /// </summary>
    [Test]
    public void A_synchronous_Open_on_a_single_threaded_SynchronizationContext_completes_with_an_async_initializer()
    {
        using var dataSource = WithAwaitingInitializer();

        var answer = OnSingleThreadedContext(() =>
        {
            using var connection = dataSource.OpenConnection();
            return Task.FromResult(ConnectionTests.Scalar(connection, "SELECT answer()"));
        });

        answer.ShouldBe(42L);
    }

    /// <summary>
    /// SaverDataSource.CheckpointAsync, awaited (not blocked on) on a UI-style thread, opens the data source's checkpoint
    /// connection synchronously, running the async connection initializer (README: the checkpoint connection runs it
    /// too): it completes, as the initializer is started without the context.
    /// </summary>
    [Test]
    public void An_awaited_data_source_CheckpointAsync_on_a_single_threaded_SynchronizationContext_completes_with_an_async_initializer()
    {
        using var dataSource = WithAwaitingInitializer();

        var busy = OnSingleThreadedContext(async () =>
        {
            var result = await dataSource.CheckpointAsync(CheckpointMode.Passive);
            return result.Busy;
        });

        busy.ShouldBeFalse();
    }

    /// <summary>
    /// Synchronous writers running on every thread-pool thread (an ASP.NET app doing synchronous data access under
    /// load) end their backoff delays between retries (the built-in strategy with the system clock) without another
    /// pool thread: the delay is slept on the writer's thread. A timer's callback would need a free pool thread, which
    /// only the pool's starvation injection provides (none here, with the pool capped at its size). Each writer gives
    /// up after one 1 ms retry with SQLITE_BUSY.
    /// </summary>
    [Test]
    public void Synchronous_writers_on_every_thread_pool_thread_end_their_backoff_without_another_pool_thread()
    {
        ThreadPool.GetMinThreads(out var minWorkers, out _);
        ThreadPool.GetMaxThreads(out var maxWorkers, out var maxIo);
        var workers = Math.Max(minWorkers, Environment.ProcessorCount);
        var writers = workers + 2; // more than the pool may run: some queue behind the others
        var connectionString = Folder.ConnectionString(
            $"Max Pool Size={writers};Busy Timeout=0;Retry=1;Base Delay=0.001;Max Delay=0.001;Jitter=0;Checkpoint Interval=0");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var connections = Enumerable.Range(0, writers).Select(_ => dataSource.OpenConnection()).ToArray();
        ConnectionTests.Exec(connections[0], "CREATE TABLE t (x)");
        using var holder = HoldWriteLock(); // another process's write lock: every write meets SQLITE_BUSY and backs off

        var outcomes = new ConcurrentQueue<Exception?>();
        var done = new CountdownEvent(writers);
        bool ended;
        ThreadPool.SetMaxThreads(workers, maxIo).ShouldBeTrue();
        try
        {
            foreach (var connection in connections)
            {
                ThreadPool.UnsafeQueueUserWorkItem(
                    static state =>
                    {
                        var (connection, outcomes, done) = state;
                        try
                        {
                            ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
                            outcomes.Enqueue(null);
                        }
                        catch (Exception exception)
                        {
                            outcomes.Enqueue(exception);
                        }
                        finally
                        {
                            done.Signal();
                        }
                    },
                    (connection, outcomes, done),
                    preferLocal: false);
            }

            ended = done.Wait(Generous);
        }
        finally
        {
            ThreadPool.SetMaxThreads(maxWorkers, maxIo);
        }

        done.Wait(Generous); // with the pool free again they end, before their connections are closed
        foreach (var connection in connections)
        {
            connection.Dispose();
        }

        ended.ShouldBeTrue($"{done.CurrentCount} of {writers} synchronous writers on the thread pool had not ended within {Generous.TotalSeconds} s: each waits for its 1 ms backoff timer, whose callback needs a pool thread");
        outcomes.Count.ShouldBe(writers);
        outcomes.ShouldAllBe(outcome => outcome is Microsoft.Data.Sqlite.SqliteException && ((Microsoft.Data.Sqlite.SqliteException)outcome).SqliteErrorCode == 5);
    }

    /// <summary>
    /// SaverDataSource.CheckpointAsync runs Checkpoint on the caller's thread, and the first one opens the data
    /// source's checkpoint connection, whose PRAGMAs the retry strategy runs again while the switch to WAL meets another
    /// process's read lock. Its token ends those backoff delays: with a fake clock they never end by themselves, and a
    /// cancelled CheckpointAsync ends with OperationCanceledException carrying its token.
    /// </summary>
    [Test]
    public void A_data_source_CheckpointAsync_cancelled_while_its_connection_opening_backs_off_ends()
    {
        using (var create = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Folder.File()};Pooling=False"))
        {
            create.Open();
            using var command = create.CreateCommand();
            command.CommandText = "CREATE TABLE t (x)"; // rollback journal: the first connection switches it to WAL
            command.ExecuteNonQuery();
        }

        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Busy Timeout=0;Base Delay=60;Max Delay=60;Checkpoint Interval=0"))
            .UseTimeProvider(time)
            .Build();
        var retrying = 0;
        ((SqliteSaver.Data.Resilience.RetryPolicy)dataSource.Executor.Strategy).Retrying += (_, _, _) => Interlocked.Increment(ref retrying);
        using var reader = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        reader.Open();
        using (var read = reader.CreateCommand())
        {
            read.CommandText = "BEGIN; SELECT count(*) FROM t;"; // another process's read lock: the switch to WAL is busy
            read.ExecuteNonQuery();
        }

        using var cancellation = new CancellationTokenSource();
        Task<CheckpointResult>? checkpoint = null;
        var caller = new Thread(() => checkpoint = dataSource.CheckpointAsync(CheckpointMode.Passive, cancellation.Token)) { IsBackground = true };
        caller.Start();
        Wait.Until(() => Volatile.Read(ref retrying) >= 1); // in the first backoff delay of the PRAGMAs
        cancellation.Cancel();

        var ended = caller.Join(Generous);
        reader.Dispose();
        for (var i = 0; !caller.Join(TimeSpan.FromMilliseconds(100)) && i < 300; i++)
        {
            time.Advance(TimeSpan.FromSeconds(60)); // ends the backoff, so that the thread and the test end
        }

        ended.ShouldBeTrue($"CheckpointAsync did not return within {Generous.TotalSeconds} s of its token's cancellation: it blocks its caller in the checkpoint connection's backoff, which the token does not end");
        var exception = Should.Throw<OperationCanceledException>(() => checkpoint!.GetAwaiter().GetResult());
        exception.CancellationToken.ShouldBe(cancellation.Token);
    }

    /// <summary>
    /// A data source whose async connection initializer awaits as UI code does (no ConfigureAwait(false)): it resumes
    /// on the caller's SynchronizationContext, or without one on TaskScheduler.Current. It defines answer() = 42.
    /// </summary>
    private SaverDataSource WithAwaitingInitializer()
        => new SaverDataSourceBuilder(Folder.ConnectionString("Checkpoint Interval=0"))
            .UseConnectionInitializer(async (connection, cancellationToken) =>
            {
                await Task.Yield();
                connection.CreateFunction("answer", () => 42L);
            })
            .Build();

    /// <summary>
    /// Runs <paramref name="work"/> on a single-threaded SynchronizationContext and returns its result. If it has not
    /// completed within <see cref="Generous"/>, the work posted to the context (which its blocked thread cannot run) is
    /// run on this thread until the work completes, so that the test ends and cleans up, and the test fails.
    /// </summary>
    private static T OnSingleThreadedContext<T>(Func<Task<T>> work)
    {
        var context = new SingleThreadedContext();
        var result = context.Start(work);
        if (result.Wait(Generous))
        {
            return result.Result;
        }

        context.RunPendingHere(result, Generous);
        Assert.Fail($"Deadlocked: the work on the single-threaded SynchronizationContext did not complete within {Generous.TotalSeconds} s; it completed only once what it had posted to that context was run on another thread.");
        return default!;
    }

    /// <summary>
    /// A synchronous Open made from a task running on a single-threaded TaskScheduler (an actor's or a
    /// ConcurrentExclusiveSchedulerPair's exclusive scheduler) with an async initializer that awaits without
    /// ConfigureAwait(false) completes: an await captures TaskScheduler.Current as well as the SynchronizationContext,
    /// so the initializer is started on the default scheduler, not queued to the one whose only thread Open blocks.
    /// </summary>
    [Test]
    public void A_synchronous_Open_in_a_task_on_a_single_threaded_TaskScheduler_completes_with_an_async_initializer()
    {
        using var dataSource = WithAwaitingInitializer();
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

        // Ends the scheduler's thread once it has run what is queued. The queue is not disposed: that thread may still be
        // taking from it (a disposed queue throws there, on a thread of its own, and ends the test process).
        public void Dispose() => _queue.CompleteAdding();

        protected override void QueueTask(Task task) => _queue.Add(task);

        protected override bool TryExecuteTaskInline(Task task, bool taskWasPreviouslyQueued) => false;

        protected override IEnumerable<Task> GetScheduledTasks() => _queue.ToArray();
    }
}
