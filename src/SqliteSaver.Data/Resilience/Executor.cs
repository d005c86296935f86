using System.Data;
using System.Globalization;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Pooling;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// Runs commands and begins transactions for one data source so that SQLITE_BUSY never applies a write twice:
/// writes outside a transaction pass the write gate and run inside a transaction of their own, which is rolled back
/// whole before the retry strategy runs it again; reads and single standalone statements are retried as they are;
/// statements inside the caller's transaction are never retried, since only the whole unit of work can be.
/// </summary>
internal sealed class Executor(SaverRetryStrategy strategy, WriteGate? gate)
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
        if (physical.InTransaction)
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
        var state = new WriteAttempt<T>(physical, command, run, behavior, keepOpen);
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

    /// <summary>The asynchronous form of <see cref="Execute"/>: waits on the gate and between attempts without blocking a thread.</summary>
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
        if (physical.InTransaction)
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
        var state = new WriteAttempt<T>(physical, command, run, behavior, keepOpen);
        try
        {
            var result = await strategy.ExecuteAsync(static (s, _) => ValueTask.FromResult(s.Run()), state, cancellationToken).ConfigureAwait(false);
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

    /// <summary>The asynchronous form of <see cref="Begin"/>.</summary>
    public async ValueTask BeginAsync(PhysicalConnection physical, bool deferred, bool retry, int timeoutSeconds, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
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
                await strategy.ExecuteAsync(static (p, _) => ValueTask.FromResult(BeginImmediate(p)), physical, cancellationToken).ConfigureAwait(false);
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

    private static bool BeginImmediate(PhysicalConnection physical)
    {
        SqliteException.ThrowExceptionForRC(physical.TryBegin(deferred: false), physical.Handle);
        return true;
    }

    private static TimeSpan GateTimeout(int timeoutSeconds)
        => timeoutSeconds == 0 ? Timeout.InfiniteTimeSpan : TimeSpan.FromSeconds(timeoutSeconds);

    private static SqliteException GateTimedOut(int timeoutSeconds)
        => new(
            string.Create(
                CultureInfo.InvariantCulture,
                $"SQLite Error 5: 'database is locked'. Waited {timeoutSeconds} s (the command's CommandTimeout, from Default Timeout) in this process's write queue behind a transaction that stayed open; commit or roll back transactions promptly."),
            5,
            5);

    private void EnterGate(PhysicalConnection physical, int timeoutSeconds, CancellationToken cancellationToken)
    {
        if (gate is null)
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
        if (gate is null)
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
        PhysicalConnection physical,
        SqliteCommand command,
        Func<SqliteCommand, CommandBehavior, T> run,
        CommandBehavior behavior,
        bool keepOpen)
    {
        public T Run()
        {
            BeginImmediate(physical);
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
