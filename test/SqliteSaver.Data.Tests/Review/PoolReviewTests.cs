using System.Data;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Review;

public class PoolReviewTests : DatabaseTest
{
    /// <summary>
    /// Max Pool Size is "most physical connections open at once". Clear takes the idle connections out of the
    /// pool's count under its lock and closes them afterwards (after the Checkpoint On Close checkpoint of the last
    /// one), so an Open made meanwhile opens a new physical connection while the old one is still open.
    /// </summary>
    [Test]
    public void Clear_never_lets_more_than_Max_Pool_Size_physical_connections_be_open_at_once()
    {
        var opened = new List<SqliteConnection>();
        var mostOthersOpen = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0"))
            .UseConnectionInitializer(connection =>
            {
                lock (opened)
                {
                    mostOthersOpen = Math.Max(mostOthersOpen, opened.Count(c => c.State == ConnectionState.Open));
                    opened.Add(connection);
                }
            })
            .Build();

        using (var first = dataSource.OpenConnection())
        {
            ConnectionTests.Scalar(first, "CREATE TABLE t (x)");
            ConnectionTests.Scalar(first, "INSERT INTO t VALUES (1)");
        }

        // Another process reading keeps the TRUNCATE checkpoint of Checkpoint On Close waiting (at most 250 ms).
        using var reader = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        reader.Open();
        using (var begin = reader.CreateCommand())
        {
            begin.CommandText = "BEGIN; SELECT count(*) FROM t;";
            begin.ExecuteScalar();
        }

        var clear = new Thread(dataSource.Clear);
        clear.Start();
        Wait.Until(() => dataSource.Statistics.Total == 0); // the idle connection is out of the count
        using (var next = dataSource.OpenConnection())
        {
            ConnectionTests.Scalar(next, "SELECT count(*) FROM t");
        }

        clear.Join();
        mostOthersOpen.ShouldBe(0, "a new physical connection opened while the one Clear took out was still open, with Max Pool Size=1");
    }

    /// <summary>
    /// Return closes a connection it cannot reset (here: a transaction begun on its InnerConnection) but first, under
    /// the lock, ReleaseSlot hands its slot to the longest waiter, which opens a new physical connection while the old
    /// one is still closing (its rollback, a large TEMP table to free ...): more than Max Pool Size open at once.
    /// </summary>
    [Test]
    public void A_connection_closed_on_return_is_closed_before_a_waiter_opens_one_in_its_slot()
    {
        var opened = new List<SqliteConnection>();
        var mostOthersOpen = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0"))
            .UseConnectionInitializer(connection =>
            {
                lock (opened)
                {
                    mostOthersOpen = Math.Max(mostOthersOpen, opened.Count(c => c.State == ConnectionState.Open));
                    opened.Add(connection);
                }
            })
            .Build();

        var holder = dataSource.OpenConnection();
        var inner = holder.InnerConnection;
        var transaction = inner.BeginTransaction(deferred: true);
        // The rollback as the old connection closes stands for any slow close; it waits (at most 3 s) for a new one.
        SQLitePCL.raw.sqlite3_rollback_hook(inner.Handle!, _ => SpinWait.SpinUntil(() => { lock (opened) { return opened.Count > 1; } }, TimeSpan.FromSeconds(3)), null);

        var waiter = new Thread(() =>
        {
            using var next = dataSource.OpenConnection();
            ConnectionTests.Scalar(next, "SELECT 1");
        });
        waiter.Start();
        Wait.Until(() => dataSource.Statistics.Waiting == 1);
        holder.Dispose();
        waiter.Join();
        GC.KeepAlive(transaction);

        mostOthersOpen.ShouldBe(0, "a waiter opened a physical connection in the slot of one still being closed, with Max Pool Size=1");
    }

    /// <summary>
    /// A pooled :memory: database lives while the pool's anchor connection (or a connection of its generation) is
    /// open. EnsureMemoryAnchor reads the anchor's generation and opens a connection in it outside the lock; a Clear in
    /// between closes the anchor, so the connection creates a new, empty database of the old generation that no other
    /// connection shares (its writes are seen by nobody and lost when it closes).
    /// </summary>
    [Test]
    public void An_Open_racing_Clear_never_gets_an_in_memory_database_that_nothing_else_keeps()
    {
        using var dataSource = SaverDataSource.Create("Data Source=:memory:;Max Pool Size=4");
        var orphans = 0;
        var iterations = 0;
        var random = new Random(1);
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        while (stopwatch.Elapsed < TimeSpan.FromSeconds(8) && orphans == 0)
        {
            iterations++;
            using (var setup = dataSource.OpenConnection())
            {
                ConnectionTests.Scalar(setup, "CREATE TABLE IF NOT EXISTS marker (x)");
                ConnectionTests.Scalar(setup, "CREATE TEMP TABLE scratch (x)"); // so that it is closed on return, leaving only the anchor
            }

            var spin = random.Next(0, 400);
            using var start = new Barrier(2);
            SqliteSaver.Data.Pooling.PhysicalConnection? rented = null;
            var renter = new Thread(() =>
            {
                start.SignalAndWait();
                rented = dataSource.Pool.Rent();
            });
            renter.Start();
            start.SignalAndWait();
            Thread.SpinWait(spin);
            dataSource.Clear();
            renter.Join();

            var physical = rented!;
            using (var check = physical.Sqlite.CreateCommand())
            {
                // A connection of a cleared generation must see that generation's database (with its marker table);
                // one of the new generation sees the new, empty one.
                check.CommandText = "SELECT count(*) FROM sqlite_master WHERE name = 'marker'";
                if ((long)check.ExecuteScalar()! == 0 && physical.Generation != CurrentGeneration(dataSource))
                {
                    orphans++;
                }
            }

            dataSource.Pool.Return(physical);
        }

        TestContext.Out.WriteLine($"{iterations} iterations, {orphans} orphaned in-memory databases");
        orphans.ShouldBe(0, $"a connection of a cleared generation opened a new empty database of its own (after {iterations} iterations)");
    }

    /// <summary>
    /// OpenAsync awaits an asynchronous connection initializer (README, "Connection initializer"). For a pooled
    /// :memory: database, the first OpenAsync opens the pool's anchor connection through
    /// PhysicalConnectionFactory.Open, which blocks on the initializer (Synchronously.Result ... GetResult) on the
    /// caller's thread: under a single-threaded SynchronizationContext (a UI thread) an initializer that awaits
    /// without ConfigureAwait(false) can never resume, and OpenAsync deadlocks. A database file opens fine.
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

        var opened = SingleThreadedContext.Run(async () =>
        {
            await using var connection = await dataSource.OpenConnectionAsync();
            return ConnectionTests.Scalar(connection, "SELECT answer()");
        });

        opened.Wait(TimeSpan.FromSeconds(10)).ShouldBeTrue("OpenAsync did not complete within 10 s on a single-threaded SynchronizationContext");
        opened.Result.ShouldBe(42L);
    }

    /// <summary>A SynchronizationContext that runs everything posted to it on one thread of its own, as a UI thread does.</summary>
    private sealed class SingleThreadedContext : SynchronizationContext
    {
        private readonly System.Collections.Concurrent.BlockingCollection<(SendOrPostCallback Callback, object? State)> _queue = [];

        public override void Post(SendOrPostCallback d, object? state) => _queue.Add((d, state));

        public override void Send(SendOrPostCallback d, object? state) => throw new NotSupportedException();

        public static Task<T> Run<T>(Func<Task<T>> work)
        {
            var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                var context = new SingleThreadedContext();
                SetSynchronizationContext(context);
                context.Post(
                    async _ =>
                    {
                        try
                        {
                            result.SetResult(await work());
                        }
                        catch (Exception exception)
                        {
                            result.SetException(exception);
                        }
                        finally
                        {
                            context._queue.CompleteAdding();
                        }
                    },
                    null);
                foreach (var (callback, state) in context._queue.GetConsumingEnumerable())
                {
                    callback(state);
                }
            })
            { IsBackground = true }; // a deadlocked one must not keep the test run alive
            thread.Start();
            return result.Task;
        }
    }

    private static int CurrentGeneration(SaverDataSource dataSource)
        => (int)typeof(SqliteSaver.Data.Pooling.ConnectionPool)
            .GetField("_generation", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!
            .GetValue(dataSource.Pool)!;
}
