using System.Collections.Concurrent;
using Dapper;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>
/// Disposing a data source while connections are rented and callers queue: the queued fail with
/// <see cref="ObjectDisposedException"/>, rented connections work until they are returned and close then, no thread hangs.
/// </summary>
public class DisposeTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Test]
    public async Task Waiters_fail_with_ObjectDisposedException_rented_connections_close_on_return_and_no_thread_hangs()
    {
        var path = Folder.File();
        var connectionString = Folder.ConnectionString("Max Pool Size=2;Pool Timeout=0;Default Timeout=0");
        var dataSource = SaverDataSource.Create(connectionString);
        Create(dataSource);
        var writer = dataSource.OpenConnection();
        var transaction = writer.BeginTransaction();
        writer.Execute("INSERT INTO t VALUES (1)", transaction: transaction);
        var reader = dataSource.OpenConnection();
        var queuedWrite = reader.ExecuteAsync("INSERT INTO t VALUES (2)"); // behind the writer's transaction at the gate
        var syncWaiters = Enumerable.Range(0, 3).Select(_ => Task.Factory.StartNew(dataSource.OpenConnection, TaskCreationOptions.LongRunning)).ToList();
        var asyncWaiters = Enumerable.Range(0, 3).Select(_ => dataSource.OpenConnectionAsync().AsTask()).ToList();
        Wait.Until(() => dataSource.Statistics.Waiting == 6 && dataSource.Executor.Gate!.WaitingCount == 1);

        Task.Run(dataSource.Dispose).Wait(Bound).ShouldBeTrue();

        var errors = new List<ObjectDisposedException>();
        foreach (var waiter in syncWaiters.Concat(asyncWaiters))
        {
            errors.Add(await Should.ThrowAsync<ObjectDisposedException>(() => waiter.WaitAsync(Bound)));
        }

        errors.ShouldAllBe(error => error.ObjectName == typeof(SaverDataSource).FullName); // as every other ObjectDisposedException of a data source names it
        errors.Distinct().Count().ShouldBe(6); // one each: a shared instance thrown on several threads mixes stack traces

        Should.Throw<ObjectDisposedException>(dataSource.OpenConnection);

        // Rented connections still work until returned; the queued write goes through once the transaction ends.
        writer.ExecuteScalar<long>("SELECT count(*) FROM t", transaction: transaction).ShouldBe(1L);
        transaction.Commit();
        (await queuedWrite.WaitAsync(Bound)).ShouldBe(1);
        writer.Dispose();
        dataSource.Statistics.Total.ShouldBe(1);
        reader.Dispose();

        dataSource.Statistics.Total.ShouldBe(0);
        OpenFiles.Count(path).ShouldBe(0);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(2L);
    }

    [Test]
    public void Disposing_while_threads_rent_and_return_ends_every_thread_with_success_or_ObjectDisposedException()
    {
        var path = Folder.File();
        var connectionString = Folder.ConnectionString("Max Pool Size=3;Pool Timeout=0");
        var dataSource = SaverDataSource.Create(connectionString);
        Create(dataSource);
        var operations = 0;
        var unexpected = new ConcurrentQueue<Exception>();
        var threads = Enumerable.Range(0, 8).Select(thread => new Thread(() =>
        {
            try
            {
                while (true)
                {
                    using var connection = dataSource.OpenConnection();
                    if (thread % 2 == 0)
                    {
                        connection.Execute("INSERT INTO t VALUES (@thread)", new { thread });
                    }
                    else
                    {
                        connection.ExecuteScalar<long>("SELECT count(*) FROM t");
                    }

                    Interlocked.Increment(ref operations);
                }
            }
            catch (ObjectDisposedException)
            {
                // The data source went away: the expected end.
            }
            catch (Exception exception)
            {
                unexpected.Enqueue(exception);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        Wait.Until(() => Volatile.Read(ref operations) > 200);

        dataSource.Dispose();

        threads.ForEach(t => t.Join(Bound).ShouldBeTrue());
        unexpected.ShouldBeEmpty();
        dataSource.Statistics.Total.ShouldBe(0);
        OpenFiles.Count(path).ShouldBe(0);
        PoolTests.Scalar(connectionString, "PRAGMA integrity_check").ShouldBe("ok");
    }

    private static void Create(SaverDataSource dataSource)
    {
        using var connection = dataSource.OpenConnection();
        connection.Execute("CREATE TABLE t (x)");
    }
}
