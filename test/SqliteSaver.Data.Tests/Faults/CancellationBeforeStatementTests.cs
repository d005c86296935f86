using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;
using SqliteSaver.Data.Tests.Resilience;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>
/// A cancellation that lands while none of the connection's statements is active: SQLite drops an interrupt made then,
/// as the next statement begins. Before, a batch cancelled during its first statement (one SQLite finished before it
/// looked for the interrupt) ran its next statement to the end and returned as if nothing had happened; so did a call
/// cancelled between its last look at its token and its first statement. Now the connection's progress handler, which
/// looks at the call's token every 100 of SQLite's steps, stops the next statement. Here a function of the first
/// statement cancels, and the second counts over 81 rows.
/// </summary>
public class CancellationBeforeStatementTests : DatabaseTest
{
    private int _calls; // of cancel_now

    [Test]
    public async Task Cancel_during_a_batchs_first_statement_stops_the_next([Values] bool write)
    {
        await using var connection = await Open();
        await using var batch = connection.CreateCommand();
        connection.InnerConnection.CreateFunction("cancel_now", () =>
        {
            if (_calls++ == 0)
            {
                batch.Cancel();
            }

            return 0L;
        });
        batch.CommandText = Batch(write);

        var error = Should.Throw<SqliteException>(() => batch.ExecuteNonQuery());

        error.SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT);
        _calls.ShouldBeLessThan(82, "the second statement was stopped before its end");
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM w").ShouldBe(0L, "nothing of the batch is kept");
    }

    [Test]
    public async Task A_token_cancelled_during_a_batchs_first_statement_stops_the_next([Values] bool write)
    {
        await using var connection = await Open();
        using var cancellation = new CancellationTokenSource();
        await using var batch = connection.CreateCommand();
        connection.InnerConnection.CreateFunction("cancel_now", () =>
        {
            _calls++;
            cancellation.Cancel();
            return 0L;
        });
        batch.CommandText = Batch(write);

        await Should.ThrowAsync<OperationCanceledException>(() => batch.ExecuteNonQueryAsync(cancellation.Token));

        _calls.ShouldBeLessThan(82, "the second statement was stopped before its end");
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM w").ShouldBe(0L, "nothing of the batch is kept");
    }

    /// <summary>
    /// Inserts of the caller's transaction that cancel themselves as they run, reused (SQLite counts a kept statement's
    /// steps over its runs and calls the progress handler each time the count passes a hundred, also as the statement
    /// returns, after it made its changes): one that throws its cancellation is never committed, one that returns is.
    /// Alone on its connection the handler interrupts SQLite, which lets a statement that has done its work return it;
    /// beside an open reader it stops the statement itself, also as it returns, and the library then ends the
    /// transaction, as SQLite's interrupt of a write does. Before, such a write threw and a Commit kept its row (a
    /// review's finding).
    /// </summary>
    [Test]
    public async Task An_insert_of_the_callers_transaction_is_committed_only_if_it_returned([Values] bool async, [Values] bool besideReader)
    {
        await using var connection = await Open();
        await using var other = connection.CreateCommand();
        await using var reader = besideReader ? CancellationBesideOpenReaderTests.OpenReader(other) : null;
        await using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO w VALUES (cancel_now($i))";
        var parameter = insert.CreateParameter();
        parameter.ParameterName = "$i";
        insert.Parameters.Add(parameter);
        CancellationTokenSource? cancellation = null;
        connection.InnerConnection.CreateFunction("cancel_now", (long i) =>
        {
            if (async)
            {
                cancellation!.Cancel();
            }
            else
            {
                insert.Cancel();
            }

            return i;
        });
        await using var transaction = await connection.BeginTransactionAsync();
        var returned = new List<long>();
        long? stopped = null;
        for (var i = 0L; i < 200 && stopped is null; i++)
        {
            parameter.Value = i;
            using (cancellation = new CancellationTokenSource())
            {
                try
                {
                    _ = async ? await insert.ExecuteNonQueryAsync(cancellation.Token) : insert.ExecuteNonQuery();
                    returned.Add(i);
                }
                catch (Exception exception) when (exception is OperationCanceledException or SqliteException { SqliteErrorCode: 9 })
                {
                    stopped = i;
                }
            }
        }

        if (stopped is null)
        {
            await transaction.CommitAsync();
            PoolTests.Scalar(Folder.ConnectionString(), "SELECT count(*) FROM w").ShouldBe((long)returned.Count);
        }
        else
        {
            Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("SQLite has already ended");
            PoolTests.Scalar(Folder.ConnectionString(), "SELECT count(*) FROM w").ShouldBe(0L);
        }

        besideReader.ShouldBe(stopped is not null, "alone, every insert returns; beside a reader, the handler stops one");
    }

    /// <summary>
    /// As above for a CREATE TABLE, which changes no rows (SQLite's count of changed rows, which an earlier fix looked
    /// at, did not move, and the table of a statement reported cancelled stayed in the transaction: a review's finding).
    /// </summary>
    [Test]
    public async Task A_create_table_of_the_callers_transaction_reported_cancelled_is_not_kept()
    {
        await using var connection = await Open();
        await using var other = connection.CreateCommand();
        await using var reader = CancellationBesideOpenReaderTests.OpenReader(other);
        CancellationTokenSource? cancellation = null;
        connection.InnerConnection.CreateFunction("cancel_now", (long i) =>
        {
            cancellation!.Cancel();
            return i;
        });
        await using var create = connection.CreateCommand();
        create.CommandText = "SELECT cancel_now($i); CREATE TABLE e (x)";
        var parameter = create.CreateParameter();
        parameter.ParameterName = "$i";
        create.Parameters.Add(parameter);
        var stops = 0;
        for (var i = 0L; i < 300; i++)
        {
            parameter.Value = i;
            await using var transaction = await connection.BeginTransactionAsync();
            create.Transaction = transaction;
            using (cancellation = new CancellationTokenSource())
            {
                try
                {
                    await create.ExecuteNonQueryAsync(cancellation.Token);
                }
                catch (OperationCanceledException)
                {
                    stops++;
                    Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("SQLite has already ended");
                    PoolTests.Scalar(Folder.ConnectionString(), "SELECT count(*) FROM sqlite_schema WHERE name = 'e'").ShouldBe(0L);
                }
            }
        }

        stops.ShouldBeGreaterThan(0);
    }

    /// <summary>
    /// A reader of the caller's transaction whose next statement, a read, its cancellation stops, after an INSERT ...
    /// RETURNING not read to its end (SQLite counts its rows as changed only as the next statement resets it): the
    /// transaction stays as it was, with the insert (an earlier fix, which looked at that count, rolled it back).
    /// </summary>
    [Test]
    public async Task A_read_stopped_after_an_insert_returning_leaves_the_callers_transaction_as_it_was()
    {
        await using var connection = await Open();
        using var cancellation = new CancellationTokenSource();
        connection.InnerConnection.CreateFunction("cancel_now", () =>
        {
            cancellation.Cancel();
            return 0L;
        });
        await using var transaction = await connection.BeginTransactionAsync();
        ConnectionTests.Exec(connection, "INSERT INTO w VALUES (100)");
        await using var batch = connection.CreateCommand();
        batch.Transaction = transaction;
        batch.CommandText = "INSERT INTO w VALUES (200) RETURNING x; SELECT count(cancel_now()) FROM t, t AS u, t AS v, t AS x";
        await using (var reader = await batch.ExecuteReaderAsync())
        {
            reader.Read().ShouldBeTrue();

            await Should.ThrowAsync<OperationCanceledException>(() => reader.NextResultAsync(cancellation.Token));
        }

        await transaction.CommitAsync();
        PoolTests.Scalar(Folder.ConnectionString(), "SELECT group_concat(x) FROM w").ShouldBe("100,200");
    }

    /// <summary>
    /// As above for a write a reader's NextResultAsync runs in the caller's transaction: before, the reader closed with
    /// the error, nothing was noted for the transaction, and its Commit kept the row in 30 of 300 (a review's finding).
    /// Each transaction's insert cancels its own token. In a transaction begun as SQL, which has no transaction object
    /// to refuse its commit, the reader's closing rolls it back, as SQLite's interrupt of a write does: before, the
    /// COMMIT sent next kept the row, 300 of 300 (a review's finding).
    /// </summary>
    [Test]
    public async Task A_cancelled_write_of_a_readers_next_statement_cannot_be_committed([Values] bool beganAsSql)
    {
        await using var connection = await Open();
        CancellationTokenSource? cancellation = null;
        connection.InnerConnection.CreateFunction("cancel_now", (long i) =>
        {
            cancellation!.Cancel();
            return i;
        });
        await using var batch = connection.CreateCommand();
        batch.CommandText = "SELECT 1; INSERT INTO w VALUES (cancel_now($i))";
        var parameter = batch.CreateParameter();
        parameter.ParameterName = "$i";
        batch.Parameters.Add(parameter);
        for (var i = 0L; i < 300; i++)
        {
            parameter.Value = i;
            await using var transaction = beganAsSql ? null : await connection.BeginTransactionAsync();
            if (beganAsSql)
            {
                ConnectionTests.Exec(connection, "BEGIN IMMEDIATE");
            }

            batch.Transaction = transaction;
            using (cancellation = new CancellationTokenSource())
            {
                await using var reader = await batch.ExecuteReaderAsync();

                await Should.ThrowAsync<OperationCanceledException>(() => reader.NextResultAsync(cancellation.Token));
            }

            Should.Throw<Exception>(() =>
            {
                if (beganAsSql)
                {
                    ConnectionTests.Exec(connection, "COMMIT");
                }
                else
                {
                    transaction!.Commit();
                }
            });
        }

        PoolTests.Scalar(Folder.ConnectionString(), "SELECT count(*) FROM w").ShouldBe(0L);
    }

    /// <summary>
    /// A writing batch of the caller's transaction stopped in its first statement, a read, before it wrote: SQLite
    /// keeps the transaction (an interrupted read rolls nothing back), and so does the library, with the rows written
    /// before (a review's finding on the fix above, which rolled back on any interrupt of a writing command).
    /// </summary>
    [Test]
    public async Task A_writing_batch_stopped_before_it_wrote_leaves_the_callers_transaction_as_it_was([Values] bool async)
    {
        await using var connection = await Open();
        await using var batch = connection.CreateCommand();
        using var cancellation = new CancellationTokenSource();
        connection.InnerConnection.CreateFunction("cancel_now", () =>
        {
            if (_calls++ == 0)
            {
                if (async)
                {
                    cancellation.Cancel();
                }
                else
                {
                    batch.Cancel();
                }
            }

            return 0L;
        });
        await using var transaction = await connection.BeginTransactionAsync();
        ConnectionTests.Exec(connection, "INSERT INTO w VALUES (100)");
        batch.Transaction = transaction;
        batch.CommandText = "SELECT count(cancel_now()) FROM t, t AS u, t AS v, t AS x; INSERT INTO w VALUES (200)";

        var error = await Should.ThrowAsync<Exception>(async () => _ = async ? await batch.ExecuteNonQueryAsync(cancellation.Token) : batch.ExecuteNonQuery());

        error.ShouldBeAssignableTo(async ? typeof(OperationCanceledException) : typeof(SqliteException));
        await transaction.CommitAsync();
        PoolTests.Scalar(Folder.ConnectionString(), "SELECT group_concat(x) FROM w").ShouldBe("100");
    }

    /// <summary>
    /// A batch that must run outside the library's transactions, whose token is cancelled after the call's first look
    /// at it and before the batch begins (here as the library prepares the batch's statements to classify them, which
    /// calls SQLite's authorizer): the batch does not run. Before, it ran to its end and returned as if not cancelled (a
    /// review's finding: the progress handler, which stopped it before, no longer stops such a batch).
    /// </summary>
    [Test]
    public async Task A_batch_that_must_run_outside_a_transaction_cancelled_before_it_begins_does_not_run()
    {
        await using var connection = await Open();
        using var cancellation = new CancellationTokenSource();
        SQLitePCL.raw.sqlite3_set_authorizer(connection.InnerConnection.Handle, (object _, int _, string _, string _, string _, string _) =>
        {
            cancellation.Cancel();
            return SQLitePCL.raw.SQLITE_OK;
        }, null);
        await using var batch = connection.CreateCommand();
        batch.CommandText = "BEGIN; INSERT INTO w VALUES (1); COMMIT";
        try
        {
            await Should.ThrowAsync<OperationCanceledException>(() => batch.ExecuteNonQueryAsync(cancellation.Token));
        }
        finally
        {
            SQLitePCL.raw.sqlite3_set_authorizer(connection.InnerConnection.Handle, (SQLitePCL.delegate_authorizer?)null, null);
        }

        PoolTests.Scalar(Folder.ConnectionString(), "SELECT count(*) FROM w").ShouldBe(0L);
    }

    /// <summary>
    /// A token cancelled after the call's first look at it and just before an attempt's statement begins (here by the
    /// retry strategy itself, as a cancellation may land as a write passes the gate or a retry's delay ends): the
    /// interrupt came while no statement ran, and a statement of fewer than 100 steps ends before the progress handler
    /// looks, so the attempt looks at the token first. Without that look the write was applied, the call cancelled (a hunt).
    /// </summary>
    [Test]
    public async Task A_token_cancelled_just_before_an_attempt_begins_stops_it_before_its_statement([Values] bool write)
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE w (x)");
        using var cancellation = new CancellationTokenSource();
        var strategy = new OneExecutionAtATimeTests.BeforeFirstAttempt(cancellation.Cancel);
        using var dataSource = new SaverDataSourceBuilder(connectionString).UseRetryStrategy(strategy).Build();
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = write ? "INSERT INTO w VALUES (1)" : "SELECT count(*) FROM w";
        strategy.Armed = true;

        await Should.ThrowAsync<OperationCanceledException>(() => command.ExecuteScalarAsync(cancellation.Token));

        PoolTests.Scalar(connectionString, "SELECT count(*) FROM w").ShouldBe(0L);
    }

    /// <summary>A first statement that calls cancel_now once and ends, then one that calls it for each of 81 rows.</summary>
    private static string Batch(bool write) => write
        ? "INSERT INTO w VALUES (cancel_now()); INSERT INTO w SELECT cancel_now() FROM t, t AS u, t AS v, t AS x"
        : "SELECT cancel_now(); SELECT count(cancel_now()) FROM t, t AS u, t AS v, t AS x";

    /// <summary>
    /// A statement of a writing command in the caller's transaction that fails because a SQL function in it let the
    /// error of a nested command through, one that the progress handler stopped on that command's Cancel(): the
    /// handler's note of that stop was taken for the outer statement's own, and the transaction was rolled back (a
    /// review's finding: new for a Read, older for NextResult; ExecuteReader's first step kept it before too). Now a call
    /// that looks at the note clears it as it ends. The nested command runs as the outer query counts past 500 (in
    /// ExecuteReader, or in NextResult after a first result) or 1,500 (in the Read after the row of 1,000).
    /// </summary>
    [Test]
    public async Task A_statement_failing_with_a_nested_commands_interrupt_leaves_the_callers_transaction(
        [Values("ExecuteReader", "NextResult", "Read")] string step)
    {
        await using var connection = await Open();
        await using var nested = connection.CreateCommand();
        connection.InnerConnection.CreateFunction("cancel_nested", () =>
        {
            if (_calls++ == 0)
            {
                nested.Cancel();
            }

            return 0L;
        });
        nested.CommandText = "SELECT count(cancel_nested()) FROM t, t AS u, t AS v";
        var at = step == "Read" ? 1500 : 500;
        connection.InnerConnection.CreateFunction("run_nested", (long x) =>
        {
            if (x == at)
            {
                nested.ExecuteScalar(); // its SQLITE_INTERRUPT fails this function, and so the outer statement
            }

            return x;
        });
        await using var transaction = await connection.BeginTransactionAsync();
        ConnectionTests.Exec(connection, "INSERT INTO w VALUES (100)");
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        var query = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) SELECT x FROM c WHERE run_nested(x) % 1000 = 0";
        command.CommandText = "INSERT INTO w VALUES (200); " + (step == "NextResult" ? "SELECT 1; " : "") + query;

        Microsoft.Data.Sqlite.SqliteException error;
        if (step == "ExecuteReader")
        {
            error = await Should.ThrowAsync<Microsoft.Data.Sqlite.SqliteException>(() => command.ExecuteReaderAsync());
        }
        else
        {
            await using var reader = await command.ExecuteReaderAsync();
            reader.Read().ShouldBeTrue();
            error = step == "NextResult"
                ? Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => reader.NextResult())
                : Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => reader.Read());
        }

        error.SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT, "the function passes the nested command's code on");
        await transaction.CommitAsync();
        PoolTests.Scalar(Folder.ConnectionString(), "SELECT group_concat(x) FROM w").ShouldBe("100,200");
    }

    /// <summary>
    /// A writing batch run by a reader outside a transaction (its write left open for the reader) whose Read of an
    /// <c>INSERT ... RETURNING</c> fails after SQLite rolled back the library's transaction (here a Cancel() interrupts
    /// the statement as its rows are read, over and over from another thread): closing the reader ran the statements
    /// not reached in autocommit, so that the batch's last insert was kept without its first (found by the chaos probe:
    /// one row of a two-row group kept). Now such a reader closes without running them.
    /// </summary>
    [Test]
    public async Task A_write_reader_whose_read_failed_keeps_nothing_of_its_batch()
    {
        await using var connection = await Open();
        ConnectionTests.Exec(connection, "CREATE TABLE v (y); CREATE TABLE src (x); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300) INSERT INTO src SELECT x FROM c");
        await using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO w SELECT x FROM src RETURNING x; INSERT INTO v VALUES (1)";
        var failed = 0;
        var partial = 0;
        for (var run = 0; run < 100; run++)
        {
            var cancelling = 1;
            var cancels = 0;
            await using (var reader = await command.ExecuteReaderAsync())
            {
                var canceller = new Thread(() =>
                {
                    while (Volatile.Read(ref cancelling) == 1)
                    {
                        command.Cancel();
                        Interlocked.Increment(ref cancels);
                    }
                });
                canceller.Start();
                Wait.Until(() => Volatile.Read(ref cancels) > 0);
                try
                {
                    while (reader.Read())
                    {
                    }
                }
                catch (Microsoft.Data.Sqlite.SqliteException error) when (error.SqliteErrorCode == SQLitePCL.raw.SQLITE_INTERRUPT)
                {
                    failed++;
                }
                finally
                {
                    Volatile.Write(ref cancelling, 0);
                    canceller.Join();
                }
            }

            var written = (long)ConnectionTests.Scalar(connection, "SELECT count(*) FROM w")!;
            var last = (long)ConnectionTests.Scalar(connection, "SELECT count(*) FROM v")!;
            partial += (written == 0) == (last == 0) ? 0 : 1;
            ConnectionTests.Exec(connection, "DELETE FROM w; DELETE FROM v");
        }

        failed.ShouldBeGreaterThan(0, "some Reads were interrupted");
        partial.ShouldBe(0, $"of {failed} interrupted");
    }

    private async Task<SaverDbConnection> Open()
    {
        _calls = 0;
        var connection = new SaverDbConnection(Folder.ConnectionString());
        await connection.OpenAsync();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3); CREATE TABLE w (x)");
        return connection;
    }
}
