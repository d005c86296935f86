using Dapper;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using SqliteSaver.Data.Resilience;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>
/// Cancellation at every wait (pool, write gate, backoff, between the attempts of a unit of work) ends the wait with
/// <see cref="OperationCanceledException"/> and leaks nothing: after a thousand cancelled waits every slot of the pool
/// can be rented and the write gate taken.
/// </summary>
public class CancellationTests : DatabaseTest
{
    private const int MaxPoolSize = 3;
    private const int Rounds = 250;
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(30);

    [Test]
    public async Task OpenAsync_cancelled_while_a_new_connections_PRAGMAs_wait_out_a_backoff_ends_at_once_and_frees_the_slot()
    {
        using (var create = new SqliteConnection($"Data Source={Folder.File()};Pooling=False"))
        {
            create.Open();
            create.Execute("CREATE TABLE t (x)"); // rollback-journal: the pool's first connection switches it to WAL
        }

        // A fake clock: the backoff never ends by itself. No background checkpointer, whose timer would run inside Advance.
        var time = new FakeTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1;Busy Timeout=0;Base Delay=60;Max Delay=60;Checkpoint Interval=0"))
            .UseTimeProvider(time)
            .Build();
        var retrying = 0;
        ((RetryPolicy)dataSource.Executor.Strategy).Retrying += (_, _, _) => Interlocked.Increment(ref retrying);
        var reader = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        reader.Open();
        reader.Execute("BEGIN; SELECT count(*) FROM t;"); // another process's read lock: the switch to WAL is busy

        using var cancellation = new CancellationTokenSource();
        var open = Task.Run(async () =>
        {
            await using var connection = dataSource.CreateConnection();
            await connection.OpenAsync(cancellation.Token);
        });
        Wait.Until(() => Volatile.Read(ref retrying) >= 1); // in the first backoff delay
        await cancellation.CancelAsync();

        await Should.ThrowAsync<OperationCanceledException>(() => open.WaitAsync(Prompt));
        reader.Dispose();
        await using var next = await dataSource.OpenConnectionAsync(); // the slot is free, and the switch now succeeds
        ConnectionTests.Pragma(next, "journal_mode").ShouldBe("wal");
    }

    [Test]
    public async Task A_thousand_cancelled_waits_leave_every_slot_rentable_and_the_write_gate_free()
    {
        var connectionString = Folder.ConnectionString(
            $"Max Pool Size={MaxPoolSize};Pool Timeout=5;Default Timeout=5;Busy Timeout=0;Base Delay=3600;Max Delay=3600");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var gate = dataSource.Executor.Gate!;
        var cancelled = 0;

        cancelled += await CancelPoolWaits(dataSource);
        cancelled += await CancelPoolWaitsRacingReturns(dataSource);
        cancelled += await CancelGateWaits(dataSource);
        cancelled += await CancelBackoffWaits(dataSource);

        cancelled.ShouldBeGreaterThanOrEqualTo(1000);
        var statistics = dataSource.Statistics;
        statistics.InUse.ShouldBe(0);
        statistics.Waiting.ShouldBe(0);
        statistics.Idle.ShouldBe(statistics.Total);
        statistics.Total.ShouldBeLessThanOrEqualTo(MaxPoolSize);
        statistics.Timeouts.ShouldBe(0);
        statistics.Leaked.ShouldBe(0);
        gate.WaitingCount.ShouldBe(0);
        gate.IsHeld.ShouldBeFalse();

        // Every slot can be rented (Pool Timeout=5 turns a leaked slot into a TimeoutException), and the gate taken.
        var all = Enumerable.Range(0, MaxPoolSize).Select(_ => dataSource.OpenConnection()).ToList();
        dataSource.Statistics.InUse.ShouldBe(MaxPoolSize);
        using (var transaction = all[0].BeginTransaction())
        {
            all[0].Execute("INSERT INTO t VALUES (1)", transaction: transaction);
            transaction.Commit();
        }

        all[1].Execute("INSERT INTO t VALUES (2)");
        all.ForEach(connection => connection.Dispose());
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(2L); // nothing a cancelled call tried was kept
    }

    /// <summary>OpenAsync queued behind a full pool, cancelled at once or a moment later.</summary>
    private static async Task<int> CancelPoolWaits(SaverDataSource dataSource)
    {
        var holders = Enumerable.Range(0, MaxPoolSize).Select(_ => dataSource.OpenConnection()).ToList();
        for (var i = 0; i < Rounds; i++)
        {
            using var cancellation = new CancellationTokenSource();
            await using var waiting = dataSource.CreateConnection();
            var open = waiting.OpenAsync(cancellation.Token);
            dataSource.Statistics.Waiting.ShouldBe(1);
            if (i % 2 == 0)
            {
                await cancellation.CancelAsync();
            }
            else
            {
                cancellation.CancelAfter(TimeSpan.FromMilliseconds(1));
            }

            await Should.ThrowAsync<OperationCanceledException>(() => open.WaitAsync(Prompt));
        }

        holders.ForEach(holder => holder.Dispose());
        return Rounds;
    }

    /// <summary>OpenAsync cancelled while another thread returns a connection: the waiter either gets it or gives up, never both or neither.</summary>
    private static async Task<int> CancelPoolWaitsRacingReturns(SaverDataSource dataSource)
    {
        var holders = Enumerable.Range(0, MaxPoolSize).Select(_ => dataSource.OpenConnection()).ToList();
        var cancelled = 0;
        var granted = 0;
        var random = new Random(7);
        for (var i = 0; cancelled < Rounds; i++)
        {
            i.ShouldBeLessThan(Rounds * 20, "the cancellations almost never won the race");
            using var cancellation = new CancellationTokenSource();
            var waiting = dataSource.CreateConnection();
            var open = waiting.OpenAsync(cancellation.Token);
            var holder = holders[i % MaxPoolSize];
            // Two threads released together, one of them after a random spin, each in turn: each side wins often
            // however busy the machine is.
            var spin = random.Next(0, 40_000);
            using (var start = new Barrier(2))
            {
                var release = Task.Factory.StartNew(
                    () =>
                    {
                        start.SignalAndWait();
                        Thread.SpinWait(i % 2 == 0 ? spin : 0);
                        holder.Close();
                    },
                    TaskCreationOptions.LongRunning);
                start.SignalAndWait();
                Thread.SpinWait(i % 2 == 0 ? 0 : spin);
                await cancellation.CancelAsync();
                await release;
            }

            try
            {
                await open.WaitAsync(Prompt);
                waiting.Close(); // granted first: the connection is the waiter's to return
                granted++;
            }
            catch (OperationCanceledException)
            {
                cancelled++;
            }

            holders[i % MaxPoolSize].Open(); // Pool Timeout=5: a slot lost in the race would time out here
            dataSource.Statistics.Waiting.ShouldBe(0);
        }

        holders.ForEach(holder => holder.Dispose());
        granted.ShouldBeGreaterThan(0, "the returns never won the race");
        return cancelled;
    }

    /// <summary>Writes, transactions and units of work queued at the write gate behind an open transaction.</summary>
    private static async Task<int> CancelGateWaits(SaverDataSource dataSource)
    {
        var gate = dataSource.Executor.Gate!;
        await using var holder = await dataSource.OpenConnectionAsync();
        await using var transaction = await holder.BeginTransactionAsync();
        await using var waiting = await dataSource.OpenConnectionAsync();
        await using var insert = waiting.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (-1)";
        for (var i = 0; i < Rounds; i++)
        {
            using var cancellation = new CancellationTokenSource();
            Task wait = (i % 5) switch
            {
                0 => insert.ExecuteNonQueryAsync(cancellation.Token),
                1 => waiting.BeginTransactionAsync(cancellation.Token).AsTask(),
                2 => waiting.RunInTransactionAsync((_, _) => Task.CompletedTask, cancellationToken: cancellation.Token),
                3 => waiting.RunInTransactionAsync((_, _) => Task.CompletedTask, cancellation.Token),
                _ => waiting.RunInTransactionAsync((_, _) => Task.FromResult(1), cancellation.Token),
            };
            gate.WaitingCount.ShouldBe(1);
            await cancellation.CancelAsync();

            await Should.ThrowAsync<OperationCanceledException>(() => wait.WaitAsync(Prompt));
            gate.WaitingCount.ShouldBe(0);
        }

        return Rounds;
    }

    /// <summary>Writes and units of work waiting out a retry delay of an hour, because another process holds the write lock.</summary>
    private async Task<int> CancelBackoffWaits(SaverDataSource dataSource)
    {
        var retrying = 0;
        ((RetryPolicy)dataSource.Executor.Strategy).Retrying += (_, _, _) => Interlocked.Increment(ref retrying);
        using var otherProcess = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        otherProcess.Open();
        otherProcess.Execute("BEGIN IMMEDIATE");
        await using var waiting = await dataSource.OpenConnectionAsync();
        await using var insert = waiting.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (-2)";
        for (var i = 0; i < Rounds; i++)
        {
            using var cancellation = new CancellationTokenSource();
            var before = Volatile.Read(ref retrying);
            var wait = i % 2 == 0
                ? insert.ExecuteNonQueryAsync(cancellation.Token)
                : waiting.RunInTransactionAsync((_, _) => Task.CompletedTask, cancellationToken: cancellation.Token);
            Wait.Until(() => Volatile.Read(ref retrying) > before);
            await cancellation.CancelAsync();

            await Should.ThrowAsync<OperationCanceledException>(() => wait.WaitAsync(Prompt));
            SQLitePCL.raw.sqlite3_get_autocommit(waiting.InnerConnection.Handle).ShouldBe(1);
        }

        otherProcess.Execute("ROLLBACK");
        return Rounds;
    }
}
