using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>
/// Waits inside SQLite's busy handler (a write in a deferred transaction, a statement outside any transaction, a
/// checkpoint waiting for a reader, a rollback-journal commit waiting for a reader) end when an asynchronous call's
/// token is cancelled, long before the busy timeout; without cancellation they still wait as SQLite's own handler
/// does, and the busy timeout is SQLite's again afterwards.
/// </summary>
public class BusyWaitCancellationTests : DatabaseTest
{
    /// <summary>Far longer than any test here should take: a wait deaf to its token runs into the bound.</summary>
    private const string LongBusyTimeout = "Busy Timeout=60000";

    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Test]
    public async Task A_write_in_a_deferred_transaction_stops_waiting_for_the_lock_when_cancelled()
    {
        var connectionString = Folder.ConnectionString(LongBusyTimeout);
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var holder = HoldWriteLock();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        await using var transaction = connection.BeginTransaction(deferred: true);
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Should.ThrowAsync<OperationCanceledException>(
            () => Task.Run(() => Exec(connection, "INSERT INTO t VALUES (1)", cancellation.Token)).WaitAsync(Bound));

        await transaction.RollbackAsync();
        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(60000L);
        await using (var read = connection.CreateCommand())
        {
            using var notCancelled = new CancellationTokenSource();
            read.CommandText = "PRAGMA busy_timeout"; // SQLite reports 0 while a busy handler of the library's is in place
            (await read.ExecuteScalarAsync(notCancelled.Token)).ShouldBe(60000L);
        }

        holder.Dispose();
        await Exec(connection, "INSERT INTO t VALUES (2)", CancellationToken.None);
        ConnectionTests.Scalar(connection, "SELECT group_concat(x) FROM t").ShouldBe("2");
    }

    [TestCase("VACUUM")]
    [TestCase("PRAGMA user_version = 7")]
    [TestCase("BEGIN IMMEDIATE")]
    public async Task A_statement_outside_a_transaction_stops_waiting_for_the_lock_when_cancelled(string sql)
    {
        var connectionString = Folder.ConnectionString(LongBusyTimeout);
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var holder = HoldWriteLock();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Should.ThrowAsync<OperationCanceledException>(() => Task.Run(() => Exec(connection, sql, cancellation.Token)).WaitAsync(Bound));

        connection.InnerConnection.Handle.ShouldNotBeNull();
        SQLitePCL.raw.sqlite3_get_autocommit(connection.InnerConnection.Handle).ShouldBe(1);
        ConnectionTests.Scalar(connection, "PRAGMA user_version").ShouldBe(0L);
        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(60000L);
    }

    [Test]
    public async Task Without_cancellation_a_write_waits_the_busy_timeout_and_fails_busy_as_before()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=300");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var holder = HoldWriteLock();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        await using var transaction = connection.BeginTransaction(deferred: true);
        using var cancellation = new CancellationTokenSource();
        var waited = System.Diagnostics.Stopwatch.StartNew();

        var error = await Should.ThrowAsync<SqliteException>(
            () => Task.Run(() => Exec(connection, "INSERT INTO t VALUES (1)", cancellation.Token)).WaitAsync(Bound));

        error.SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_BUSY);
        waited.Elapsed.ShouldBeGreaterThan(TimeSpan.FromMilliseconds(250)); // the 300 ms of Busy Timeout, not at once
        cancellation.IsCancellationRequested.ShouldBeFalse();
    }

    [Test]
    public async Task An_asynchronous_checkpoint_statement_still_waits_for_a_reader_to_finish()
    {
        var connectionString = Folder.ConnectionString(LongBusyTimeout);
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        using var reader = OpenReader();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        await Exec(connection, "INSERT INTO t VALUES (2)", CancellationToken.None);
        using var cancellation = new CancellationTokenSource();
        using var probe = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        probe.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA wal_checkpoint(TRUNCATE)";

        var checkpoint = Task.Run(() => command.ExecuteScalarAsync(cancellation.Token));
        // The checkpoint holds the write lock while it waits for the reader. (A probe that tried a checkpoint itself
        // could take the checkpoint lock first and make this one come back busy at once.)
        Wait.Until(() => checkpoint.IsCompleted || WriteLockHeldElsewhere(probe));
        checkpoint.IsCompleted.ShouldBeFalse();
        reader.Dispose();

        (await checkpoint.WaitAsync(Bound)).ShouldBe(0L);
    }

    /// <summary>Whether another connection holds the write lock: <c>BEGIN IMMEDIATE</c> fails busy at once, without a busy handler.</summary>
    private static bool WriteLockHeldElsewhere(SqliteConnection probe)
    {
        SQLitePCL.raw.sqlite3_busy_timeout(probe.Handle!, 0);
        var rc = SQLitePCL.raw.sqlite3_exec(probe.Handle!, "BEGIN IMMEDIATE");
        if (rc == SQLitePCL.raw.SQLITE_OK)
        {
            SQLitePCL.raw.sqlite3_exec(probe.Handle!, "ROLLBACK");
        }

        return rc == SQLitePCL.raw.SQLITE_BUSY;
    }

    /// <summary>
    /// Whether another connection's rollback-journal COMMIT waits for readers, holding the PENDING lock: a read fails
    /// busy at once, without a busy handler.
    /// </summary>
    private static bool CommitWaitingElsewhere(SqliteConnection probe)
    {
        SQLitePCL.raw.sqlite3_busy_timeout(probe.Handle!, 0);
        return SQLitePCL.raw.sqlite3_exec(probe.Handle!, "SELECT count(*) FROM t") == SQLitePCL.raw.SQLITE_BUSY;
    }

    [Test]
    public async Task CheckpointAsync_stops_waiting_for_a_reader_when_cancelled([Values] bool plain)
    {
        var connectionString = Folder.ConnectionString(LongBusyTimeout);
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        using var reader = OpenReader();
        PoolTests.Execute(connectionString, "INSERT INTO t VALUES (2)");
        using var connection = plain
            ? new SqliteConnection($"Data Source={Folder.File()};Pooling=False;Default Timeout=60")
            : (System.Data.Common.DbConnection)new SaverDbConnection(connectionString);
        connection.Open();
        using var busyTimeout = connection.CreateCommand();
        busyTimeout.CommandText = "PRAGMA busy_timeout = 60000; SELECT count(*) FROM t"; // a connection opens the WAL when it first reads
        busyTimeout.ExecuteNonQuery();
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Should.ThrowAsync<OperationCanceledException>(
            () => Task.Run(() => connection.CheckpointAsync(CheckpointMode.Truncate, cancellation.Token)).WaitAsync(Bound));

        busyTimeout.CommandText = "PRAGMA busy_timeout";
        busyTimeout.ExecuteScalar().ShouldBe(60000L);
    }

    [Test]
    public async Task A_rollback_journal_commit_stops_waiting_for_a_reader_when_cancelled_and_stays_open()
    {
        var connectionString = Folder.ConnectionString($"{LongBusyTimeout};Journal Mode=Delete");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var reader = OpenReader();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await Exec(connection, "INSERT INTO t VALUES (1)", CancellationToken.None, transaction);
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Should.ThrowAsync<OperationCanceledException>(() => Task.Run(() => transaction.CommitAsync(cancellation.Token)).WaitAsync(Bound));

        transaction.Connection.ShouldBe(connection);
        await transaction.RollbackAsync();
        reader.Dispose();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(0L);
        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(60000L);
    }

    [Test]
    public async Task CommitAsync_stops_an_open_readers_remaining_write_waiting_for_the_lock_when_cancelled()
    {
        var connectionString = Folder.ConnectionString(LongBusyTimeout);
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        await using var transaction = connection.BeginTransaction(deferred: true);
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT 1; INSERT INTO t VALUES (1)";
        await using var reader = await command.ExecuteReaderAsync();
        reader.Read().ShouldBeTrue();
        using var holder = HoldWriteLock();
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Should.ThrowAsync<OperationCanceledException>(() => Task.Run(() => transaction.CommitAsync(cancellation.Token)).WaitAsync(Bound));

        transaction.Connection.ShouldBe(connection);
        await Should.ThrowAsync<InvalidOperationException>(() => transaction.CommitAsync()); // the INSERT never ran
        await transaction.RollbackAsync();
        holder.Dispose();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(0L);
        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(60000L);
    }

    /// <summary>
    /// A token CommitAsync was given, cancelled once it has returned, leaves the connection's later waits alone: a
    /// synchronous write outside a transaction (which has no token to end its waits) still waits for a reader in the
    /// busy handler, its COMMIT holding the PENDING lock, and writes once the reader has gone. Before a test, leaving
    /// the commit's cancellable busy handler on the connection passed every test (a hunt): the old token then ended the
    /// write's wait at once, busy (an async execution puts a handler of its own in place, for Cancel).
    /// </summary>
    [Test]
    public async Task A_token_cancelled_after_CommitAsync_returned_leaves_a_later_wait_for_a_reader_alone()
    {
        var connectionString = Folder.ConnectionString($"{LongBusyTimeout};Journal Mode=Delete;Retry=0"); // a busy error is not retried
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        using var cancellation = new CancellationTokenSource();
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await transaction.CommitAsync(cancellation.Token);
        }

        await cancellation.CancelAsync();
        using var reader = OpenReader();
        using var probe = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        probe.Open();
        var write = Task.Run(() => ConnectionTests.Scalar(connection, "INSERT INTO t VALUES (1)")); // synchronous: no token of its own
        Wait.Until(() => write.IsCompleted || CommitWaitingElsewhere(probe));
        reader.Dispose();

        await write.WaitAsync(Bound);
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(1L);
        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(60000L);
    }

    [Test]
    public async Task A_rollback_journal_write_outside_a_transaction_stops_waiting_for_a_reader_when_cancelled()
    {
        var connectionString = Folder.ConnectionString($"{LongBusyTimeout};Journal Mode=Delete");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var reader = OpenReader();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        // BEGIN IMMEDIATE takes the lock by polling, then the COMMIT waits for the reader in the busy handler.
        await Should.ThrowAsync<OperationCanceledException>(
            () => Task.Run(() => Exec(connection, "INSERT INTO t VALUES (1)", cancellation.Token)).WaitAsync(Bound));

        reader.Dispose();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(0L);
        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(60000L);
    }

    [Test]
    public async Task A_readers_next_statement_stops_waiting_for_the_lock_when_cancelled()
    {
        var connectionString = Folder.ConnectionString($"{LongBusyTimeout};Journal Mode=Delete");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1; SELECT count(*) FROM t";
        await using var reader = await command.ExecuteReaderAsync(); // the first statement reads no table
        using var holder = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        holder.Open();
        using (var exclusive = holder.CreateCommand())
        {
            exclusive.CommandText = "BEGIN EXCLUSIVE"; // in rollback-journal mode, readers wait too
            exclusive.ExecuteNonQuery();
        }

        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Should.ThrowAsync<OperationCanceledException>(() => Task.Run(() => reader.NextResultAsync(cancellation.Token)).WaitAsync(Bound));

        holder.Dispose();
        await reader.DisposeAsync();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(1L);
        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(60000L);
    }

    [Test]
    public async Task NextResultAsync_on_a_reader_closed_with_its_connection_throws_and_leaves_the_next_renter_alone()
    {
        var connectionString = Folder.ConnectionString($"{LongBusyTimeout};Max Pool Size=1");
        await using var first = new SaverDbConnection(connectionString);
        await first.OpenAsync();
        var physical = first.InnerConnection.Handle;
        await using var command = first.CreateCommand();
        command.CommandText = "SELECT 1; SELECT 2";
        var reader = await command.ExecuteReaderAsync();
        await first.CloseAsync();
        await using var next = new SaverDbConnection(connectionString);
        await next.OpenAsync();
        next.InnerConnection.Handle.ShouldBeSameAs(physical); // and its busy timeout is read before every use from now on
        var touched = false;
        SQLitePCL.raw.sqlite3_set_authorizer(
            physical,
            (_, action, name, _, _, _) =>
            {
                touched |= action == SQLitePCL.raw.SQLITE_PRAGMA && name == "busy_timeout";
                return SQLitePCL.raw.SQLITE_OK;
            },
            null);
        using var cancellation = new CancellationTokenSource();

        try
        {
            await Should.ThrowAsync<InvalidOperationException>(() => reader.NextResultAsync(cancellation.Token));
        }
        finally
        {
            SQLitePCL.raw.sqlite3_set_authorizer(physical, (SQLitePCL.strdelegate_authorizer)null!, null);
        }

        touched.ShouldBeFalse(); // the physical connection is the next renter's, perhaps on another thread
        ConnectionTests.Scalar(next, "SELECT 3").ShouldBe(3L);
    }

    [Test]
    public async Task A_CloseConnection_reader_failing_in_NextResultAsync_hands_its_connection_back_with_SQLites_busy_handler()
    {
        var connectionString = Folder.ConnectionString($"{LongBusyTimeout};Max Pool Size=1");
        using var cancellation = new CancellationTokenSource();
        await using var first = new SaverDbConnection(connectionString);
        await first.OpenAsync();
        SaverDbConnection? next = null;
        object? seenByNext = null;
        first.StateChange += (_, change) =>
        {
            if (change.CurrentState == System.Data.ConnectionState.Closed && next is null)
            {
                // Runs as the physical connection goes back to the pool: a waiting renter could have it now.
                next = new SaverDbConnection(connectionString);
                next.Open();
                seenByNext = ConnectionTests.Scalar(next, "PRAGMA busy_timeout");
                ConnectionTests.Exec(next, "PRAGMA busy_timeout = 5");
            }
        };
        await using var command = first.CreateCommand();
        command.CommandText = "SELECT 1; SELECT abs(-9223372036854775808)"; // the second statement fails: integer overflow
        var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.CloseConnection, cancellation.Token);

        await Should.ThrowAsync<SqliteException>(() => reader.NextResultAsync(cancellation.Token));

        try
        {
            reader.IsClosed.ShouldBeTrue();
            next.ShouldNotBeNull();
            seenByNext.ShouldBe(60000L);
            ConnectionTests.Scalar(next, "PRAGMA busy_timeout").ShouldBe(5L); // not undone by the call that had ended
        }
        finally
        {
            next?.Dispose();
        }
    }

    /// <summary>
    /// A busy timeout set through InnerConnection while a reader of an <c>INSERT ... RETURNING</c> is open stays after
    /// the reader's closing, whose next insert fails, rolls the write back without running what is left: the busy
    /// handler is switched off for that closing only while the busy timeout is known without reading it, as it is
    /// switched back on with the timeout known (a hunt's mutation that always switched it off put back the one read as
    /// the command began).
    /// </summary>
    [Test]
    public void A_busy_timeout_set_through_InnerConnection_while_a_write_reader_is_open_stays_after_its_failed_closing()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString(LongBusyTimeout));
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE w (x UNIQUE)");
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO w VALUES (1) RETURNING x; INSERT INTO w VALUES (1)";
        using (var reader = command.ExecuteReader())
        {
            reader.Read().ShouldBeTrue();
            using var set = connection.InnerConnection.CreateCommand();
            set.CommandText = "PRAGMA busy_timeout = 1234";
            set.ExecuteNonQuery();

            Should.Throw<SqliteException>(reader.Close).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        }

        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(1234L);
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM w").ShouldBe(0L);
    }

    [Test]
    public async Task A_cancel_racing_an_INSERT_RETURNING_reader_leaves_nothing_written_and_the_connection_clean()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        using var cancellation = new CancellationTokenSource();
        connection.InnerConnection.CreateFunction("cancel_now", () =>
        {
            cancellation.Cancel(); // while SQLite runs the statement: the interrupt may outlive the call
            return 0L;
        });
        await using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1), (2), (3) RETURNING x + CASE WHEN x = 3 THEN cancel_now() ELSE 0 END";

        var failure = await Should.ThrowAsync<Exception>(async () =>
        {
            await using var reader = await command.ExecuteReaderAsync(cancellation.Token);
            while (await reader.ReadAsync())
            {
            }
        });

        // Cancelled in the call, or the reader's next Read interrupted: either way the write is undone.
        (failure is OperationCanceledException || failure is SqliteException { SqliteErrorCode: 9 }).ShouldBeTrue(failure.ToString());
        SQLitePCL.raw.sqlite3_get_autocommit(connection.InnerConnection.Handle).ShouldBe(1);
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (4)"); // autocommitted, through a free write gate
        PoolTests.Execute(connectionString, "INSERT INTO t VALUES (5)"); // another connection is not locked out
        ConnectionTests.Scalar(connection, "SELECT group_concat(x) FROM t").ShouldBe("4,5");
    }

    /// <summary>
    /// OpenAsync cancelled while a new connection's PRAGMAs wait in SQLite's busy handler for a lock another process
    /// holds ends with <see cref="OperationCanceledException"/>, not the busy error the handler's end leaves (which,
    /// with no retry left, would surface as SQLITE_BUSY and count as a transient error).
    /// </summary>
    [Test]
    public async Task OpenAsync_cancelled_while_the_PRAGMAs_wait_for_a_lock_is_cancelled_not_busy()
    {
        var connectionString = Folder.ConnectionString($"{LongBusyTimeout};Journal Mode=Delete;Retry=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = SaverDataSource.Create(connectionString);
        using var holder = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        holder.Open();
        using (var exclusive = holder.CreateCommand())
        {
            exclusive.CommandText = "BEGIN EXCLUSIVE"; // not even a read can begin: the journal mode's waits in the busy handler
            exclusive.ExecuteNonQuery();
        }

        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        var failure = await Should.ThrowAsync<Exception>(() => dataSource.OpenConnectionAsync(cancellation.Token).AsTask().WaitAsync(Bound));

        failure.ShouldBeAssignableTo<OperationCanceledException>(failure.ToString());
        dataSource.Statistics.TransientErrors.ShouldBe(0);
        holder.Dispose();
        using var notCancelled = new CancellationTokenSource();
        await using var next = await dataSource.OpenConnectionAsync(notCancelled.Token); // the slot is free
        ConnectionTests.Scalar(next, "PRAGMA busy_timeout").ShouldBe(60000L); // the handler of the PRAGMAs' waits is taken out after them
    }

    [TestCase(3)]
    [TestCase(0)]
    public async Task A_cancelled_lock_wait_is_not_counted_as_a_transient_error(int retry)
    {
        var connectionString = Folder.ConnectionString($"{LongBusyTimeout};Retry={retry}");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = SaverDataSource.Create(connectionString);
        using var holder = HoldWriteLock();
        await using var connection = await dataSource.OpenConnectionAsync();
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Should.ThrowAsync<OperationCanceledException>(
            () => Task.Run(() => Exec(connection, "PRAGMA user_version = 7", cancellation.Token)).WaitAsync(Bound));

        var statistics = dataSource.Statistics;
        statistics.TransientErrors.ShouldBe(0);
        statistics.Retries.ShouldBe(0);
        statistics.RetriesExhausted.ShouldBe(0);
    }

    /// <summary>
    /// After InnerConnection was taken (the busy timeout is then read before each use), an asynchronous write with a
    /// token still waits the busy timeout for the write lock: while the library's cancellable busy handler is in place
    /// SQLite reports busy_timeout 0, which must not be taken for it. Here the CommandTimeout ends the wait, long before
    /// the busy timeout; read as 0, the wait ended at once with SQLite's busy error.
    /// </summary>
    [Test]
    public async Task After_InnerConnection_an_async_write_with_a_token_still_waits_the_busy_timeout()
    {
        var connectionString = Folder.ConnectionString($"{LongBusyTimeout};Retry=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var holder = HoldWriteLock();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        _ = connection.InnerConnection;
        using var cancellation = new CancellationTokenSource();
        await using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1)";
        command.CommandTimeout = 1;

        var failure = await Should.ThrowAsync<SqliteException>(() => command.ExecuteNonQueryAsync(cancellation.Token).WaitAsync(Bound));

        failure.ShouldBeOfType<SqliteSaver.Data.Resilience.CommandTimeoutException>(failure.ToString());
        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(60000L);
    }

    /// <summary>
    /// A retry strategy whose attempt has a token of its own that the caller's does not cancel (a strategy keeping a
    /// timeout per attempt that leaves the caller's token out): the caller's cancellation still ends the attempt's wait
    /// for a lock in SQLite's busy handler, which waits on either token.
    /// </summary>
    [Test]
    public async Task The_callers_token_ends_the_lock_wait_of_an_attempt_with_a_token_of_its_own()
    {
        var connectionString = Folder.ConnectionString(LongBusyTimeout);
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseRetryStrategy(new AttemptTokenOfItsOwn()).Build();
        await using var connection = await dataSource.OpenConnectionAsync();
        using var holder = HoldWriteLock(); // released before the connection is disposed: a wait deaf to the token then ends
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Should.ThrowAsync<OperationCanceledException>(
            () => Task.Run(() => Exec(connection, "PRAGMA user_version = 7", cancellation.Token)).WaitAsync(Bound));

        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(60000L);
    }

    /// <summary>
    /// A retry strategy that tries first with a short token of its own, then waits as long as the caller allows: the
    /// second attempt, on the caller's token, waits for the lock on that token again, and the caller's cancellation ends
    /// it. The first attempt's handler is gone and the caller's back, not SQLite's, which would wait out Busy Timeout.
    /// </summary>
    [Test]
    public async Task The_callers_token_ends_the_lock_wait_of_an_attempt_on_it_after_one_with_a_token_of_its_own()
    {
        var connectionString = Folder.ConnectionString(LongBusyTimeout);
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var cancellation = new CancellationTokenSource();
        var strategy = new ShortTryFirst(() => cancellation.CancelAfter(TimeSpan.FromMilliseconds(200)));
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseRetryStrategy(strategy).Build();
        await using var connection = await dataSource.OpenConnectionAsync();
        using var holder = HoldWriteLock(); // released before the connection is disposed: a wait deaf to the token then ends

        await Should.ThrowAsync<OperationCanceledException>(
            () => Task.Run(() => Exec(connection, "PRAGMA user_version = 7", cancellation.Token)).WaitAsync(Bound));

        strategy.FirstAttemptEndedByItsToken.ShouldBeTrue();
    }

    [Test]
    public async Task A_thread_interrupted_in_the_busy_handler_gets_the_interrupt_outside_SQLite()
    {
        var connectionString = Folder.ConnectionString(LongBusyTimeout);
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var holder = HoldWriteLock();
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        using var transaction = connection.BeginTransaction(deferred: true);
        using var cancellation = new CancellationTokenSource();
        Exception? statement = null, afterwards = null;
        var returned = false;
        var writer = new Thread(() =>
        {
            try
            {
                Exec(connection, "INSERT INTO t VALUES (1)", cancellation.Token).GetAwaiter().GetResult();
            }
            catch (Exception error)
            {
                statement = error;
            }

            Volatile.Write(ref returned, true);
            try
            {
                Thread.Sleep(Timeout.Infinite);
            }
            catch (ThreadInterruptedException error)
            {
                afterwards = error;
            }
        });
        writer.Start();
        // Waiting for the lock in the busy handler, not yet in its own sleep below.
        Wait.Until(() => Volatile.Read(ref returned) || (writer.ThreadState & ThreadState.WaitSleepJoin) != 0);
        Volatile.Read(ref returned).ShouldBeFalse();

        writer.Interrupt(); // before the fix, this exception unwound through SQLite and ended the process
        writer.Join(Bound).ShouldBeTrue();

        statement.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_BUSY);
        afterwards.ShouldBeOfType<ThreadInterruptedException>();
    }

    [Test]
    [Platform("Linux")]
    public void An_app_giving_SQLitePCLRaw_its_own_copy_of_e_sqlite3_keeps_working_asynchronously()
    {
        using var worker = WorkerProcess.CopiedSqlite(Folder.Path);

        var errors = worker.WaitForExit();

        errors.ShouldBeEmpty();
        worker.Process.ExitCode.ShouldBe(0); // 139 (a segmentation fault) when the library called another copy
        worker.Lines.ShouldContain("async ok");
    }

    [Test]
    public async Task A_token_cancelled_while_the_busy_timeout_is_read_cancels_the_call()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var handle = connection.InnerConnection.Handle!; // from now on the busy timeout is read before every use
        using var cancellation = new CancellationTokenSource();
        await using var open = connection.CreateCommand();
        open.CommandText = "SELECT x FROM t";
        await using var reader = await open.ExecuteReaderAsync(); // an active statement keeps SQLite's interrupt set
        reader.Read().ShouldBeTrue();
        SQLitePCL.raw.sqlite3_set_authorizer(
            handle,
            (_, action, name, _, _, _) =>
            {
                if (action == SQLitePCL.raw.SQLITE_PRAGMA && name == "busy_timeout")
                {
                    cancellation.Cancel(); // interrupts the read of the busy timeout itself
                }

                return SQLitePCL.raw.SQLITE_OK;
            },
            null);
        try
        {
            await Should.ThrowAsync<OperationCanceledException>(() => Exec(connection, "SELECT 1", cancellation.Token));
        }
        finally
        {
            SQLitePCL.raw.sqlite3_set_authorizer(handle, (SQLitePCL.strdelegate_authorizer)null!, null);
        }
    }

    /// <summary>Runs each attempt once with a token of its own, which the caller's token does not cancel.</summary>
    private sealed class AttemptTokenOfItsOwn : SaverRetryStrategy
    {
        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        {
            using var own = new CancellationTokenSource();
            return attempt(state, own.Token);
        }

        public override async ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt, TState state, CancellationToken cancellationToken)
        {
            using var own = new CancellationTokenSource();
            return await attempt(state, own.Token);
        }
    }

    /// <summary>Runs an attempt with a token of its own that ends it after 100 ms, then, should that end it, one on the caller's token.</summary>
    private sealed class ShortTryFirst(Action beforeSecondAttempt) : SaverRetryStrategy
    {
        public bool FirstAttemptEndedByItsToken { get; private set; }

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
            => throw new NotSupportedException("the test runs asynchronously");

        public override async ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt, TState state, CancellationToken cancellationToken)
        {
            using (var first = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
            {
                try
                {
                    return await attempt(state, first.Token);
                }
                catch (OperationCanceledException) when (first.IsCancellationRequested)
                {
                    FirstAttemptEndedByItsToken = true;
                }
            }

            beforeSecondAttempt();
            return await attempt(state, cancellationToken);
        }
    }

    private static async Task Exec(SaverDbConnection connection, string sql, CancellationToken cancellationToken, SaverDbTransaction? transaction = null)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>A plain connection in the middle of a read transaction, as a reader in another process would be.</summary>
    private SqliteConnection OpenReader()
    {
        var reader = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        reader.Open();
        using var command = reader.CreateCommand();
        command.CommandText = "BEGIN; SELECT count(*) FROM t;";
        command.ExecuteScalar();
        return reader;
    }
}
