using System.Reflection;
using Shouldly;

namespace SqliteSaver.Data.Tests.Pooling;

/// <summary>
/// A command or transaction disposed on another thread while a call of it is still ending: the statement a reader
/// reads is never handed to another command, and a transaction's Dispose that returns leaves it rolled back.
/// </summary>
public class DisposeDuringCallTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A command disposed on another thread as its ExecuteReader ends: the reader has its statement before the call
    /// stops running, so the Dispose closes that reader rather than give its statement back under it, and another
    /// command with the same text on the connection gets a statement of its own (it returns 1; a reader Dispose did not
    /// close reads 1 and 2). Before, the call stopped running before the reader was made, and the Dispose gave the
    /// statement back while the reader was about to read it. The window is held open by a third thread that holds the
    /// command's Cancel lock, with its count of Cancels raised, as a Cancel in progress does, once the retry strategy
    /// has seen the attempt return the reader; the execution waits for that lock as it stops running. It cancels
    /// nothing: a Cancel that cancels the call's token as the execution ends cancels the execution (LateCancellationTests).
    /// The test reads and sets the private _running, _reader, _cancel and _cancelling by reflection.
    /// </summary>
    [Test]
    public void A_command_disposed_between_ExecuteReaders_EndRunning_and_WrapReader_gives_back_the_statement_its_reader_reads()
    {
        const string select = "SELECT x FROM t ORDER BY x";
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        using var strategy = new AfterAttemptStrategy();
        var builder = new SaverDataSourceBuilder(connectionString) { Name = "second-review-reader-window" }.UseRetryStrategy(strategy);
        using var dataSource = builder.Build();
        using var connection = dataSource.OpenConnection();
        var command = connection.CreateCommand();
        command.CommandText = select;
        command.Cancel(); // runs nothing: makes the command's Cancel lock

        using var inCancel = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        Task? cancelling = null;
        strategy.Arm(_ =>
        {
            // Runs on the executing thread after the attempt returned the reader, while the call still runs.
            cancelling = Task.Factory.StartNew(() => HoldCancelLock(command, inCancel, release), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            inCancel.Wait(Bound, CancellationToken.None).ShouldBeTrue("the Cancel lock is held");
        });

        var executing = Task.Factory.StartNew(() => command.ExecuteReader(), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Wait.Until(() => (inCancel.IsSet && Running(command) == 0) || executing.IsCompleted);
        executing.IsCompleted.ShouldBeFalse("the execution waits for Cancel's lock in EndRunning");

        // As Dapper's pipelined code, or a using block on another thread, may; on a thread of its own, as closing the
        // reader it may find waits for Cancel's lock too.
        var disposing = Task.Factory.StartNew(command.Dispose, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Wait.Until(() => disposing.IsCompleted || ReaderClosing(command)); // returned, or waits for Cancel's lock as it closes the reader
        release.Set();
        cancelling.ShouldNotBeNull().Wait(Bound).ShouldBeTrue("the Cancel lock was let go");
        disposing.Wait(Bound).ShouldBeTrue("Dispose returned");
        executing.Wait(Bound).ShouldBeTrue("ExecuteReader returned");
        using var reader = executing.Result;
        var other = $"returned {ConnectionTests.Scalar(connection, select)}";
        var rows = new List<long>();
        while (!reader.IsClosed && reader.Read())
        {
            rows.Add(reader.GetInt64(0));
        }

        other.ShouldBe("returned 1", "another command with the same text was handed the statement the open reader reads");
        if (rows.Count > 0)
        {
            rows.ShouldBe([1L, 2L]); // a reader Dispose did not close reads its own statement to its end
        }
    }

    /// <summary>
    /// Holds <paramref name="command"/>'s Cancel lock with its count of Cancels raised, as a Cancel in progress does,
    /// from <paramref name="held"/> set until <paramref name="release"/>; the lock is the one an earlier Cancel made.
    /// </summary>
    private static void HoldCancelLock(SaverDbCommand command, ManualResetEventSlim held, ManualResetEventSlim release)
    {
        var cancelLock = (Lock)typeof(SaverDbCommand).GetField("_cancel", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(command)!;
        var cancelling = typeof(SaverDbCommand).GetField("_cancelling", BindingFlags.NonPublic | BindingFlags.Instance)!;
        cancelLock.Enter();
        try
        {
            cancelling.SetValue(command, (int)cancelling.GetValue(command)! + 1);
            held.Set();
            release.Wait(Bound);
            cancelling.SetValue(command, (int)cancelling.GetValue(command)! - 1);
        }
        finally
        {
            cancelLock.Exit();
        }
    }

    /// <summary>The command's private count of running calls (see SaverDbCommand.Cancel), to know EndRunning has decremented it.</summary>
    private static int Running(SaverDbCommand command)
        => (int)typeof(SaverDbCommand).GetField("_running", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(command)!;

    /// <summary>Whether the command's reader (its private _reader) has begun to close.</summary>
    private static bool ReaderClosing(SaverDbCommand command)
        => typeof(SaverDbCommand).GetField("_reader", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(command) is System.Data.Common.DbDataReader { IsClosed: true };

    /// <summary>Runs each attempt once; the first after <see cref="Arm"/> then hands its token to a callback before returning.</summary>
    private sealed class AfterAttemptStrategy : SaverRetryStrategy, IDisposable
    {
        private Action<CancellationToken>? _after;

        public void Arm(Action<CancellationToken> after) => _after = after;

        public void Dispose() => _after = null;

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        {
            var result = attempt(state, cancellationToken);
            After(cancellationToken);
            return result;
        }

        public override async ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt,
            TState state,
            CancellationToken cancellationToken)
        {
            var result = await attempt(state, cancellationToken);
            After(cancellationToken);
            return result;
        }

        private void After(CancellationToken cancellationToken)
        {
            if (Interlocked.Exchange(ref _after, null) is { } after)
            {
                after(cancellationToken);
            }
        }
    }
}
