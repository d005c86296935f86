using System.Data;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// Runs commands and begins transactions for one data source so that SQLITE_BUSY never applies a write twice:
/// writes outside a transaction pass the write gate and run inside a transaction of their own, which is rolled back
/// whole before the retry strategy runs it again; reads and single standalone statements are retried as they are;
/// statements inside the caller's transaction are never retried, since only the whole unit of work can be.
/// </summary>
internal sealed class Executor(SaverRetryStrategy strategy, WriteGate? gate, TimeSpan busyTimeout)
{
    private readonly CommandClassifier _classifier = new();

    public SaverRetryStrategy Strategy => strategy;

    public WriteGate? Gate => gate;

    /// <summary>
    /// Runs <paramref name="run"/> on <paramref name="command"/>. With <paramref name="keepOpen"/> a write's
    /// transaction and gate stay held (for a reader, whose statements run as it is read) until
    /// <see cref="Finish"/>; the result says whether that happened.
    /// </summary>
    public (T Result, bool Open) Execute<T>(
        PhysicalConnection physical,
        SqliteCommand command,
        int timeoutSeconds,
        Func<SqliteCommand, CommandBehavior, T> run,
        CommandBehavior behavior,
        bool keepOpen,
        CancellationToken cancellationToken)
    {
        if (InCallersTransaction(physical))
        {
            return (run(command, behavior), false);
        }

        switch (_classifier.Classify(physical.Handle, command.CommandText))
        {
            case CommandKind.Read or CommandKind.Standalone:
                return (strategy.Execute(static (s, _) => s.run(s.command, s.behavior), (run, command, behavior), cancellationToken), false);
            case CommandKind.Unprotected:
                return (run(command, behavior), false);
        }

        EnterGate(physical, timeoutSeconds, cancellationToken);
        var state = new WriteAttempt<T>(this, physical, command, run, behavior, keepOpen);
        try
        {
            var result = strategy.Execute(static (s, _) => s.Run(), state, cancellationToken);
            if (!keepOpen)
            {
                physical.ReleaseGate();
            }

            return (result, keepOpen);
        }
        catch
        {
            physical.ReleaseGate();
            throw;
        }
    }

    /// <summary>
    /// The asynchronous form of <see cref="Execute"/>: waits on the gate and between attempts without blocking a
    /// thread. Cancellation also interrupts SQLite while it waits for a lock (busy_timeout) or runs a statement.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask<(T Result, bool Open)> ExecuteAsync<T>(
        PhysicalConnection physical,
        SqliteCommand command,
        int timeoutSeconds,
        Func<SqliteCommand, CommandBehavior, T> run,
        CommandBehavior behavior,
        bool keepOpen,
        CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var interrupt = InterruptOnCancel(physical, cancellationToken);
        try
        {
            return await ExecuteCoreAsync(physical, command, timeoutSeconds, run, behavior, keepOpen, cancellationToken).ConfigureAwait(false);
        }
        catch (SqliteException error) when (IsInterruption(error, cancellationToken))
        {
            throw new OperationCanceledException("The command was cancelled while SQLite ran or waited for a lock.", error, cancellationToken);
        }
    }

    private async ValueTask<(T Result, bool Open)> ExecuteCoreAsync<T>(
        PhysicalConnection physical,
        SqliteCommand command,
        int timeoutSeconds,
        Func<SqliteCommand, CommandBehavior, T> run,
        CommandBehavior behavior,
        bool keepOpen,
        CancellationToken cancellationToken)
    {
        if (InCallersTransaction(physical))
        {
            return (run(command, behavior), false);
        }

        switch (_classifier.Classify(physical.Handle, command.CommandText))
        {
            case CommandKind.Read or CommandKind.Standalone:
                return (await strategy.ExecuteAsync(static (s, _) => ValueTask.FromResult(s.run(s.command, s.behavior)), (run, command, behavior), cancellationToken).ConfigureAwait(false), false);
            case CommandKind.Unprotected:
                return (run(command, behavior), false);
        }

        await EnterGateAsync(physical, timeoutSeconds, cancellationToken).ConfigureAwait(false);
        var state = new WriteAttempt<T>(this, physical, command, run, behavior, keepOpen);
        try
        {
            var result = await strategy.ExecuteAsync(static (s, token) => s.RunAsync(token), state, cancellationToken).ConfigureAwait(false);
            if (!keepOpen)
            {
                physical.ReleaseGate();
            }

            return (result, keepOpen);
        }
        catch
        {
            physical.ReleaseGate();
            throw;
        }
    }

    /// <summary>Commits a write left open by <see cref="Execute"/> (or rolls it back after an error) and leaves the gate.</summary>
    public static void Finish(PhysicalConnection physical, bool commit)
    {
        try
        {
            if (commit && physical.InTransaction)
            {
                physical.Commit();
            }
        }
        finally
        {
            physical.TryRollback();
            physical.ReleaseGate();
        }
    }

    /// <summary>
    /// Begins a transaction. An IMMEDIATE one first passes the write gate, and with <paramref name="retry"/> its
    /// <c>BEGIN IMMEDIATE</c> is retried by the strategy while the write lock is busy.
    /// </summary>
    public void Begin(PhysicalConnection physical, bool deferred, bool retry, int timeoutSeconds, CancellationToken cancellationToken)
    {
        if (deferred)
        {
            SqliteException.ThrowExceptionForRC(physical.TryBegin(deferred: true), physical.Handle);
            return;
        }

        EnterGate(physical, timeoutSeconds, cancellationToken);
        try
        {
            if (retry)
            {
                strategy.Execute(static (p, _) => BeginImmediate(p), physical, cancellationToken);
            }
            else
            {
                BeginImmediate(physical);
            }
        }
        catch
        {
            physical.ReleaseGate();
            throw;
        }
    }

    /// <summary>The asynchronous form of <see cref="Begin"/>; cancellation also interrupts SQLite's wait for the lock.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public async ValueTask BeginAsync(PhysicalConnection physical, bool deferred, bool retry, int timeoutSeconds, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var interrupt = InterruptOnCancel(physical, cancellationToken);
        try
        {
            await BeginCoreAsync(physical, deferred, retry, timeoutSeconds, cancellationToken).ConfigureAwait(false);
        }
        catch (SqliteException error) when (IsInterruption(error, cancellationToken))
        {
            throw new OperationCanceledException("BeginTransaction was cancelled while SQLite waited for the write lock.", error, cancellationToken);
        }
    }

    private async ValueTask BeginCoreAsync(PhysicalConnection physical, bool deferred, bool retry, int timeoutSeconds, CancellationToken cancellationToken)
    {
        if (deferred)
        {
            SqliteException.ThrowExceptionForRC(physical.TryBegin(deferred: true), physical.Handle);
            return;
        }

        await EnterGateAsync(physical, timeoutSeconds, cancellationToken).ConfigureAwait(false);
        try
        {
            if (retry)
            {
                await strategy.ExecuteAsync(static (s, token) => s.Executor.BeginImmediateAsync(s.Physical, token), (Executor: this, Physical: physical), cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await BeginImmediateAsync(physical, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            physical.ReleaseGate();
            throw;
        }
    }

    /// <summary>
    /// Whether the caller has a transaction of its own on the connection: SQLite is out of autocommit, or the
    /// connection holds the write gate for a transaction that SQLite has already ended (ON CONFLICT ROLLBACK, a
    /// COMMIT sent as SQL). Commands then run as they are, unretried, and never queue for the gate they hold.
    /// </summary>
    private static bool InCallersTransaction(PhysicalConnection physical) => physical.InTransaction || physical.HeldGate is not null;

    private static CancellationTokenRegistration InterruptOnCancel(PhysicalConnection physical, CancellationToken cancellationToken)
        => cancellationToken.CanBeCanceled
            ? cancellationToken.Register(static handle => raw.sqlite3_interrupt((sqlite3)handle!), physical.Handle)
            : default;

    private static bool IsInterruption(SqliteException error, CancellationToken cancellationToken)
        => error.SqliteErrorCode == raw.SQLITE_INTERRUPT && cancellationToken.IsCancellationRequested;

    /// <summary><c>BEGIN IMMEDIATE</c>, waiting for another process's write lock in SQLite's busy handler up to Busy Timeout.</summary>
    private static bool BeginImmediate(PhysicalConnection physical)
    {
        SqliteException.ThrowExceptionForRC(physical.TryBegin(deferred: false), physical.Handle);
        return true;
    }

    /// <summary>
    /// <c>BEGIN IMMEDIATE</c> without blocking a thread: SQLite's busy handler would sleep inside the call and ignore
    /// cancellation, so SQLite is asked not to wait and Busy Timeout is spent in cancellable delays of at most 2 ms
    /// between tries. When it is spent the attempt fails with SQLITE_BUSY, as it would in SQLite.
    /// </summary>
    private async ValueTask<bool> BeginImmediateAsync(PhysicalConnection physical, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        raw.sqlite3_busy_timeout(physical.Handle, 0);
        try
        {
            for (var tries = 0; ; tries++)
            {
                var rc = physical.TryBegin(deferred: false);
                if (rc != raw.SQLITE_BUSY || Stopwatch.GetElapsedTime(started) >= busyTimeout)
                {
                    SqliteException.ThrowExceptionForRC(rc, physical.Handle);
                    return true;
                }

                await Task.Delay(LockPollDelay(tries), cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            raw.sqlite3_busy_timeout(physical.Handle, (int)busyTimeout.TotalMilliseconds);
        }
    }

    /// <summary>No delay for the first tries, then 1 ms, then 2 ms.</summary>
    private static int LockPollDelay(int tries) => tries < 4 ? 0 : tries < 20 ? 1 : 2;

    private static TimeSpan GateTimeout(int timeoutSeconds)
        => timeoutSeconds == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(timeoutSeconds);

    private static WriteQueueTimeoutException GateTimedOut(int timeoutSeconds)
        => new(string.Create(
            CultureInfo.InvariantCulture,
            $"SQLite Error 5: 'database is locked'. Waited {timeoutSeconds} s (the command's CommandTimeout, from Default Timeout) in this process's write queue behind a transaction that stayed open; commit or roll back transactions promptly."));

    private void EnterGate(PhysicalConnection physical, int timeoutSeconds, CancellationToken cancellationToken)
    {
        if (gate is null || physical.HeldGate is not null)
        {
            return;
        }

        if (!gate.Enter(GateTimeout(timeoutSeconds), cancellationToken))
        {
            throw GateTimedOut(timeoutSeconds);
        }

        physical.HeldGate = gate;
    }

    private async ValueTask EnterGateAsync(PhysicalConnection physical, int timeoutSeconds, CancellationToken cancellationToken)
    {
        if (gate is null || physical.HeldGate is not null)
        {
            return;
        }

        if (!await gate.EnterAsync(GateTimeout(timeoutSeconds), cancellationToken).ConfigureAwait(false))
        {
            throw GateTimedOut(timeoutSeconds);
        }

        physical.HeldGate = gate;
    }

    /// <summary>One attempt at a write outside a transaction: BEGIN IMMEDIATE, run, COMMIT; anything that fails is rolled back whole.</summary>
    private sealed class WriteAttempt<T>(
        Executor executor,
        PhysicalConnection physical,
        SqliteCommand command,
        Func<SqliteCommand, CommandBehavior, T> run,
        CommandBehavior behavior,
        bool keepOpen)
    {
        public T Run()
        {
            BeginImmediate(physical);
            return RunBegun();
        }

        public async ValueTask<T> RunAsync(CancellationToken cancellationToken)
        {
            await executor.BeginImmediateAsync(physical, cancellationToken).ConfigureAwait(false);
            return RunBegun();
        }

        private T RunBegun()
        {
            try
            {
                var result = run(command, behavior);
                if (!keepOpen)
                {
                    physical.Commit();
                }

                return result;
            }
            catch
            {
                physical.TryRollback();
                throw;
            }
        }
    }
}
