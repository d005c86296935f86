using System.Globalization;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Diagnostics;
using SQLitePCL;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// The built-in retry strategy: up to Retry attempts after the first on SQLITE_BUSY or SQLITE_LOCKED, the n-th
/// (from 0) after a delay of min(Max Delay, Base Delay × 2^n), spread by ±Jitter, timed by a <see cref="TimeProvider"/>.
/// When attempts run out the caller gets a <see cref="SqliteException"/> with the same codes that says how many
/// attempts were made and how long they took.
/// </summary>
internal sealed class RetryPolicy : SaverRetryStrategy
{
    private readonly TimeProvider _time;
    private readonly Telemetry _telemetry;
    private readonly Random _random;

    public RetryPolicy(SaverOptions options, TimeProvider time, Telemetry telemetry, Random? random = null)
    {
        Retries = options.Retry;
        BaseDelay = options.BaseDelay;
        MaxDelay = options.MaxDelay;
        Jitter = options.Jitter;
        _time = time;
        _telemetry = telemetry;
        _random = random ?? Random.Shared;
    }

    /// <summary>Raised as each delay starts (its timer already running) with the retry number (from 1), the delay and the error that caused it.</summary>
    public event Action<int, TimeSpan, SqliteException>? Retrying;

    public int Retries { get; }

    public TimeSpan BaseDelay { get; }

    public TimeSpan MaxDelay { get; }

    public double Jitter { get; }

    /// <summary>The delay before retry <paramref name="retry"/> (from 0): min(Max Delay, Base Delay × 2^n), spread by ±Jitter.</summary>
    public TimeSpan GetDelay(int retry)
    {
        var ticks = Math.Min(MaxDelay.Ticks, BaseDelay.Ticks * Math.Pow(2, retry));
        if (Jitter > 0)
        {
            ticks *= 1 + (Jitter * ((2 * _random.NextDouble()) - 1));
        }

        return TimeSpan.FromTicks((long)ticks);
    }

    public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
    {
        var start = _time.GetTimestamp();
        for (var attempts = 1; ; attempts++)
        {
            try
            {
                return attempt(state, cancellationToken);
            }
            catch (SqliteException error) when (IsTransient(error))
            {
                var delay = NextDelay(error, attempts, start, Left(state));
                Delay(attempts, delay, error, cancellationToken);
                _telemetry.Retried();
            }
        }
    }

    public override async ValueTask<TResult> ExecuteAsync<TState, TResult>(
        Func<TState, CancellationToken, ValueTask<TResult>> attempt,
        TState state,
        CancellationToken cancellationToken)
    {
        var start = _time.GetTimestamp();
        for (var attempts = 1; ; attempts++)
        {
            try
            {
                return await attempt(state, cancellationToken).ConfigureAwait(false);
            }
            catch (SqliteException error) when (IsTransient(error))
            {
                var delay = NextDelay(error, attempts, start, Left(state));
                var elapsed = Task.Delay(delay, _time, cancellationToken);
                Retrying?.Invoke(attempts, delay, error);
                await elapsed.ConfigureAwait(false);
                _telemetry.Retried();
            }
        }
    }

    /// <summary>
    /// Blocks for a synchronous attempt's delay. With the system clock the calling thread waits itself: a timer's
    /// callback needs a thread-pool thread, which synchronous callers blocked on the pool's threads may all hold.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    private void Delay(int attempts, TimeSpan delay, SqliteException error, CancellationToken cancellationToken)
    {
        if (ReferenceEquals(_time, TimeProvider.System))
        {
            Retrying?.Invoke(attempts, delay, error);
            if (!cancellationToken.CanBeCanceled)
            {
                Thread.Sleep(delay);
            }
            else if (cancellationToken.WaitHandle.WaitOne(delay))
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            return;
        }

        using var elapsed = new ManualResetEventSlim();
        using var timer = _time.CreateTimer(static state => ((ManualResetEventSlim)state!).Set(), elapsed, delay, Timeout.InfiniteTimeSpan);
        Retrying?.Invoke(attempts, delay, error);
        elapsed.Wait(cancellationToken);
    }

    /// <summary>What is left of the CommandTimeout of a command's attempt (see <see cref="IBoundedAttempt"/>); infinite for other work.</summary>
    private static TimeSpan Left<TState>(TState state)
        => state is IBoundedAttempt attempt ? attempt.Deadline.Remaining : Timeout.InfiniteTimeSpan;

    /// <summary>
    /// The delay before the next attempt, at most <paramref name="left"/>, or the final error once
    /// <paramref name="attempts"/> used up every retry.
    /// </summary>
    private TimeSpan NextDelay(SqliteException error, int attempts, long start, TimeSpan left)
    {
        if (attempts > Retries)
        {
            var elapsed = _time.GetElapsedTime(start);
            _telemetry.GaveUp(attempts, elapsed, error);
            throw new SqliteException(
                string.Create(
                    CultureInfo.InvariantCulture,
                    $"{error.Message} Gave up after {attempts} attempt{(attempts == 1 ? string.Empty : "s")} over {elapsed.TotalMilliseconds:0} ms (Retry={Retries}{(error.SqliteErrorCode == raw.SQLITE_LOCKED ? "): a table lock (of another connection sharing this cache, or of a statement of this connection) was held through all of them, which Busy Timeout does not wait for. Keep transactions short, or raise Retry or Max Delay to wait longer." : ", Busy Timeout applies to each attempt): another connection held the lock through all of them. Keep transactions short, or raise Busy Timeout or Retry to wait longer.")}"),
                error.SqliteErrorCode,
                error.SqliteExtendedErrorCode);
        }

        var delay = GetDelay(attempts - 1);
        if (left != Timeout.InfiniteTimeSpan && left < delay)
        {
            // Then the next attempt finds the CommandTimeout spent and throws its error. Rounded up to a whole
            // millisecond, which the waits measure in: a shorter one returned at once, and attempts that fail within
            // microseconds (Busy Timeout=0) used up every retry before the CommandTimeout was spent.
            delay = TimeSpan.FromMilliseconds(Math.Ceiling(left.TotalMilliseconds));
        }

        _telemetry.Retrying(attempts, Retries, delay, error);
        return delay;
    }
}
