using System.Collections.Concurrent;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>A process killed with SIGKILL while it holds the write lock: the others carry on and lose nothing acknowledged.</summary>
public class ProcessKillTests : DatabaseTest
{
    private const int HolderCommits = 20;
    private const int Threads = 4;
    private const int PerThread = 25;

    [Test]
    public void A_writer_killed_holding_a_write_transaction_loses_only_its_uncommitted_rows_and_blocks_no_one()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE work (id INTEGER PRIMARY KEY, worker INTEGER, thread INTEGER, n INTEGER)");
        var dataSource = SaverDataSource.GetShared(connectionString);
        var acknowledged = new ConcurrentQueue<(int Worker, int Thread, int N)>();

        Write(connectionString, worker: 100, acknowledged).ShouldBeEmpty(); // before

        using var holder = WorkerProcess.Hold(connectionString, HolderCommits, worker: 1);
        Wait.Until(() => holder.Lines.Contains("holding") || holder.Process.HasExited, timeoutSeconds: 60);
        holder.Process.HasExited.ShouldBeFalse();
        var holderAcknowledged = holder.Lines.Count(line => line.StartsWith("acknowledged ", StringComparison.Ordinal));
        holderAcknowledged.ShouldBe(HolderCommits);

        // While it holds the lock: writers in this process queue behind it, another process's writers wait in SQLite.
        var during = Task.Run(() => Write(connectionString, worker: 200, acknowledged));
        using var otherProcess = WorkerProcess.Write(connectionString, threads: 2, transactions: PerThread, worker: 2);
        Wait.Until(() => otherProcess.Lines.Count == 2 || otherProcess.Process.HasExited, timeoutSeconds: 60); // both opened, writing next
        otherProcess.Lines.ShouldBe(["opened", "opened"]);
        Wait.Until(() => dataSource.Executor.Gate!.WaitingCount > 0);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM work WHERE worker IN (2, 200)").ShouldBe(0L); // nothing got past it

        holder.Kill();

        during.Wait(TimeSpan.FromMinutes(2)).ShouldBeTrue();
        during.Result.ShouldBeEmpty();
        otherProcess.WaitForExit().ShouldBeEmpty();
        otherProcess.Process.ExitCode.ShouldBe(0);
        otherProcess.Lines.ShouldBe(["opened", "opened", $"committed {2 * PerThread}"]);
        Write(connectionString, worker: 300, acknowledged).ShouldBeEmpty(); // after

        foreach (var (worker, thread, n) in acknowledged)
        {
            PoolTests.Scalar(connectionString, $"SELECT count(*) FROM work WHERE worker = {worker} AND thread = {thread} AND n = {n}").ShouldBe(1L);
        }

        acknowledged.Count.ShouldBe(3 * Threads * PerThread);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM work WHERE worker = 1 AND thread = 0").ShouldBe((long)HolderCommits);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM work WHERE worker = 1 AND thread = -1").ShouldBe(0L); // never committed
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM work WHERE worker = 2").ShouldBe(2L * PerThread);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM work").ShouldBe((3L * Threads * PerThread) + HolderCommits + (2 * PerThread));
        PoolTests.Scalar(connectionString, "PRAGMA integrity_check").ShouldBe("ok");
    }

    /// <summary>Threads that each commit <see cref="PerThread"/> rows and record each one once its commit has returned.</summary>
    private static List<Exception> Write(string connectionString, int worker, ConcurrentQueue<(int, int, int)> acknowledged)
    {
        var errors = new ConcurrentQueue<Exception>();
        var threads = Enumerable.Range(0, Threads).Select(thread => new Thread(() =>
        {
            try
            {
                for (var n = 0; n < PerThread; n++)
                {
                    using var connection = new SaverDbConnection(connectionString);
                    connection.RunInTransaction(transaction =>
                    {
                        using var insert = connection.CreateCommand();
                        insert.CommandText = $"INSERT INTO work (worker, thread, n) VALUES ({worker}, {thread}, {n})";
                        insert.ExecuteNonQuery();
                    });
                    acknowledged.Enqueue((worker, thread, n));
                }
            }
            catch (Exception exception)
            {
                errors.Enqueue(exception);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        return [.. errors];
    }
}
