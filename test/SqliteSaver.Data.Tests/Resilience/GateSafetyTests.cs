using System.Diagnostics;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using SqliteSaver.Data.Resilience;
using SqliteSaver.Data.Tests.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Tests.Resilience;

/// <summary>The write gate is never left held and never waited on by its own holder, whatever ends a transaction.</summary>
public class GateSafetyTests : DatabaseTest
{
    [Test]
    public async Task A_write_after_SQLite_itself_ended_the_transaction_is_refused_at_once_and_runs_once_the_transaction_is_disposed()
    {
        var connectionString = Folder.ConnectionString("Default Timeout=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE ON CONFLICT ROLLBACK)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
        Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)")).SqliteErrorCode.ShouldBe(19);

        // With Default Timeout=0 a wait on its own gate would never end: that would fail here with a TimeoutException.
        var refused = Task.Run(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)"));
        (await Should.ThrowAsync<InvalidOperationException>(refused.WaitAsync(TimeSpan.FromSeconds(30)))).Message.ShouldContain("SQLite has already ended");

        transaction.Dispose();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)").ShouldBe(1);
        ConnectionTests.Scalar(connection, "SELECT group_concat(x) FROM t").ShouldBe("2");
    }

    [Test]
    public void An_attach_after_a_COMMIT_sent_as_SQL_is_refused_until_the_transaction_is_disposed_and_does_not_reach_the_next_renter()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            var transaction = connection.BeginTransaction();
            ConnectionTests.Exec(connection, "COMMIT");
            Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, $"ATTACH DATABASE '{Folder.File("other.db")}' AS other"));
            transaction.Dispose();
            ConnectionTests.Exec(connection, $"ATTACH DATABASE '{Folder.File("other.db")}' AS other");
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "SELECT count(*) FROM pragma_database_list WHERE name = 'other'").ShouldBe(0L);
    }

    [Test]
    public async Task An_async_write_keeps_a_busy_timeout_the_renter_set()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        ConnectionTests.Exec(connection, "PRAGMA busy_timeout = 77");

        await using (var insert = connection.CreateCommand())
        {
            insert.CommandText = "INSERT INTO t VALUES (1)";
            (await insert.ExecuteNonQueryAsync()).ShouldBe(1);
        }

        ConnectionTests.Pragma(connection, "busy_timeout").ShouldBe(77L);
    }

    /// <summary>
    /// A reader whose later statement sets busy_timeout (SQLite sets it as NextResult prepares that statement), with an
    /// async command run between its results: the async commands after it keep the renter's busy timeout. Before, the
    /// library took the busy timeout the first async command had read for still known, and the second one's wait for
    /// a lock, as it ended, set that old value back over the renter's (a review: 1 in 1).
    /// </summary>
    [Test]
    public async Task Async_commands_keep_a_busy_timeout_a_readers_later_statement_set()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=5000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        using var cancellation = new CancellationTokenSource(); // a token that can be cancelled: the library's busy handler
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1; PRAGMA busy_timeout = 1234; SELECT 2";
        await using (var reader = await command.ExecuteReaderAsync(cancellation.Token))
        {
            (await reader.ReadAsync(cancellation.Token)).ShouldBeTrue();
            await InsertAsync(connection, cancellation.Token); // reads the busy timeout, 5000
            (await reader.NextResultAsync(cancellation.Token)).ShouldBeTrue(); // sets it to 1234
            (await reader.NextResultAsync(cancellation.Token)).ShouldBeTrue();
        }

        await InsertAsync(connection, cancellation.Token);
        ConnectionTests.Pragma(connection, "busy_timeout").ShouldBe(1234L);
    }

    private static async Task InsertAsync(SaverDbConnection connection, CancellationToken cancellationToken)
    {
        await using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (1)";
        (await insert.ExecuteNonQueryAsync(cancellationToken)).ShouldBe(1);
    }

    [Test]
    public void A_write_keeps_a_busy_timeout_a_renter_set_and_the_next_renter_has_the_connection_strings_again()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using (var first = new SaverDbConnection(connectionString))
        {
            first.Open();
            ConnectionTests.Exec(first, "PRAGMA busy_timeout = 77");
            ConnectionTests.Exec(first, "INSERT INTO t VALUES (1)");
            ConnectionTests.Pragma(first, "busy_timeout").ShouldBe(77L);
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Exec(next, "INSERT INTO t VALUES (2)");
        using (var transaction = next.BeginTransaction())
        {
            transaction.Commit();
        }

        ConnectionTests.Pragma(next, "busy_timeout").ShouldBe(5000L); // not the 77 remembered from the last rental
    }

    [Test]
    public void A_write_keeps_a_busy_timeout_set_by_the_connection_initializer()
    {
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString())
            .UseConnectionInitializer(connection =>
            {
                using var command = connection.CreateCommand();
                command.CommandText = "PRAGMA busy_timeout = 77";
                command.ExecuteNonQuery();
            })
            .Build();
        using var connection = dataSource.OpenConnection();

        ConnectionTests.Exec(connection, "CREATE TABLE t (x)");
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");

        ConnectionTests.Pragma(connection, "busy_timeout").ShouldBe(77L);
    }

    [Test]
    public void A_write_keeps_a_busy_timeout_set_through_an_inner_connection_kept_across_writes()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            var inner = connection.InnerConnection;
            ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
            raw.sqlite3_busy_timeout(inner.Handle, 77);
            ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)");
            ConnectionTests.Pragma(connection, "busy_timeout").ShouldBe(77L);
            raw.sqlite3_busy_timeout(inner.Handle, 88);
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Exec(next, "INSERT INTO t VALUES (3)");
        ConnectionTests.Pragma(next, "busy_timeout").ShouldBe(88L);
    }

    [Test]
    public void A_write_waits_for_a_lock_held_elsewhere_no_longer_than_a_busy_timeout_the_renter_set()
    {
        var connectionString = Folder.ConnectionString("Retry=0;Busy Timeout=10000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var holder = HoldWriteLock();
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        ConnectionTests.Exec(connection, "PRAGMA busy_timeout = 50");

        var stopwatch = Stopwatch.StartNew();
        var error = Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)"));

        error.SqliteErrorCode.ShouldBe(5);
        stopwatch.Elapsed.ShouldBeInRange(TimeSpan.FromMilliseconds(40), TimeSpan.FromSeconds(5)); // not the 10 s of Busy Timeout
        ConnectionTests.Pragma(connection, "busy_timeout").ShouldBe(50L);
    }

    [Test]
    public void A_write_whose_snapshot_its_own_open_reader_pins_fails_at_once_and_leaves_the_gate_to_others()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=20000;Retry=3");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT x FROM t";
        var reader = select.ExecuteReader();
        reader.Read().ShouldBeTrue();
        PoolTests.Execute(connectionString, "INSERT INTO t VALUES (3)"); // the reader's snapshot is now old

        var stopwatch = Stopwatch.StartNew();
        var error = Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (4)"));
        Should.Throw<InvalidOperationException>(connection.BeginTransaction);

        stopwatch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10)); // not four attempts of 20 s each
        error.Message.ShouldContain("reader");
        error.InnerException.ShouldBeOfType<SqliteException>().SqliteExtendedErrorCode.ShouldBe(517);
        PoolTests.Execute(connectionString, "INSERT INTO t VALUES (5)"); // the gate is free for the process's other writers
        reader.Dispose();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (6)");
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1,2,3,5,6");
    }

    /// <summary>
    /// A write that its own connection's open reader keeps from running (SQLITE_LOCKED: "database table is locked",
    /// a DROP TABLE of the table the reader reads) fails at once, as no wait can cure it while the reader stays open:
    /// on a clock that never moves, a backoff before another attempt would never end. Before, it was retried with
    /// backoff, holding the process's write gate all along (a review's finding; a reader opened on InnerConnection
    /// too, a second review's).
    /// </summary>
    [Test]
    public async Task A_write_its_own_open_reader_locks_fails_at_once_and_leaves_the_gate_to_others([Values] bool onInnerConnection)
    {
        var connectionString = Folder.ConnectionString("Retry=3;Base Delay=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseTimeProvider(new FakeTimeProvider()).Build();
        using var connection = dataSource.OpenConnection();
        using System.Data.Common.DbCommand select = onInnerConnection ? connection.InnerConnection.CreateCommand() : connection.CreateCommand();
        select.CommandText = "SELECT x FROM t";
        var reader = select.ExecuteReader();
        reader.Read().ShouldBeTrue();

        var error = await Should.ThrowAsync<InvalidOperationException>(
            Task.Run(() => ConnectionTests.Exec(connection, "DROP TABLE t")).WaitAsync(TimeSpan.FromSeconds(30)));

        error.Message.ShouldContain("open on this connection");
        error.InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_LOCKED);
        using (var other = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(other, "INSERT INTO t VALUES (3)"); // the gate is free for the process's other writers
        }

        reader.Dispose();
        ConnectionTests.Exec(connection, "DROP TABLE t");
    }

    /// <summary>
    /// A SQLITE_LOCKED while no statement of the renter is open (the earlier commands' statements have run) is not the
    /// connection's own doing: the write is tried again as for any transient error, and given up as a SqliteException.
    /// </summary>
    [Test]
    public void A_write_locked_while_no_statement_of_its_own_is_open_is_retried()
    {
        var connectionString = Folder.ConnectionString("Retry=2;Base Delay=0.001;Max Delay=0.001");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var calls = 0;
        connection.InnerConnection.CreateFunction<long>("locked", () =>
        {
            calls++;
            throw new SqliteException("SQLite Error 6: 'database table is locked'.", SQLitePCL.raw.SQLITE_LOCKED);
        });
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(0L);

        Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (locked())")).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_LOCKED);

        calls.ShouldBe(3);
    }

    /// <summary>
    /// A BeginTransaction nested in a retry strategy's callback before the attempt of its own connection's write, which
    /// holds the write gate by then: it does not queue at the gate its own connection holds, which would last Default
    /// Timeout (a minute here).
    /// </summary>
    [Test]
    public async Task A_BeginTransaction_nested_before_its_connections_write_attempt_does_not_wait_for_the_gate_that_write_holds()
    {
        var connectionString = Folder.ConnectionString("Default Timeout=60");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        SaverDbConnection? connection = null;
        string? nested = null;
        var strategy = new OneExecutionAtATimeTests.BeforeFirstAttempt(() =>
        {
            try
            {
                connection!.BeginTransaction().Dispose();
                nested = "began";
            }
            catch (Exception exception)
            {
                nested = exception.GetType().Name;
            }
        });
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseRetryStrategy(strategy).Build();
        using (connection = dataSource.OpenConnection())
        {
            strategy.Armed = true;
            var write = Task.Run(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)"));
            await Task.WhenAny(write, Task.Delay(TimeSpan.FromSeconds(30)));

            var rows = ConnectionTests.Scalar(connection, "SELECT count(*) FROM t");
            $"nested {nested}; write {write.Status}; rows {rows}; gate held {dataSource.Executor.Gate!.IsHeld}".ShouldBe(
                "nested began; write RanToCompletion; rows 1; gate held False");
        }
    }

    /// <summary>
    /// As above inside RunInTransaction: the unit of work is not run again for it (before, it ran four times over
    /// the backoff, failing the same way each time; a review's finding).
    /// </summary>
    [Test]
    public async Task A_unit_of_work_whose_write_its_own_open_reader_locks_runs_once()
    {
        var connectionString = Folder.ConnectionString("Retry=3;Base Delay=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseTimeProvider(new FakeTimeProvider()).Build();
        using var connection = dataSource.OpenConnection();
        var runs = 0;

        var error = await Should.ThrowAsync<InvalidOperationException>(Task.Run(() => connection.RunInTransaction(transaction =>
        {
            runs++;
            using var select = connection.CreateCommand();
            select.CommandText = "SELECT x FROM t";
            using var reader = select.ExecuteReader();
            reader.Read().ShouldBeTrue();
            ConnectionTests.Exec(connection, "DROP TABLE t");
        })).WaitAsync(TimeSpan.FromSeconds(30)));

        runs.ShouldBe(1);
        error.InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_LOCKED);
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(2L);
    }

    [Test]
    public void Cancel_interrupts_a_running_statement()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        var running = Task.Run(() => command.ExecuteScalar());

        Wait.Until(() =>
        {
            command.Cancel();
            return running.IsCompleted;
        });

        Should.Throw<SqliteException>(() => running.GetAwaiter().GetResult()).SqliteErrorCode.ShouldBe(9);
        new SaverDbCommand("SELECT 1").Cancel(); // not bound: nothing to interrupt
    }

    [Test]
    public void Cancel_of_a_command_whose_reader_is_between_reads_does_not_interrupt_another_reader()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3)");
        using var first = connection.CreateCommand();
        first.CommandText = "SELECT id FROM t ORDER BY id";
        using var second = connection.CreateCommand();
        second.CommandText = "SELECT id FROM t ORDER BY id DESC";
        using var firstReader = first.ExecuteReader();
        firstReader.Read().ShouldBeTrue();
        using (var secondReader = second.ExecuteReader())
        {
            secondReader.Read().ShouldBeTrue();
            second.Cancel(); // stops nothing: no call of the command is running
            secondReader.Read().ShouldBeTrue();
        }

        firstReader.Read().ShouldBeTrue(); // not SQLITE_INTERRUPT
        firstReader.Read().ShouldBeTrue();
        firstReader.GetInt64(0).ShouldBe(3L);
    }

    [Test]
    public void Cancel_interrupts_a_readers_running_Read()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i FROM n WHERE i = 1 OR i < 0";
        using var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue(); // the first row; the next Read scans without end for a second
        var running = Task.Run(reader.Read);

        Wait.Until(() =>
        {
            command.Cancel();
            return running.IsCompleted;
        });

        Should.Throw<SqliteException>(() => running.GetAwaiter().GetResult()).SqliteErrorCode.ShouldBe(9);
    }

    [Test]
    public void Cancel_interrupts_the_statements_a_closing_reader_runs()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        var handle = connection.InnerConnection.Handle!;
        var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();
        var closing = Task.Run(reader.Dispose); // runs the endless second statement, as Microsoft.Data.Sqlite's reader does

        try
        {
            Wait.Until(() =>
            {
                command.Cancel();
                return closing.IsCompleted;
            });
        }
        finally
        {
            if (!closing.IsCompleted)
            {
                raw.sqlite3_interrupt(handle); // a failed test ends here, instead of hanging on the endless statement
                closing.Wait(TimeSpan.FromSeconds(30));
            }
        }

        closing.IsCompletedSuccessfully.ShouldBeTrue(); // closing ignores the statements' errors
        ConnectionTests.Scalar(connection, "SELECT 2").ShouldBe(2L);
    }

    [Test]
    public void Cancel_on_a_disposed_command_does_not_reach_the_next_renter_of_its_connection()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        var stale = new SaverDbCommand("SELECT 1");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            stale.Connection = connection;
            stale.ExecuteScalar();
            stale.Dispose();
            for (var i = 0; i < 20; i++) // enough commands that the connection forgets the disposed one
            {
                ConnectionTests.Scalar(connection, "SELECT 2");
            }
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        using var command = next.CreateCommand();
        command.CommandText = "SELECT x FROM t";
        using var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue(); // a statement running on the physical connection

        stale.Cancel();

        reader.Read().ShouldBeTrue(); // not SQLITE_INTERRUPT
        reader.GetInt64(0).ShouldBe(2L);
    }

    [Test]
    public void Cancel_racing_a_failing_CloseConnection_reader_does_not_interrupt_the_next_renter_of_its_connection()
    {
        // One physical connection, rented in turn by a thread whose commands other threads Cancel() without pause, and
        // by a thread running a longer query that nobody cancels. The cancelled command opens a reader with
        // CloseConnection, and its statement fails (a malformed JSON at its end, or an interrupt of the cancellers):
        // ExecuteReader then closes the connection, handing the physical connection to the other thread, just after its
        // call stops counting as running. A Cancel that saw the call running and read its physical connection, then was
        // preempted, would interrupt the other renter's statement, were the end of the call not to wait for it (without
        // that wait this test failed within 2 s, twice). Bounded: stops at the first such interrupt, or after 15 s.
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        const string Numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) ";
        SaverDbCommand? victim = null;
        var stop = false;
        SqliteException? otherRenterInterrupted = null;
        var cancelled = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                var connection = new SaverDbConnection(connectionString);
                connection.Open();
                using var command = connection.CreateCommand();
                command.CommandText = Numbers.Replace("20000", "2000", StringComparison.Ordinal) + "SELECT json('{' || count(*)) FROM n";
                Volatile.Write(ref victim, command);
                try
                {
                    using var reader = command.ExecuteReader(System.Data.CommandBehavior.CloseConnection);
                    while (reader.Read())
                    {
                    }
                }
                catch (Exception)
                {
                    // the malformed JSON, or its own Cancel: documented
                }

                connection.Dispose(); // closed already, by the reader or as ExecuteReader failed
            }
        });
        var other = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                using var connection = new SaverDbConnection(connectionString);
                connection.Open();
                using var command = connection.CreateCommand();
                command.CommandText = Numbers + "SELECT sum(i) FROM n";
                try
                {
                    command.ExecuteScalar().ShouldBe(200010000L);
                }
                catch (SqliteException error) when (error.SqliteErrorCode == raw.SQLITE_INTERRUPT)
                {
                    otherRenterInterrupted = error; // no one cancelled this command
                    Volatile.Write(ref stop, true);
                }
            }
        });
        var cancellers = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
            {
                Volatile.Read(ref victim)?.Cancel();
            }
        })).ToList();
        cancelled.Start();
        other.Start();
        cancellers.ForEach(thread => thread.Start());
        SpinWait.SpinUntil(() => Volatile.Read(ref stop), TimeSpan.FromSeconds(15));
        Volatile.Write(ref stop, true);
        cancelled.Join();
        other.Join();
        cancellers.ForEach(thread => thread.Join());

        otherRenterInterrupted.ShouldBeNull();
    }

    [TestCase("Write Gate=true")]
    [TestCase("Write Gate=false")]
    public void While_a_readers_own_write_is_open_other_writes_and_transactions_are_refused_and_reads_run(string gate)
    {
        var connectionString = Folder.ConnectionString(gate);
        PoolTests.Execute(connectionString, "CREATE TABLE job (id INTEGER PRIMARY KEY); CREATE TABLE log (id INTEGER PRIMARY KEY)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var claim = connection.CreateCommand();
        claim.CommandText = "INSERT INTO job VALUES (1) RETURNING id; INSERT INTO job VALUES (1)"; // fails on its second statement
        var reader = claim.ExecuteReader();
        reader.Read().ShouldBeTrue();

        Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "INSERT INTO log VALUES (42)")).Message.ShouldContain("Close the reader first");
        Should.Throw<InvalidOperationException>(connection.BeginTransaction).Message.ShouldContain("Close the reader first");
        Should.Throw<InvalidOperationException>(() => connection.RunInTransaction(_ => { })).Message.ShouldContain("Close the reader first");
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM log").ShouldBe(0L);
        Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "PRAGMA user_version = 7")).Message.ShouldContain("Close the reader first");
        Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "ROLLBACK")).Message.ShouldContain("Close the reader first");
        Should.Throw<SqliteException>(reader.Dispose).SqliteErrorCode.ShouldBe(19); // the batch is rolled back whole

        ConnectionTests.Exec(connection, "INSERT INTO log VALUES (42)").ShouldBe(1);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM job").ShouldBe(0L);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM log").ShouldBe(1L);
    }

    [Test]
    public void Disposing_a_command_finishes_the_write_left_open_for_its_reader()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (id INTEGER PRIMARY KEY, x)");
        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            var command = connection.CreateCommand();
            command.CommandText = "INSERT INTO t (x) VALUES (1) RETURNING id";
            command.ExecuteReader().Read().ShouldBeTrue();
            gate.IsHeld.ShouldBeTrue();

            command.Dispose();

            gate.IsHeld.ShouldBeFalse();
            for (var i = 0; i < 20; i++)
            {
                ConnectionTests.Scalar(connection, "SELECT count(*) FROM t");
            }
        }

        gate.IsHeld.ShouldBeFalse();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    [Test]
    public void When_a_readers_write_fails_to_commit_Close_reports_it_and_still_returns_the_connection()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=5;Foreign Keys=true");
        PoolTests.Execute(connectionString,
            "CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child (id INTEGER PRIMARY KEY, parent REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)");
        var dataSource = SaverDataSource.GetShared(connectionString);
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO child (parent) VALUES (99) RETURNING id";
        command.ExecuteReader().Read().ShouldBeTrue();

        Should.Throw<SqliteException>(connection.Close).SqliteErrorCode.ShouldBe(19); // FOREIGN KEY constraint failed at COMMIT

        connection.State.ShouldBe(System.Data.ConnectionState.Closed);
        dataSource.Executor.Gate!.IsHeld.ShouldBeFalse();
        using var next = new SaverDbConnection(connectionString);
        next.Open();
        ConnectionTests.Scalar(next, "SELECT count(*) FROM child").ShouldBe(0L);
    }

    [Test]
    public void A_batch_ending_in_VACUUM_after_unpreparable_statements_runs_outside_a_transaction()
    {
        var connectionString = Folder.ConnectionString();
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();

        ConnectionTests.Exec(connection, "CREATE TABLE a (x); CREATE INDEX ai ON a (x); VACUUM");

        ConnectionTests.Scalar(connection, "SELECT count(*) FROM sqlite_master WHERE name = 'ai'").ShouldBe(1L);
    }

    /// <summary>
    /// A comment that opens with "/*/" ends at the next */, as SQLite reads it: the VACUUM after it is seen and run
    /// outside a transaction (it was taken for a write and failed inside one of the library's: "cannot VACUUM from
    /// within a transaction").
    /// </summary>
    [Test]
    public void A_VACUUM_after_a_comment_opening_with_a_slash_runs_outside_a_transaction()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE a (x)");

        Should.NotThrow(() => ConnectionTests.Exec(connection, "/*/ compact the file */ VACUUM"));
    }

    [Test]
    public void A_whole_CommandTimeout_spent_in_the_write_queue_is_not_retried()
    {
        var connectionString = Folder.ConnectionString("Default Timeout=1;Retry=3;Base Delay=0.01");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var retries = 0;
        ((RetryPolicy)dataSource.Executor.Strategy).Retrying += (_, _, _) => Interlocked.Increment(ref retries);
        using var holder = dataSource.OpenConnection();
        using var transaction = holder.BeginTransaction();
        using var connection = dataSource.OpenConnection();
        var ran = 0;

        var error = Should.Throw<SqliteException>(() => connection.RunInTransaction(_ => ran++));

        error.SqliteErrorCode.ShouldBe(5);
        error.Message.ShouldContain("Waited 1 s (the connection string's Default Timeout) in this process's write queue");
        SaverRetryStrategy.IsTransient(error).ShouldBeFalse();
        retries.ShouldBe(0);
        ran.ShouldBe(0);
    }

    /// <summary>
    /// Write Gate=false takes the gate away: a write beside another connection's open transaction goes straight to
    /// SQLite's lock (here Busy Timeout=0 and Retry=0: SQLITE_BUSY at once) instead of queuing in the process's write
    /// queue for its CommandTimeout, as it does with the gate. Ignoring the keyword was caught before only by another
    /// test's 30 s timeout (a hunt).
    /// </summary>
    [Test]
    public void Write_Gate_false_lets_a_write_meet_SQLites_lock_instead_of_the_write_queue([Values] bool gate)
    {
        var connectionString = Folder.ConnectionString($"Busy Timeout=0;Retry=0;Write Gate={gate}");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        using var holder = dataSource.OpenConnection();
        using var transaction = holder.BeginTransaction();
        using var connection = dataSource.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1)";
        command.CommandTimeout = 1;

        var error = Should.Throw<SqliteException>(() => command.ExecuteNonQuery());

        error.SqliteErrorCode.ShouldBe(5);
        (dataSource.Executor.Gate is not null).ShouldBe(gate);
        error.Message.Contains("write queue", StringComparison.Ordinal).ShouldBe(gate, error.Message);
        if (gate)
        {
            // README's "A writer waits there at most its CommandTimeout": the error names the command's CommandTimeout,
            // the setting that bounded the wait, not the connection string's Default Timeout (BeginTransaction's), and
            // the write has left the queue.
            error.Message.ShouldContain("Waited 1 s (the command's CommandTimeout) in this process's write queue");
            error.Message.ShouldNotContain("Default Timeout");
            dataSource.Executor.Gate!.WaitingCount.ShouldBe(0);
        }
    }

    [Test]
    public async Task Cancelling_an_async_write_interrupts_SQLites_wait_for_the_lock()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=60000;Write Gate=false");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var holder = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        holder.Open();
        using (var begin = holder.CreateCommand())
        {
            begin.CommandText = "BEGIN IMMEDIATE";
            begin.ExecuteNonQuery();
        }

        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1)";
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        var stopwatch = Stopwatch.StartNew();
        await Should.ThrowAsync<OperationCanceledException>(() => command.ExecuteNonQueryAsync(cancellation.Token));

        stopwatch.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(30)); // Busy Timeout alone would hold it for 60 s
        await Should.ThrowAsync<OperationCanceledException>(async () => await connection.BeginTransactionAsync(new CancellationTokenSource(200).Token));
        SQLitePCL.raw.sqlite3_get_autocommit(connection.InnerConnection.Handle).ShouldBe(1);
    }

    /// <summary>
    /// With a shared cache, a write that another connection's open reader locks (SQLITE_LOCKED_SHAREDCACHE) is retried
    /// until that reader closes, also while a reader of the writing connection is open: only a plain SQLITE_LOCKED
    /// there is its own statement's doing, which no wait cures (a hunt: taking every SQLITE_LOCKED for it passed every
    /// test).
    /// </summary>
    [Test]
    public async Task A_write_another_connections_reader_locks_in_a_shared_cache_is_retried_beside_an_open_reader_of_its_own()
    {
        var connectionString = Folder.ConnectionString("Cache=Shared;Retry=100;Base Delay=0.01;Max Delay=0.01");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1); CREATE TABLE u (x); INSERT INTO u VALUES (1), (2)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var retries = 0;
        ((RetryPolicy)dataSource.Executor.Strategy).Retrying += (_, _, _) => Interlocked.Increment(ref retries);
        using var writer = dataSource.OpenConnection();
        using var other = dataSource.OpenConnection();
        using var own = writer.CreateCommand();
        own.CommandText = "SELECT x FROM u";
        using var ownReader = own.ExecuteReader();
        ownReader.Read().ShouldBeTrue();
        using var locking = other.CreateCommand();
        locking.CommandText = "SELECT x FROM t";
        var lockingReader = locking.ExecuteReader();
        lockingReader.Read().ShouldBeTrue();

        var write = Task.Run(() => ConnectionTests.Exec(writer, "INSERT INTO t VALUES (2)"));
        await Task.WhenAny(write, Task.Run(() => Wait.Until(() => Volatile.Read(ref retries) > 0)));
        lockingReader.Dispose();

        (await write.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBe(1);
        ConnectionTests.Scalar(other, "SELECT count(*) FROM t").ShouldBe(2L);
    }

    /// <summary>
    /// A write leaves the write gate as soon as its attempt has committed, not once the retry strategy returns: a
    /// strategy that goes on after a success (one that handles results too waits out a delay before it asks for the
    /// attempt again, see RunsNothingAfterSuccess) keeps no other writer of the process waiting (a hunt: the gate left
    /// only once the strategy returned passed every test).
    /// </summary>
    [Test]
    public async Task A_write_leaves_the_gate_once_committed_while_its_retry_strategy_still_runs()
    {
        var connectionString = Folder.ConnectionString("Default Timeout=5");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var strategy = new HoldsAfterFirstAttempt();
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseRetryStrategy(strategy).Build();
        using var first = dataSource.OpenConnection();
        using var second = dataSource.OpenConnection();
        strategy.Armed = true;
        var held = Task.Run(() => ConnectionTests.Exec(first, "INSERT INTO t VALUES (1)"));
        try
        {
            strategy.AttemptReturned.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
            var gateHeld = dataSource.Executor.Gate!.IsHeld;
            var otherWrite = Task.Run(() => ConnectionTests.Exec(second, "INSERT INTO t VALUES (2)"));
            await Task.WhenAny(otherWrite, Task.Delay(TimeSpan.FromSeconds(30)));

            $"gate held {gateHeld}; other write {otherWrite.Status}; first write returned {held.IsCompleted}".ShouldBe(
                "gate held False; other write RanToCompletion; first write returned False");
        }
        finally
        {
            strategy.Release.Set();
        }

        (await held.WaitAsync(TimeSpan.FromSeconds(30))).ShouldBe(1);
        ConnectionTests.Scalar(first, "SELECT group_concat(x) FROM (SELECT x FROM t ORDER BY x)").ShouldBe("1,2");
    }

    /// <summary>Runs each attempt once; once armed, after the next synchronous one it waits for <see cref="Release"/> before it returns.</summary>
    private sealed class HoldsAfterFirstAttempt : SaverRetryStrategy
    {
        private int _held;

        public volatile bool Armed;

        public ManualResetEventSlim AttemptReturned { get; } = new();

        public ManualResetEventSlim Release { get; } = new();

        public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        {
            var result = attempt(state, cancellationToken);
            if (Armed && Interlocked.Exchange(ref _held, 1) == 0)
            {
                AttemptReturned.Set();
                Release.Wait(TimeSpan.FromSeconds(60), CancellationToken.None);
            }

            return result;
        }

        public override ValueTask<TResult> ExecuteAsync<TState, TResult>(
            Func<TState, CancellationToken, ValueTask<TResult>> attempt, TState state, CancellationToken cancellationToken)
            => attempt(state, cancellationToken);
    }
}
