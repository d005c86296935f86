using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Resilience;

namespace SqliteSaver.Data.Tests.Resilience;

public class RetryPolicyTests
{
    private static readonly SqliteException Busy = new("SQLite Error 5: 'database is locked'.", 5, 5);

    [Test]
    public void Delays_double_from_Base_Delay_up_to_Max_Delay()
    {
        var policy = Policy("Retry=6;Base Delay=0.01;Max Delay=0.05;Jitter=0", new FakeTimeProvider());

        Enumerable.Range(0, 6).Select(policy.GetDelay).ShouldBe(
            new[] { 10, 20, 40, 50, 50, 50 }.Select(ms => TimeSpan.FromMilliseconds(ms)));
    }

    [Test]
    public void Jitter_spreads_each_delay_within_its_fraction()
    {
        var policy = Policy("Retry=6;Base Delay=0.1;Max Delay=0.4;Jitter=0.25", new FakeTimeProvider(), new Random(42));

        for (var sample = 0; sample < 200; sample++)
        {
            for (var retry = 0; retry < 4; retry++)
            {
                var nominal = Math.Min(0.4, 0.1 * Math.Pow(2, retry));
                policy.GetDelay(retry).TotalSeconds.ShouldBeInRange(nominal * 0.75, nominal * 1.25);
            }
        }

        // Spread to both sides of the nominal delay, not only above or below it (a hunt: a one-sided jitter passed).
        var firstDelays = Enumerable.Range(0, 200).Select(_ => policy.GetDelay(0).TotalSeconds).ToList();
        firstDelays.ShouldContain(delay => delay < 0.1 * 0.9);
        firstDelays.ShouldContain(delay => delay > 0.1 * 1.1);
    }

    [Test]
    public void The_schedule_runs_on_the_fake_clock_exactly()
    {
        var time = new FakeTimeProvider();
        var policy = Policy("Retry=3;Base Delay=0.01;Max Delay=0.02;Jitter=0", time);
        var delays = new System.Collections.Concurrent.ConcurrentQueue<TimeSpan>();
        policy.Retrying += (_, delay, _) => delays.Enqueue(delay);
        var attempts = 0;

        var run = Task.Run(() => policy.Execute(
            static (counter, _) => Interlocked.Increment(ref counter[0]) < 4 ? throw Busy : "done",
            new[] { attempts },
            CancellationToken.None));

        foreach (var expected in new[] { 10, 20, 20 })
        {
            Wait.Until(() => delays.Count == 1);
            run.IsCompleted.ShouldBeFalse();
            delays.TryDequeue(out var delay).ShouldBeTrue();
            delay.ShouldBe(TimeSpan.FromMilliseconds(expected));
            time.Advance(delay);
        }

        run.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        run.Result.ShouldBe("done");
    }

    [Test]
    public async Task The_async_schedule_runs_on_the_fake_clock_exactly()
    {
        var time = new FakeTimeProvider();
        var policy = Policy("Retry=2;Base Delay=1;Max Delay=10;Jitter=0", time);
        var retries = 0;
        policy.Retrying += (_, _, _) => Interlocked.Increment(ref retries);
        var failures = 2;

        var run = policy.ExecuteAsync(
            (_, _) => Interlocked.Decrement(ref failures) >= 0 ? throw Busy : ValueTask.FromResult(42),
            0,
            CancellationToken.None).AsTask();

        Wait.Until(() => retries == 1);
        time.Advance(TimeSpan.FromSeconds(0.999));
        run.IsCompleted.ShouldBeFalse();
        time.Advance(TimeSpan.FromMilliseconds(1));
        Wait.Until(() => retries == 2);
        time.Advance(TimeSpan.FromSeconds(2));

        (await run.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBe(42);
    }

    [Test]
    public void When_attempts_run_out_the_error_keeps_its_code_and_says_how_many_and_how_long()
    {
        var time = new FakeTimeProvider();
        var policy = Policy("Retry=2;Base Delay=0.5;Max Delay=1;Jitter=0", time);
        var delays = new System.Collections.Concurrent.ConcurrentQueue<TimeSpan>();
        policy.Retrying += (_, delay, _) => delays.Enqueue(delay);
        var locked = new SqliteException("SQLite Error 6: 'database table is locked'.", 6, 262);

        var run = Task.Run(() => policy.Execute<int, int>((_, _) => throw locked, 0, CancellationToken.None));
        for (var retry = 0; retry < 2; retry++)
        {
            Wait.Until(() => !delays.IsEmpty);
            delays.TryDequeue(out var delay).ShouldBeTrue();
            time.Advance(delay);
        }

        var error = Should.Throw<SqliteException>(() => run.GetAwaiter().GetResult());
        error.SqliteErrorCode.ShouldBe(6);
        error.SqliteExtendedErrorCode.ShouldBe(262);
        error.Message.ShouldContain("Gave up after 3 attempts over 1500 ms (Retry=2");
    }

    [Test]
    public void Other_errors_pass_through_at_once()
    {
        var policy = Policy("Retry=5;Jitter=0", new FakeTimeProvider());
        var attempts = 0;
        var constraint = new SqliteException("SQLite Error 19: 'UNIQUE constraint failed'.", 19, 2067);

        Should.Throw<SqliteException>(() => policy.Execute<int, int>((_, _) => { attempts++; throw constraint; }, 0, CancellationToken.None))
            .ShouldBeSameAs(constraint);
        Should.Throw<InvalidOperationException>(() => policy.Execute<int, int>((_, _) => throw new InvalidOperationException(), 0, CancellationToken.None));
        attempts.ShouldBe(1);
    }

    [Test]
    public void Retry_zero_makes_one_attempt()
    {
        var policy = Policy("Retry=0", new FakeTimeProvider());
        var attempts = 0;

        Should.Throw<SqliteException>(() => policy.Execute<int, int>((_, _) => { attempts++; throw Busy; }, 0, CancellationToken.None))
            .Message.ShouldContain("Gave up after 1 attempt over");
        attempts.ShouldBe(1);
    }

    [Test]
    public async Task Cancellation_during_a_backoff_delay_is_prompt()
    {
        var policy = Policy("Retry=5;Base Delay=3600;Max Delay=3600", new FakeTimeProvider());
        var retrying = 0;
        policy.Retrying += (_, _, _) => Interlocked.Increment(ref retrying);
        using var cancellation = new CancellationTokenSource();

        var sync = Task.Run(() => policy.Execute<int, int>((_, _) => throw Busy, 0, cancellation.Token));
        var asynchronous = policy.ExecuteAsync<int, int>((_, _) => throw Busy, 0, cancellation.Token).AsTask();
        Wait.Until(() => retrying == 2);
        await cancellation.CancelAsync();

        await Should.ThrowAsync<OperationCanceledException>(() => sync.WaitAsync(TimeSpan.FromSeconds(30)));
        await Should.ThrowAsync<OperationCanceledException>(() => asynchronous.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    [TestCase(5, 5, true)]
    [TestCase(5, 517, true)]
    [TestCase(6, 262, true)]
    [TestCase(19, 2067, false)]
    [TestCase(13, 13, false)]
    [TestCase(517, 517, true)] // an extended code given as the error code itself, as code other than SQLite's may
    [TestCase(262, 262, true)]
    [TestCase(2067, 2067, false)]
    public void Transient_means_primary_code_BUSY_or_LOCKED(int code, int extended, bool transient)
    {
        SaverRetryStrategy.IsTransient(new SqliteException("x", code, extended)).ShouldBe(transient);
        SaverRetryStrategy.IsTransient(new TimeoutException()).ShouldBeFalse();
    }

    /// <summary>
    /// The last delay before a command's CommandTimeout runs out is what is left of it. A part of a millisecond was
    /// waited as none (the waits count whole milliseconds), so attempts that fail at once (Busy Timeout=0) followed one
    /// another without a pause until the CommandTimeout was spent, or every retry (a CI run: 101 attempts in 1 s).
    /// </summary>
    [Test]
    public void The_wait_for_what_is_left_of_a_CommandTimeout_lasts_at_least_that_long()
    {
        var policy = Policy("Retry=100;Base Delay=0.3;Max Delay=0.3;Jitter=0", TimeProvider.System);
        var attempt = new Attempt(CommandDeadline.Start(1));

        Should.Throw<CommandTimeoutException>(() => policy.Execute(static (a, _) => a.Fail(), attempt, CancellationToken.None));

        attempt.Gaps.ShouldAllBe(gap => gap >= TimeSpan.FromMilliseconds(0.9), string.Join(", ", attempt.Gaps));
    }

    private static RetryPolicy Policy(string connectionString, TimeProvider time, Random? random = null)
        => new(SaverOptions.Parse("Data Source=:memory:;" + connectionString), time, new Telemetry("test", NullLoggerFactory.Instance, time), random);

    /// <summary>An attempt of a command that meets a busy database until its deadline has passed, as a write's attempt does.</summary>
    private sealed class Attempt(CommandDeadline deadline) : IBoundedAttempt
    {
        private long? _last;

        public CommandDeadline Deadline => deadline;

        public List<TimeSpan> Gaps { get; } = [];

        public int Fail()
        {
            var now = System.Diagnostics.Stopwatch.GetTimestamp();
            if (_last is { } last)
            {
                Gaps.Add(System.Diagnostics.Stopwatch.GetElapsedTime(last, now));
            }

            _last = now;
            deadline.ThrowIfPassed();
            throw Busy;
        }
    }
}
