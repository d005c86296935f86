using System.Collections.Concurrent;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Polly;
using Polly.Retry;
using Shouldly;

namespace SqliteSaver.Data.Polly.Tests;

public class PipelineTests
{
    private string _folder = null!;
    /// <summary>A query that runs for seconds (9 s on a 2-core machine) unless interrupted.</summary>
    private const string LongQuery = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) SELECT count(*) FROM c";

    private string _connectionString = null!;

    [SetUp]
    public void SetUp()
    {
        _folder = Directory.CreateTempSubdirectory("saver-polly-").FullName;
        // Retry=5 with a 1 ms Base Delay: the built-in backoff would make six quick attempts on the real clock, which
        // a test tells apart from the pipeline's own count and delays.
        _connectionString = $"Data Source={Path.Combine(_folder, "polly.db")};Busy Timeout=0;Retry=5;Base Delay=0.001;Write Gate=false";
        using var connection = new SaverDbConnection(_connectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "CREATE TABLE t (x)";
        command.ExecuteNonQuery();
    }

    [TearDown]
    public void TearDown()
    {
        SaverDbConnection.ClearAllPools();
        Directory.Delete(_folder, recursive: true);
    }

    [Test]
    public void The_pipelines_retry_count_and_delays_are_used_and_its_last_error_surfaces()
    {
        // Each attempt of the INSERT calls attempt_busy(), which notes the fake clock's time and fails the statement
        // with SQLITE_BUSY: the library's own attempts, and when they ran, not what the pipeline says of itself.
        var time = new TimerCountingTimeProvider();
        var attempts = new ConcurrentQueue<DateTimeOffset>();
        using var dataSource = new SaverDataSourceBuilder(_connectionString)
            .UseConnectionInitializer(c => c.CreateFunction<long>("attempt_busy", () =>
            {
                attempts.Enqueue(time.GetUtcNow());
                throw new SqliteException($"database is locked (attempt {attempts.Count})", 5);
            }))
            .UseResiliencePipeline(Pipeline(time, maxRetries: 3, TimeSpan.FromSeconds(7), new()))
            .Build();
        using var connection = dataSource.OpenConnection();
        var started = time.GetUtcNow();

        var write = Task.Run(() => Insert(connection, "attempt_busy()"));
        for (var retry = 1; retry <= 3; retry++)
        {
            // Polly starts a timer for each delay; the clock moves exactly that delay once it runs.
            Wait.Until(() => time.Timers == retry || write.IsCompleted);
            write.IsCompleted.ShouldBeFalse(write.Exception?.ToString());
            attempts.Count.ShouldBe(retry);
            time.Advance(TimeSpan.FromSeconds(7));
        }

        var error = Should.Throw<SqliteException>(() => write.WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult());
        error.SqliteErrorCode.ShouldBe(5);
        error.Message.ShouldContain("(attempt 4)"); // the last attempt's error, as the pipeline let it through
        attempts.ShouldBe([started, started.AddSeconds(7), started.AddSeconds(14), started.AddSeconds(21)]);
    }

    [Test]
    public async Task A_write_succeeds_once_the_lock_frees_between_the_pipelines_attempts()
    {
        var time = new TimerCountingTimeProvider();
        var retries = new ConcurrentQueue<(int Attempt, TimeSpan Delay)>();
        using var dataSource = new SaverDataSourceBuilder(_connectionString)
            .UseResiliencePipeline(Pipeline(time, maxRetries: 5, TimeSpan.FromSeconds(1), retries))
            .Build();
        var holder = HoldWriteLock();
        await using var connection = await dataSource.OpenConnectionAsync();

        var write = Task.Run(async () =>
        {
            await using var command = connection.CreateCommand();
            command.CommandText = "INSERT INTO t VALUES (1)";
            return await command.ExecuteNonQueryAsync();
        });

        // Two attempts fail while the lock is held; the lock comes free before the third. Polly starts a timer for
        // each delay; the clock moves exactly that delay once it runs.
        for (var retry = 1; retry <= 2; retry++)
        {
            Wait.Until(() => time.Timers == retry || write.IsCompleted);
            write.IsCompleted.ShouldBeFalse(write.Exception?.ToString());
            if (retry == 2)
            {
                holder.Dispose();
            }

            time.Advance(TimeSpan.FromSeconds(1));
        }

        (await write.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBe(1);
        retries.ShouldBe([(0, TimeSpan.FromSeconds(1)), (1, TimeSpan.FromSeconds(1))]);
    }

    /// <summary>
    /// The caller's cancellation (the token of an async write, Cancel() of a synchronous one) reaches the pipeline and
    /// ends its delay between attempts, which the fake clock never ends. Before, every cancellation test used the
    /// pipeline's own timeout: handing the pipeline no token passed them all (a hunt).
    /// </summary>
    [Test]
    public async Task The_callers_cancellation_ends_the_pipelines_delay([Values] bool async)
    {
        var time = new TimerCountingTimeProvider();
        using var dataSource = new SaverDataSourceBuilder(_connectionString)
            .UseResiliencePipeline(Pipeline(time, maxRetries: 3, TimeSpan.FromSeconds(7), new()))
            .Build();
        using var holder = HoldWriteLock();
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1)";
        using var cancellation = new CancellationTokenSource();

        var write = async
            ? command.ExecuteNonQueryAsync(cancellation.Token)
            : Task.Factory.StartNew(command.ExecuteNonQuery, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Wait.Until(() => time.Timers == 1 || write.IsCompleted); // the first attempt failed; the pipeline's delay runs
        write.IsCompleted.ShouldBeFalse(write.Exception?.ToString());
        if (async)
        {
            await cancellation.CancelAsync();
        }
        else
        {
            command.Cancel();
        }

        var outcome = await Should.ThrowAsync<Exception>(() => write.WaitAsync(TimeSpan.FromSeconds(30)));
        (async ? outcome is OperationCanceledException : outcome is SqliteException { SqliteErrorCode: 9 }).ShouldBeTrue(outcome.ToString());
    }

    [Test]
    public void A_unit_of_work_is_run_again_by_the_pipeline()
    {
        var retries = new ConcurrentQueue<(int Attempt, TimeSpan Delay)>();
        using var dataSource = new SaverDataSourceBuilder(_connectionString)
            .UseResiliencePipeline(Pipeline(TimeProvider.System, maxRetries: 2, TimeSpan.Zero, retries))
            .Build();
        using var connection = dataSource.OpenConnection();
        var attempts = 0;

        connection.RunInTransaction(_ =>
        {
            if (++attempts == 1)
            {
                throw new SqliteException("SQLite Error 5: 'database is locked'.", 5);
            }

            Insert(connection);
        });

        attempts.ShouldBe(2);
        retries.Count.ShouldBe(1);
    }

    /// <summary>
    /// A pipeline with Polly's default predicate, which handles every exception, around a unit of work that commits
    /// itself (which the README says it must not) and then fails. The library does not run such a unit of work again,
    /// but the pipeline ran it again on the library's refusal: the rows it committed were applied three times (a
    /// user's trial of the Polly package). Every attempt after the first is refused before the unit of work runs.
    /// </summary>
    [Test]
    public async Task A_pipeline_that_handles_every_error_does_not_run_again_a_unit_of_work_that_committed_itself(
        [Values] bool async, [Values("busy", "the application's")] string error)
    {
        using var dataSource = DataSourceRetryingEveryErrorTwice();
        using var connection = dataSource.OpenConnection();
        var runs = 0;
        Exception Failure() => error == "busy" ? new SqliteException("SQLite Error 5: 'database is locked'.", 5) : new InvalidDataException("the application's error");

        var thrown = async
            ? await Should.ThrowAsync<InvalidOperationException>(() => connection.RunInTransactionAsync(async (transaction, token) =>
            {
                Insert(connection, $"{++runs}");
                await transaction.CommitAsync(token);
                throw Failure();
            }))
            : Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(transaction =>
            {
                Insert(connection, $"{++runs}");
                transaction.Commit();
                throw Failure();
            }));

        $"{runs} run, rows {Rows(connection)}".ShouldBe("1 run, rows 1");
        thrown.Message.ShouldStartWith("RunInTransaction's retry strategy asked for another attempt at the unit of work after an attempt that had ended its own transaction (Commit, Rollback, or a COMMIT sent as SQL) and then failed. It is not run again");
        thrown.InnerException.ShouldBeOfType(error == "busy" ? typeof(SqliteException) : typeof(InvalidDataException));
    }

    /// <summary>
    /// As above for a unit of work that commits by SQL, in a batch that begins again (<c>COMMIT; BEGIN</c>), and then
    /// fails with the application's error, or returns and RunInTransaction's own commit fails (a foreign key checked at
    /// COMMIT): the transaction it was given is not completed, but what it committed would be applied again. Counting
    /// only a commit through the transaction, or a refusal of a failed commit only for a busy error, passed every test
    /// before (a hunt).
    /// </summary>
    [Test]
    public async Task A_pipeline_that_handles_every_error_does_not_run_again_a_unit_of_work_that_committed_by_SQL(
        [Values] bool async, [Values("the application's error", "a failed commit")] string failure)
    {
        using var dataSource = DataSourceRetryingEveryErrorTwice(";Foreign Keys=True");
        using var connection = dataSource.OpenConnection();
        using (var schema = connection.CreateCommand())
        {
            schema.CommandText = "CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child (parent REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)";
            schema.ExecuteNonQuery();
        }

        var runs = 0;
        void Work()
        {
            Insert(connection, $"{++runs}");
            using var command = connection.CreateCommand();
            command.CommandText = failure == "a failed commit" ? "COMMIT; BEGIN; INSERT INTO child VALUES (42)" : "COMMIT; BEGIN";
            command.ExecuteNonQuery();
            if (failure != "a failed commit")
            {
                throw new InvalidDataException("the application's error");
            }
        }

        var thrown = async
            ? await Should.ThrowAsync<InvalidOperationException>(() => connection.RunInTransactionAsync((_, _) => { Work(); return Task.CompletedTask; }))
            : Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(_ => Work()));

        $"{runs} run, rows {Rows(connection)}".ShouldBe("1 run, rows 1", thrown.Message);
        thrown.InnerException.ShouldBeOfType(failure == "a failed commit" ? typeof(SqliteException) : typeof(InvalidDataException));
    }

    /// <summary>
    /// A unit of work that ended its transaction itself and returned, which RunInTransaction refuses: a pipeline that
    /// handles every exception ran it again on the refusal, applying what it had committed once per attempt (a review).
    /// </summary>
    [Test]
    public async Task A_pipeline_that_handles_every_error_does_not_run_again_a_unit_of_work_RunInTransaction_refused(
        [Values] bool async, [Values("rolled back", "began another")] string ending)
    {
        using var dataSource = DataSourceRetryingEveryErrorTwice();
        using var connection = dataSource.OpenConnection();
        var runs = 0;
        void Work(SaverDbTransaction transaction)
        {
            Insert(connection, $"{++runs}");
            if (ending == "rolled back")
            {
                transaction.Rollback();
            }
            else
            {
                transaction.Commit();
                connection.BeginTransaction();
            }
        }

        var thrown = async
            ? await Should.ThrowAsync<InvalidOperationException>(() => connection.RunInTransactionAsync((transaction, _) => { Work(transaction); return Task.CompletedTask; }))
            : Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(Work));

        $"{runs} run, rows {Rows(connection)}".ShouldBe(ending == "rolled back" ? "1 run, rows " : "1 run, rows 1", thrown.Message);
    }

    /// <summary>
    /// A unit of work that rolled its transaction back itself and then met SQLITE_BUSY "is not run again" (README), and
    /// the run refuses a pipeline's further attempts as after a commit: it would end its transaction the same way each
    /// time. Not ending the run there (only the refusal's InvalidOperationException, which a pipeline that handles
    /// every exception retries) ran the delegate three times and passed every test before (a hunt).
    /// </summary>
    [Test]
    public async Task A_pipeline_that_handles_every_error_does_not_run_again_a_unit_of_work_that_rolled_back_itself_and_met_a_busy_error([Values] bool async)
    {
        using var dataSource = DataSourceRetryingEveryErrorTwice();
        using var connection = dataSource.OpenConnection();
        var runs = 0;
        void Work(SaverDbTransaction transaction)
        {
            Insert(connection, $"{++runs}");
            transaction.Rollback();
            throw new SqliteException("SQLite Error 5: 'database is locked'.", 5);
        }

        var thrown = async
            ? await Should.ThrowAsync<InvalidOperationException>(() => connection.RunInTransactionAsync((transaction, _) => { Work(transaction); return Task.CompletedTask; }))
            : Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(Work));

        $"{runs} run, rows {Rows(connection)}".ShouldBe("1 run, rows ", thrown.Message);
    }

    /// <summary>
    /// A unit of work that rolled its transaction back itself and then failed with an error the pipeline handles kept
    /// nothing, and is run again (a review of the change above found it refused).
    /// </summary>
    [Test]
    public async Task A_pipeline_runs_again_a_unit_of_work_that_rolled_back_itself_and_failed([Values] bool async)
    {
        using var dataSource = DataSourceRetryingEveryErrorTwice();
        using var connection = dataSource.OpenConnection();
        var runs = 0;

        if (async)
        {
            await connection.RunInTransactionAsync(async (transaction, token) =>
            {
                Insert(connection, $"{++runs}");
                if (runs == 1)
                {
                    await transaction.RollbackAsync(token);
                    throw new InvalidDataException("a conflict the application retries");
                }
            });
        }
        else
        {
            connection.RunInTransaction(transaction =>
            {
                Insert(connection, $"{++runs}");
                if (runs == 1)
                {
                    transaction.Rollback();
                    throw new InvalidDataException("a conflict the application retries");
                }
            });
        }

        $"{runs} runs, rows {Rows(connection)}".ShouldBe("2 runs, rows 2");
    }

    /// <summary>
    /// A pipeline that handles results as well as errors (here every outcome) ran a unit of work that had committed
    /// again: every attempt after the one that succeeded returns its result without running anything (before, the
    /// library refused each with InvalidOperationException after the commit).
    /// </summary>
    [Test]
    public async Task A_pipeline_that_handles_results_does_not_run_again_a_unit_of_work_that_committed([Values] bool async)
    {
        using var dataSource = HandlingEveryOutcome();
        using var connection = dataSource.OpenConnection();
        var runs = 0;

        var result = async
            ? await connection.RunInTransactionAsync((_, _) => Task.FromResult(Insert(connection, $"{++runs}")))
            : connection.RunInTransaction(_ => Insert(connection, $"{++runs}"));

        $"{runs} run, result {result}, rows {Rows(connection)}".ShouldBe("1 run, result 1, rows 1");
    }

    /// <summary>
    /// The same for a write outside a transaction: a pipeline that handles results ran the committed INSERT again for
    /// each of its retries (rows "1,1,1"; a bug hunt's finding).
    /// </summary>
    [Test]
    public async Task A_pipeline_that_handles_results_does_not_apply_a_write_twice([Values] bool async)
    {
        using var dataSource = HandlingEveryOutcome();
        using var connection = dataSource.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1)";

        var result = async ? await command.ExecuteNonQueryAsync() : command.ExecuteNonQuery();

        $"result {result}, rows {Rows(connection)}".ShouldBe("result 1, rows 1");
    }

    /// <summary>
    /// The same for BeginTransaction and a reader of a write: a pipeline that handles results ran the BEGIN IMMEDIATE,
    /// or the write, again inside the transaction the first attempt had left open, which failed ("cannot start a
    /// transaction within a transaction") and left that transaction open with the write gate released: the
    /// connection's next write, reported done, ran inside it and was lost as the connection closed (a bug hunt's
    /// finding).
    /// </summary>
    [Test]
    public async Task A_pipeline_that_handles_results_leaves_no_transaction_open_under_the_next_write(
        [Values("BeginTransaction", "ExecuteReader")] string call, [Values] bool async)
    {
        using var dataSource = HandlingEveryOutcome();
        using (var connection = dataSource.OpenConnection())
        {
            if (call == "BeginTransaction")
            {
                using var transaction = async ? await connection.BeginTransactionAsync() : connection.BeginTransaction();
                Insert(connection, "5");
                transaction.Commit();
            }
            else
            {
                using var command = connection.CreateCommand();
                command.CommandText = "INSERT INTO t VALUES (5) RETURNING x";
                using var reader = async ? await command.ExecuteReaderAsync() : command.ExecuteReader();
                reader.Read().ShouldBeTrue();
                reader.GetInt64(0).ShouldBe(5);
            }

            Insert(connection, "6").ShouldBe(1);
        }

        using var other = new SaverDbConnection(_connectionString);
        other.Open();
        Rows(other).ShouldBe("5,6");
    }

    /// <summary>
    /// A pipeline that handles results still runs its retries (delays, OnRetry) after a write that committed, though
    /// nothing runs again: the write no longer holds the process's write gate through them, so another writer passes
    /// (here one in OnRetry, which waited out its CommandTimeout of 1 s behind the gate; a review's finding).
    /// </summary>
    [Test]
    public void A_write_that_committed_leaves_the_write_gate_before_a_pipeline_that_handles_results_retries()
    {
        var outcomes = new List<string>();
        var armed = false;
        SaverDataSource? source = null;
        using var dataSource = source = new SaverDataSourceBuilder($"Data Source={Path.Combine(_folder, "gate.db")}")
            .UseResiliencePipeline(new ResiliencePipelineBuilder()
                .AddRetry(new RetryStrategyOptions
                {
                    ShouldHandle = _ => PredicateResult.True(),
                    MaxRetryAttempts = 1,
                    Delay = TimeSpan.Zero,
                    OnRetry = _ =>
                    {
                        if (armed)
                        {
                            armed = false; // the other writer's write runs through this pipeline too
                            using var other = source!.OpenConnection();
                            using var command = other.CreateCommand();
                            command.CommandText = "INSERT INTO t VALUES (2)";
                            command.CommandTimeout = 1;
                            try
                            {
                                outcomes.Add($"{command.ExecuteNonQuery()} written");
                            }
                            catch (Exception error)
                            {
                                outcomes.Add(error.GetType().Name);
                            }
                        }

                        return default;
                    },
                })
                .Build())
            .Build();
        using var connection = dataSource.OpenConnection();
        using var insert = connection.CreateCommand();
        insert.CommandText = "CREATE TABLE t (x)";
        insert.ExecuteNonQuery();
        insert.CommandText = "INSERT INTO t VALUES (1)";
        armed = true;

        insert.ExecuteNonQuery().ShouldBe(1);

        outcomes.ShouldBe(["1 written"]);
        Rows(connection).ShouldBe("1,2");
    }

    /// <summary>A data source whose pipeline retries every outcome, results too, twice, without delay.</summary>
    private SaverDataSource HandlingEveryOutcome()
        => new SaverDataSourceBuilder(_connectionString)
            .UseResiliencePipeline(new ResiliencePipelineBuilder()
                .AddRetry(new RetryStrategyOptions { ShouldHandle = _ => PredicateResult.True(), MaxRetryAttempts = 2, Delay = TimeSpan.Zero })
                .Build())
            .Build();

    [Test]
    public void A_timeout_in_the_pipeline_ends_a_synchronous_unit_of_works_wait_for_the_write_lock()
    {
        var connectionString = $"Data Source={Path.Combine(_folder, "polly.db")};Busy Timeout=5000;Write Gate=false";
        using var dataSource = TimingOutAfter200Ms(connectionString);
        using var connection = dataSource.OpenConnection();
        using var holder = HoldWriteLock();

        var waited = System.Diagnostics.Stopwatch.StartNew();
        Should.Throw<global::Polly.Timeout.TimeoutRejectedException>(() => connection.RunInTransaction(_ => { }));

        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "the pipeline's timeout is 200 ms; BEGIN IMMEDIATE would wait 5 s");
    }

    [Test]
    public void A_timeout_in_the_pipeline_ends_a_wait_for_the_write_lock_inside_a_synchronous_unit_of_work()
    {
        // A deferred transaction takes no lock at BEGIN: its INSERT waits for the lock in SQLite's busy handler, for
        // the 5 s Busy Timeout unless the attempt's token reaches the statements of the delegate, which takes none.
        var connectionString = $"Data Source={Path.Combine(_folder, "polly.db")};Busy Timeout=5000;Write Gate=false";
        using var dataSource = TimingOutAfter200Ms(connectionString);
        using var connection = dataSource.OpenConnection();
        using var holder = HoldWriteLock();

        var waited = System.Diagnostics.Stopwatch.StartNew();
        var exception = Should.Throw<Exception>(() => connection.RunInTransaction(_ => Insert(connection), deferred: true));
        waited.Stop();

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "the pipeline's timeout is 200 ms; the INSERT would wait 5 s");
        connection.State.ShouldBe(System.Data.ConnectionState.Open);
        holder.Dispose();
        Insert(connection).ShouldBe(1, "the connection is usable once the lock is free");
    }

    [Test]
    public void A_timeout_in_the_pipeline_interrupts_a_long_query_inside_a_synchronous_unit_of_work()
    {
        using var dataSource = TimingOutAfter200Ms(_connectionString);
        using var connection = dataSource.OpenConnection();

        var waited = System.Diagnostics.Stopwatch.StartNew();
        var exception = Should.Throw<Exception>(() => connection.RunInTransaction(_ =>
        {
            Insert(connection);
            using var query = connection.CreateCommand();
            query.CommandText = LongQuery;
            query.ExecuteScalar();
        }));
        waited.Stop();

        // Without the interrupt the query runs to its end (9 s here) and only the COMMIT sees the cancelled token.
        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "the pipeline's timeout is 200 ms");
        using var count = connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM t";
        count.ExecuteScalar().ShouldBe(0L, "the attempt was rolled back");
    }

    [Test]
    public void A_timeout_in_the_pipeline_interrupts_a_query_a_synchronous_unit_of_work_starts_after_the_timeout()
    {
        // The timeout fires between two statements of the delegate (here when the fake clock moves): the next query
        // must end with the attempt too, as one already running when it fires does.
        var time = new FakeTimeProvider();
        var pipeline = new ResiliencePipelineBuilder { TimeProvider = time }.AddTimeout(TimeSpan.FromMilliseconds(200)).Build();
        using var dataSource = new SaverDataSourceBuilder(_connectionString).UseResiliencePipeline(pipeline).Build();
        using var connection = dataSource.OpenConnection();
        object? counted = null;

        var exception = Should.Throw<Exception>(() => connection.RunInTransaction(_ =>
        {
            Insert(connection);
            time.Advance(TimeSpan.FromSeconds(1)); // the attempt's token is cancelled now
            using var query = connection.CreateCommand();
            query.CommandText = LongQuery.Replace("100000000", "3000000", StringComparison.Ordinal);
            counted = query.ExecuteScalar();
        }));

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        counted.ShouldBeNull("the query, begun after the attempt's token was cancelled, ran to its end");
    }

    /// <summary>
    /// As above for an INSERT, which SQLite runs in fewer than the 100 steps after which the connection's progress
    /// handler looks at the token, and which an interrupt made before it begins does not reach (SQLite drops it): the
    /// statement begun after the attempt's token was cancelled is refused before it runs, rather than writing in an
    /// attempt that has timed out (a mutation hunt: without that check every test passed).
    /// </summary>
    [Test]
    public void A_timeout_in_the_pipeline_refuses_a_write_a_synchronous_unit_of_work_starts_after_the_timeout()
    {
        var time = new FakeTimeProvider();
        var pipeline = new ResiliencePipelineBuilder { TimeProvider = time }.AddTimeout(TimeSpan.FromMilliseconds(200)).Build();
        using var dataSource = new SaverDataSourceBuilder(_connectionString).UseResiliencePipeline(pipeline).Build();
        using var connection = dataSource.OpenConnection();
        int? inserted = null;

        var exception = Should.Throw<Exception>(() => connection.RunInTransaction(_ =>
        {
            time.Advance(TimeSpan.FromSeconds(1)); // the attempt's token is cancelled now
            inserted = Insert(connection);
        }));

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        inserted.ShouldBeNull("the INSERT, begun after the attempt's token was cancelled, ran");
        Rows(connection).ShouldBe("");
    }

    /// <summary>
    /// As above for a reader's Read that steps to its next row: the step, begun after the attempt's token was
    /// cancelled, ends with the attempt as the reader's NextResult and its closing do, rather than reading on in an
    /// attempt that has timed out (a mutation hunt: a Read without the attempt's token passed every test).
    /// </summary>
    [Test]
    public void A_timeout_in_the_pipeline_ends_a_readers_Read_a_synchronous_unit_of_work_begins_after_the_timeout()
    {
        var time = new FakeTimeProvider();
        var pipeline = new ResiliencePipelineBuilder { TimeProvider = time }.AddTimeout(TimeSpan.FromMilliseconds(200)).Build();
        using var dataSource = new SaverDataSourceBuilder(_connectionString).UseResiliencePipeline(pipeline).Build();
        using var connection = dataSource.OpenConnection();
        bool? read = null;

        var exception = Should.Throw<Exception>(() => connection.RunInTransaction(_ =>
        {
            using var query = connection.CreateCommand();
            query.CommandText = "SELECT 1 UNION ALL SELECT 2";
            using var reader = query.ExecuteReader();
            reader.Read().ShouldBeTrue(); // the row ExecuteReader stepped to
            time.Advance(TimeSpan.FromSeconds(1)); // the attempt's token is cancelled now
            read = reader.Read(); // steps to the second row
        }));

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        read.ShouldBeNull("the Read, begun after the attempt's token was cancelled, stepped to the next row");
    }

    [Test]
    public void A_timeout_in_the_pipeline_interrupts_a_readers_later_statement_inside_a_synchronous_unit_of_work()
    {
        using var dataSource = TimingOutAfter200Ms(_connectionString);
        using var connection = dataSource.OpenConnection();

        var waited = System.Diagnostics.Stopwatch.StartNew();
        var exception = Should.Throw<Exception>(() => connection.RunInTransaction(_ =>
        {
            using var query = connection.CreateCommand();
            query.CommandText = "SELECT 1; " + LongQuery;
            using var reader = query.ExecuteReader(); // runs the first statement only
            reader.NextResult(); // runs the long one
        }));
        waited.Stop();

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "the pipeline's timeout is 200 ms");
    }

    [Test]
    public void A_timeout_in_the_pipeline_interrupts_the_statement_a_reader_runs_as_it_closes_inside_a_synchronous_unit_of_work()
    {
        // As the test above, but the reader is disposed rather than moved on: closing it runs the long INSERT, in the
        // transaction, as the attempt's statements.
        using var dataSource = TimingOutAfter200Ms(_connectionString);
        using var connection = dataSource.OpenConnection();

        var waited = System.Diagnostics.Stopwatch.StartNew();
        var exception = Should.Throw<Exception>(() => connection.RunInTransaction(_ =>
        {
            using var query = connection.CreateCommand();
            query.CommandText = "SELECT 1; INSERT INTO t " + LongQuery;
            using var reader = query.ExecuteReader(); // runs the first statement only
            reader.Read().ShouldBeTrue();
        })); // disposing the reader runs the long one
        waited.Stop();

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "the pipeline's timeout is 200 ms");
    }

    [Test]
    public void A_reader_disposed_after_the_pipelines_timeout_fired_does_not_run_its_remaining_statements_to_their_end()
    {
        // As the test above, but the timeout fires between two steps of the reader (here when the fake clock moves), as
        // a delegate works on a row: the reader's next Read throws, and disposing the reader must not then run the long
        // INSERT to its end (9 s here, holding the write lock), as a query begun after the timeout does not.
        var time = new FakeTimeProvider();
        var pipeline = new ResiliencePipelineBuilder { TimeProvider = time }.AddTimeout(TimeSpan.FromMilliseconds(200)).Build();
        using var dataSource = new SaverDataSourceBuilder(_connectionString).UseResiliencePipeline(pipeline).Build();
        using var connection = dataSource.OpenConnection();

        var waited = System.Diagnostics.Stopwatch.StartNew();
        Should.Throw<Exception>(() => connection.RunInTransaction(_ =>
        {
            using var query = connection.CreateCommand();
            query.CommandText = "SELECT 1; INSERT INTO t " + LongQuery;
            using var reader = query.ExecuteReader(); // runs the first statement only
            while (reader.Read())
            {
                time.Advance(TimeSpan.FromSeconds(1)); // the attempt's token is cancelled now
            }
        })); // disposing the reader runs the long one
        waited.Stop();

        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "the attempt's token was cancelled before the reader closed");
        Insert(connection).ShouldBe(1, "the connection runs statements again: no progress handler is left");
        using var count = connection.CreateCommand();
        count.CommandText = "SELECT count(*) FROM t";
        count.ExecuteScalar().ShouldBe(1L, "nothing of the cancelled attempt was kept");
    }

    [Test]
    public void A_query_in_a_synchronous_unit_of_work_whose_attempt_times_out_as_its_first_row_is_made_is_cancelled()
    {
        // The timeout fires inside the query's first step (the function moves the fake clock as the row is made): its
        // interrupt comes after the row, and SQLite keeps it pending while the statement is active. ExecuteReader
        // returned the reader before, and GetColumnSchema, which runs a statement of its own, then failed with a bare
        // SQLITE_INTERRUPT rather than the attempt's timeout.
        using var dataSource = TimingOutInTimeOut();
        using var connection = dataSource.OpenConnection();
        Insert(connection);
        var readerReturned = false;

        var exception = Should.Throw<Exception>(() => connection.RunInTransaction(_ =>
        {
            using var query = connection.CreateCommand();
            query.CommandText = "SELECT x, time_out() FROM t";
            using var reader = query.ExecuteReader();
            readerReturned = true;
            reader.GetColumnSchema();
        }));

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        readerReturned.ShouldBeFalse();
        Insert(connection).ShouldBe(1, "no interrupt is left pending on the connection");
        Rows(connection).ShouldBe("1,1");
    }

    [Test]
    public async Task A_reader_whose_attempt_times_out_as_its_first_row_is_made_is_cancelled(
        [Values("SELECT x, time_out() FROM t", "INSERT INTO t VALUES (2) RETURNING x, time_out()")] string sql,
        [Values] bool async)
    {
        // As above, for a command outside a unit of work, whose attempt the pipeline runs: ExecuteReader looked at the
        // caller's token and Cancel's as the statement's first row was made, not at the attempt's own.
        await using var dataSource = TimingOutInTimeOut();
        await using var connection = await dataSource.OpenConnectionAsync();
        Insert(connection);
        await using var query = connection.CreateCommand();
        query.CommandText = sql;

        var exception = async
            ? await Should.ThrowAsync<Exception>(async () => await query.ExecuteReaderAsync())
            : Should.Throw<Exception>(() => query.ExecuteReader());

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        Insert(connection).ShouldBe(1, "no interrupt is left pending on the connection");
        Rows(connection).ShouldBe("1,1", "nothing of the cancelled attempt was kept");
    }

    [Test]
    public void A_timeout_in_the_pipeline_ends_a_synchronous_unit_of_works_rollback_journal_commit_waiting_for_a_reader()
    {
        // As for a standalone write (and for RunInTransactionAsync, which commits with the attempt's token): the
        // COMMIT of a unit of work waits in SQLite's busy handler for the reader; the attempt's token should end it.
        var path = Path.Combine(_folder, "rollback.db");
        var connectionString = $"Data Source={path};Journal Mode=Delete;Busy Timeout=5000;Write Gate=false";
        using var dataSource = TimingOutAfter200Ms(connectionString);
        using var connection = dataSource.OpenConnection();
        using (var create = connection.CreateCommand())
        {
            create.CommandText = "CREATE TABLE r (x)";
            create.ExecuteNonQuery();
        }

        using var reader = new SqliteConnection($"Data Source={path};Pooling=False");
        reader.Open();
        using (var read = reader.CreateCommand())
        {
            read.CommandText = "BEGIN; SELECT count(*) FROM r;"; // holds a SHARED lock until the transaction ends
            read.ExecuteScalar();
        }

        var waited = System.Diagnostics.Stopwatch.StartNew();
        var exception = Should.Throw<Exception>(() => connection.RunInTransaction(_ =>
        {
            using var insert = connection.CreateCommand();
            insert.CommandText = "INSERT INTO r VALUES (1)";
            insert.ExecuteNonQuery();
        }));
        waited.Stop();

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "the pipeline's timeout is 200 ms; the COMMIT would wait 5 s");
    }

    [Test]
    public async Task A_timeout_in_the_pipeline_interrupts_a_long_query()
    {
        // The pipeline hands each attempt a token that its timeout cancels; Microsoft.Data.Sqlite interrupts a query
        // when its token is cancelled, and so does SqliteSaver for the caller's own token.
        await using var dataSource = TimingOutAfter200Ms(_connectionString);
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = LongQuery;

        var exception = await Should.ThrowAsync<Exception>(async () => await command.ExecuteScalarAsync());

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>(); // uninterrupted, the query would run to its end and return
    }

    [Test]
    public void A_timeout_in_the_pipeline_interrupts_a_long_query_run_synchronously()
    {
        using var dataSource = TimingOutAfter200Ms(_connectionString);
        using var connection = dataSource.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = LongQuery;

        Should.Throw<global::Polly.Timeout.TimeoutRejectedException>(() => command.ExecuteScalar());
    }

    /// <summary>
    /// A statement that runs outside the library's transactions, which the connection's progress handler never stops
    /// (here an ATTACH whose file name is a long query's result): the attempt's timeout, fired as the statement runs
    /// (a function moves the fake clock), stops it by SQLite's interrupt alone. Without that interrupt the ATTACH ran its
    /// query to the end and attached the database (a mutation hunt: every test passed).
    /// </summary>
    [Test]
    public void A_timeout_in_the_pipeline_interrupts_a_long_statement_run_outside_a_transaction()
    {
        using var dataSource = TimingOutInTimeOut();
        using var connection = dataSource.OpenConnection();
        using var attach = connection.CreateCommand();
        attach.CommandText = "ATTACH (WITH RECURSIVE c(x) AS (SELECT time_out() UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) "
            + "SELECT $path || substr(count(*), 1, 0) FROM c) AS late";
        var path = attach.CreateParameter();
        (path.ParameterName, path.Value) = ("$path", Path.Combine(_folder, "late.db"));
        attach.Parameters.Add(path);

        var exception = Should.Throw<Exception>(() => attach.ExecuteNonQuery());

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        using var attached = connection.CreateCommand();
        attached.CommandText = "SELECT count(*) FROM pragma_database_list WHERE name = 'late'";
        attached.ExecuteScalar().ShouldBe(0L, "the ATTACH ran its query to the end");
    }

    [Test]
    public async Task A_timeout_in_the_pipeline_ends_a_statements_wait_for_another_connections_write_lock([Values] bool async)
    {
        // A PRAGMA that writes runs as it is (no BEGIN IMMEDIATE of the library's) and waits for the lock in SQLite's
        // busy handler, which sqlite3_interrupt does not end: the attempt's token must end that wait too, or the call
        // waits out the whole Busy Timeout of 5 s.
        var connectionString = $"Data Source={Path.Combine(_folder, "polly.db")};Busy Timeout=5000;Write Gate=false";
        await using var dataSource = TimingOutAfter200Ms(connectionString);
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA user_version = 7";
        using var holder = HoldWriteLock();

        var waited = System.Diagnostics.Stopwatch.StartNew();
        var exception = async
            ? await Should.ThrowAsync<Exception>(async () => await command.ExecuteNonQueryAsync())
            : Should.Throw<Exception>(() => command.ExecuteNonQuery());
        waited.Stop();

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "the pipeline's timeout is 200 ms");
    }

    [Test]
    public async Task A_timeout_in_the_pipeline_ends_a_writes_rollback_journal_commit_waiting_for_a_reader([Values] bool async)
    {
        // In rollback-journal mode a write's COMMIT waits in SQLite's busy handler for readers to let go of the
        // database; the README says the attempt's token ends such waits (as the caller's does for a rollback-journal
        // COMMIT). BEGIN IMMEDIATE gets its lock at once here: only the COMMIT waits.
        var path = Path.Combine(_folder, "rollback.db");
        var connectionString = $"Data Source={path};Journal Mode=Delete;Busy Timeout=5000;Write Gate=false";
        await using var dataSource = TimingOutAfter200Ms(connectionString);
        await using var connection = await dataSource.OpenConnectionAsync();
        await using (var create = connection.CreateCommand())
        {
            create.CommandText = "CREATE TABLE r (x)";
            await create.ExecuteNonQueryAsync();
        }

        using var reader = new SqliteConnection($"Data Source={path};Pooling=False");
        reader.Open();
        using (var read = reader.CreateCommand())
        {
            read.CommandText = "BEGIN; SELECT count(*) FROM r;"; // holds a SHARED lock until the transaction ends
            read.ExecuteScalar();
        }

        await using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO r VALUES (1)";
        using var caller = new CancellationTokenSource(); // never cancelled: the caller's handler is in place too
        var waited = System.Diagnostics.Stopwatch.StartNew();
        var exception = async
            ? await Should.ThrowAsync<Exception>(async () => await command.ExecuteNonQueryAsync(caller.Token))
            : Should.Throw<Exception>(() => command.ExecuteNonQuery());
        waited.Stop();

        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), "the pipeline's timeout is 200 ms");
    }

    [Test]
    public async Task A_timeout_in_the_pipeline_ends_the_wait_of_the_PRAGMAs_a_new_connection_runs([Values] bool async)
    {
        // The PRAGMAs a new physical connection runs go through the strategy, and the token a pipeline hands each
        // attempt ends their waits for another connection's lock. Here another connection holds an EXCLUSIVE lock on a
        // rollback-journal database, so the PRAGMAs wait for the lock: the pipeline's 200 ms timeout, not the 5 s Busy
        // Timeout, ends the wait.
        var path = Path.Combine(_folder, "rollback.db");
        using (var create = new SqliteConnection($"Data Source={path};Pooling=False"))
        {
            create.Open();
            using var command = create.CreateCommand();
            command.CommandText = "CREATE TABLE t (x)";
            command.ExecuteNonQuery();
        }

        using var holder = new SqliteConnection($"Data Source={path};Pooling=False");
        holder.Open();
        using (var begin = holder.CreateCommand())
        {
            begin.CommandText = "BEGIN EXCLUSIVE";
            begin.ExecuteNonQuery();
        }

        await using var dataSource = TimingOutAfter200Ms($"Data Source={path};Journal Mode=Delete;Busy Timeout=5000;Write Gate=false");

        var waited = System.Diagnostics.Stopwatch.StartNew();
        var exception = async
            ? await Should.ThrowAsync<Exception>(async () => await dataSource.OpenConnectionAsync())
            : Should.Throw<Exception>(() => dataSource.OpenConnection());
        waited.Stop();

        waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), $"the pipeline's timeout is 200 ms; the PRAGMAs waited out the 5 s Busy Timeout ({exception.GetType().Name}: {exception.Message})");
        exception.ShouldBeOfType<global::Polly.Timeout.TimeoutRejectedException>();
    }

    /// <summary>
    /// An OnRetry callback that closes the connection runs inside the synchronous write it retries, on its thread, and
    /// the write cannot end before the callback returns: Close is refused at once and the write goes on and is kept. Before, Close ended the write and
    /// waited for it until Busy Timeout (0 here) and 5 s had passed, and the write then failed saying the connection had
    /// been closed, though it stayed open.
    /// </summary>
    [Test]
    public async Task Close_in_an_OnRetry_callback_of_a_synchronous_write_is_refused_at_once_and_the_write_goes_on()
    {
        SaverDbConnection? connection = null;
        Exception? refusal = null;
        var pipeline = new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<SqliteException>(SaverRetryStrategy.IsTransient),
                MaxRetryAttempts = 3,
                Delay = TimeSpan.FromMilliseconds(1),
                OnRetry = _ =>
                {
                    try
                    {
                        connection!.Close();
                    }
                    catch (InvalidOperationException exception)
                    {
                        refusal = exception;
                    }

                    return default;
                },
            })
            .Build();
        await using var dataSource = new SaverDataSourceBuilder(_connectionString).UseResiliencePipeline(pipeline).Build();
        connection = await dataSource.OpenConnectionAsync().ConfigureAwait(false);
        await using var _ = connection;
        var calls = 0;
        connection.InnerConnection.CreateFunction("busy_once", () =>
            Interlocked.Increment(ref calls) == 1 ? throw new SqliteException("SQLite Error 5: 'database is locked'.", 5) : 1L);

        await using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (busy_once())";
        insert.ExecuteNonQuery().ShouldBe(1);

        refusal.ShouldNotBeNull().Message.ShouldContain("inside one of this connection's own calls");
        connection.State.ShouldBe(System.Data.ConnectionState.Open);
        Rows(connection).ShouldBe("1");
    }

    [Test]
    public void The_builder_rejects_a_null_pipeline()
    {
        Should.Throw<ArgumentNullException>(() => new SaverDataSourceBuilder(_connectionString).UseResiliencePipeline(null!));
    }

    /// <summary>
    /// A null builder is an ArgumentNullException naming it, as documented, not a NullReferenceException from inside
    /// (a mutation hunt: only the null pipeline was tested).
    /// </summary>
    [Test]
    public void A_null_builder_is_an_ArgumentNullException_naming_it()
        => Should.Throw<ArgumentNullException>(() => ((SaverDataSourceBuilder)null!).UseResiliencePipeline(ResiliencePipeline.Empty)).ParamName.ShouldBe("builder");

    private static ResiliencePipeline Pipeline(TimeProvider time, int maxRetries, TimeSpan delay, ConcurrentQueue<(int, TimeSpan)> retries)
        => new ResiliencePipelineBuilder { TimeProvider = time }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<SqliteException>(SaverRetryStrategy.IsTransient),
                MaxRetryAttempts = maxRetries,
                Delay = delay,
                BackoffType = DelayBackoffType.Constant,
                UseJitter = false,
                OnRetry = args =>
                {
                    retries.Enqueue((args.AttemptNumber, args.RetryDelay));
                    return default;
                },
            })
            .Build();

    /// <summary>
    /// A data source whose pipeline gives each attempt 200 ms on a fake clock, and whose connections have a function,
    /// time_out(), that moves that clock 1 s: the attempt's token is cancelled as SQLite runs it.
    /// </summary>
    private SaverDataSource TimingOutInTimeOut()
    {
        var time = new FakeTimeProvider();
        return new SaverDataSourceBuilder(_connectionString)
            .UseConnectionInitializer(c => c.CreateFunction("time_out", () =>
            {
                time.Advance(TimeSpan.FromSeconds(1));
                return 0L;
            }))
            .UseResiliencePipeline(new ResiliencePipelineBuilder { TimeProvider = time }.AddTimeout(TimeSpan.FromMilliseconds(200)).Build())
            .Build();
    }

    /// <summary>A data source whose pipeline gives each attempt 200 ms.</summary>
    private static SaverDataSource TimingOutAfter200Ms(string connectionString)
        => new SaverDataSourceBuilder(connectionString)
            .UseResiliencePipeline(new ResiliencePipelineBuilder().AddTimeout(TimeSpan.FromMilliseconds(200)).Build())
            .Build();

    private static int Insert(SaverDbConnection connection, string value = "1")
    {
        using var command = connection.CreateCommand();
        command.CommandText = $"INSERT INTO t VALUES ({value})";
        return command.ExecuteNonQuery();
    }

    /// <summary>The values of t, in order, joined with commas.</summary>
    private static string Rows(SaverDbConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT coalesce(group_concat(x, ','), '') FROM (SELECT x FROM t ORDER BY x)";
        return (string)command.ExecuteScalar()!;
    }

    private SqliteConnection HoldWriteLock()
    {
        var holder = new SqliteConnection($"Data Source={Path.Combine(_folder, "polly.db")};Pooling=False");
        holder.Open();
        using var begin = holder.CreateCommand();
        begin.CommandText = "BEGIN IMMEDIATE";
        begin.ExecuteNonQuery();
        return holder;
    }

    /// <summary>A fake clock that counts the timers started on it: Polly starts one for each delay.</summary>
    private sealed class TimerCountingTimeProvider : FakeTimeProvider
    {
        private int _timers;

        public int Timers => Volatile.Read(ref _timers);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = base.CreateTimer(callback, state, dueTime, period);
            Interlocked.Increment(ref _timers);
            return timer;
        }
    }

    /// <summary>A data source whose pipeline retries every exception but a cancellation twice, at once (Polly's default predicate).</summary>
    private SaverDataSource DataSourceRetryingEveryErrorTwice(string options = "")
        => new SaverDataSourceBuilder(_connectionString + options)
            .UseResiliencePipeline(new ResiliencePipelineBuilder().AddRetry(new RetryStrategyOptions { MaxRetryAttempts = 2, Delay = TimeSpan.Zero }).Build())
            .Build();

    private static class Wait
    {
        public static void Until(Func<bool> condition)
        {
            if (!SpinWait.SpinUntil(condition, TimeSpan.FromSeconds(30)))
            {
                throw new TimeoutException("The condition was not met within 30 s.");
            }
        }
    }
}
