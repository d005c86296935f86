using System.Data.Common;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>
/// A call whose token is cancelled, or whose command's Cancel() is called, while another reader is open on its
/// connection. SQLite keeps an interrupt pending while any statement of the connection is active: before, the open
/// reader's next Read, and every statement the connection began until that reader closed, failed with a bare
/// SQLITE_INTERRUPT. Now the connection's progress handler stops the call's statement then, which ends that statement
/// only. Here a function of the statement cancels as the statement runs, and the aggregate over 27 rows is stopped
/// before its end.
/// </summary>
public class CancellationBesideOpenReaderTests : DatabaseTest
{
    private const string CountingQuery = "SELECT count(cancel_now()) FROM t, t AS u, t AS v";

    private int _calls; // of cancel_now

    [Test]
    public async Task A_query_whose_token_is_cancelled_while_another_reader_is_open_is_stopped_and_that_reader_reads_on()
    {
        await using var connection = await Open();
        using var cancellation = CancelledBy(connection);
        await using var other = connection.CreateCommand();
        await using var reader = OpenReader(other);
        await using var query = connection.CreateCommand();
        query.CommandText = CountingQuery;

        await Should.ThrowAsync<OperationCanceledException>(() => query.ExecuteScalarAsync(cancellation.Token));

        _calls.ShouldBeLessThan(27, "the query was stopped before its end (the progress handler looks every 100 steps)");
        ConnectionTests.Scalar(connection, "SELECT 5").ShouldBe(5L);
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(2L);
    }

    /// <summary>
    /// <see cref="DbCommand.Cancel"/> of a synchronous call beside an open reader: the connection's progress handler
    /// stops its statement on the call's token, and Cancel does not interrupt SQLite. Also after a progress handler of
    /// the renter's own was set through InnerConnection (one that never stops anything) over the library's, which the
    /// connection's first execution put in place: the next execution puts the library's back.
    /// </summary>
    [Test]
    public async Task Cancel_while_another_reader_is_open_stops_the_query_and_that_reader_reads_on([Values] bool renterHandlerSet)
    {
        await using var connection = await Open();
        await using var other = connection.CreateCommand();
        await using var reader = OpenReader(other);
        if (renterHandlerSet)
        {
            SQLitePCL.raw.sqlite3_progress_handler(connection.InnerConnection.Handle, 1, static _ => 0, null);
        }

        await using var query = connection.CreateCommand();
        CancelsOnFirstCall(connection, query);
        query.CommandText = CountingQuery;

        var error = Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => query.ExecuteScalar());

        error.SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT);
        _calls.ShouldBeLessThan(27, "the query was stopped before its end");
        ConnectionTests.Scalar(connection, "SELECT 5").ShouldBe(5L);
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(2L);
    }

    /// <summary>
    /// The library's own BEGIN, COMMIT and ROLLBACK, run while the progress handler stops on a cancelled token (here
    /// transactions that a function of the call's statement begins and ends after cancelling it), are not stopped by
    /// it: SQLite counts a kept statement's steps over its runs and calls the handler as the count passes each
    /// hundred, also as the statement returns, after a BEGIN has begun its transaction, which then stayed open while
    /// the library reported the BEGIN failed (found by a chaos probe: rows acknowledged, then rolled back with it).
    /// </summary>
    [Test]
    public async Task Transactions_a_cancelled_call_runs_begin_and_end_as_they_should([Values] bool commit)
    {
        await using var connection = await Open();
        await using var other = connection.CreateCommand();
        await using var reader = OpenReader(other); // no interrupt, which SQLite would keep pending for these statements
        var failure = await RunInCancelledQuery(connection, () => BeginAndEnd(connection, commit, times: 100));

        failure.ShouldBeNull();
        _calls.ShouldBeLessThan(82, "the query was stopped before its end");
    }

    /// <summary>
    /// Runs <paramref name="work"/> in a function of a query over 81 rows whose token the function cancels first, on
    /// its first call: returns what the work threw, if anything, once the query has thrown its cancellation.
    /// </summary>
    private async Task<Exception?> RunInCancelledQuery(SaverDbConnection connection, Action work)
    {
        using var cancellation = new CancellationTokenSource();
        Exception? failure = null;
        connection.InnerConnection.CreateFunction("cancel_then_work", () =>
        {
            if (_calls++ == 0)
            {
                cancellation.Cancel();
                try
                {
                    work();
                }
                catch (Exception exception)
                {
                    failure = exception;
                }
            }

            return 0L;
        });
        await using var query = connection.CreateCommand();
        query.CommandText = "SELECT count(cancel_then_work()) FROM t, t AS u, t AS v, t AS x";

        await Should.ThrowAsync<OperationCanceledException>(() => query.ExecuteScalarAsync(cancellation.Token));

        return failure;
    }

    private static void BeginAndEnd(SaverDbConnection connection, bool commit, int times)
    {
        for (var i = 0; i < times; i++)
        {
            using var transaction = connection.BeginTransaction();
            if (commit)
            {
                transaction.Commit();
            }
            else
            {
                transaction.Rollback();
            }
        }
    }

    /// <summary>
    /// A batch that must run outside the library's transactions (here one that begins and ends its own) is not stopped
    /// by the progress handler, which SQLite also calls as a statement returns: a BEGIN it stopped then would report
    /// failure after beginning its transaction, and the next run's BEGIN would fail inside it. Beside an open reader,
    /// where SQLite's interrupt would be kept pending, nothing stops it, and it runs to its end each time.
    /// </summary>
    [Test]
    public async Task A_batch_that_begins_and_ends_its_own_transaction_is_not_stopped_halfway()
    {
        await using var connection = await Open();
        CancellationTokenSource? cancellation = null;
        connection.InnerConnection.CreateFunction("cancel_now", () =>
        {
            _calls++;
            cancellation!.Cancel();
            return 0L;
        });
        await using var other = connection.CreateCommand();
        await using var reader = OpenReader(other);
        await using var batch = connection.CreateCommand();
        batch.CommandText = "SELECT cancel_now(); BEGIN; INSERT INTO t VALUES (4); ROLLBACK";
        for (var run = 0; run < 100; run++)
        {
            using (cancellation = new CancellationTokenSource())
            {
                await batch.ExecuteNonQueryAsync(cancellation.Token);
            }
        }

        _calls.ShouldBe(100);
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(3L);
        reader.Read().ShouldBeTrue();
    }

    /// <summary>
    /// Commands that begin and commit a transaction as SQL, run by a function of a call whose token is cancelled: not
    /// stopped by the progress handler on the outer call's token either (a review's finding: a BEGIN so stopped
    /// reported failure with its transaction begun, and a COMMIT after committing).
    /// </summary>
    [Test]
    public async Task Commands_that_begin_and_commit_inside_a_cancelled_call_are_not_stopped()
    {
        await using var connection = await Open();
        ConnectionTests.Exec(connection, "CREATE TABLE w (x)");
        await using var other = connection.CreateCommand();
        await using var reader = OpenReader(other);
        var failure = await RunInCancelledQuery(connection, () =>
        {
            for (var i = 0; i < 100; i++)
            {
                ConnectionTests.Exec(connection, "BEGIN");
                ConnectionTests.Exec(connection, "INSERT INTO w VALUES (1)");
                ConnectionTests.Exec(connection, "COMMIT");
            }
        });

        failure.ShouldBeNull();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM w").ShouldBe(100L);
    }

    /// <summary>
    /// A reader's next statement of the caller's transaction that fails for its own reason (a NOT NULL constraint)
    /// after a call nested in it was stopped by the progress handler: only that statement is undone, as SQLite undoes
    /// it, and the transaction goes on (a review's finding: the handler's note of the nested stop rolled it back).
    /// </summary>
    [Test]
    public async Task A_readers_failing_statement_after_a_stopped_nested_call_leaves_the_transaction()
    {
        await using var connection = await Open();
        ConnectionTests.Exec(connection, "CREATE TABLE w (x NOT NULL)");
        await using var other = connection.CreateCommand();
        await using var reader = OpenReader(other);
        await using var nested = connection.CreateCommand();
        CancelsOnFirstCall(connection, nested);
        nested.CommandText = CountingQuery;
        connection.InnerConnection.CreateFunction("stopped_nested", () =>
        {
            Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => nested.ExecuteScalar()).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT);
            return (long?)null;
        });
        await using var transaction = await connection.BeginTransactionAsync();
        ConnectionTests.Exec(connection, "INSERT INTO w VALUES (100)");
        await using var batch = connection.CreateCommand();
        batch.Transaction = transaction;
        batch.CommandText = "SELECT 1; INSERT INTO w SELECT stopped_nested()";
        await using (var batchReader = await batch.ExecuteReaderAsync())
        {
            Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => batchReader.NextResult()).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        }

        await transaction.CommitAsync();
        ConnectionTests.Scalar(connection, "SELECT group_concat(x) FROM w").ShouldBe("100");
    }

    /// <summary>
    /// A call nested in the statement (a function SQLite runs executes a command on the connection) has the progress
    /// handler stop on its own token and, as it ends, on the outer call's again: before, it took the handler away, and
    /// the outer query ran to its end on a cancelled token (a review's finding).
    /// </summary>
    [Test]
    public async Task A_call_nested_in_a_statement_leaves_the_outer_calls_cancellation_in_place()
    {
        await using var connection = await Open();
        await using var other = connection.CreateCommand();
        await using var reader = OpenReader(other);
        using var outer = new CancellationTokenSource();
        using var inner = new CancellationTokenSource();
        connection.InnerConnection.CreateFunction("nested", () =>
        {
            if (++_calls == 1)
            {
                using var nested = connection.CreateCommand();
                nested.CommandText = "SELECT 1";
                nested.ExecuteScalarAsync(inner.Token).GetAwaiter().GetResult();
            }
            else if (_calls == 5)
            {
                outer.Cancel();
            }

            return 0L;
        });
        await using var query = connection.CreateCommand();
        query.CommandText = "SELECT count(nested()) FROM t, t AS u, t AS v, t AS w";

        await Should.ThrowAsync<OperationCanceledException>(() => query.ExecuteScalarAsync(outer.Token));

        _calls.ShouldBeLessThan(81, "the query was stopped before its end");
        reader.Read().ShouldBeTrue();
    }

    /// <summary>
    /// A call nested in another call's statement (a function SQLite runs in an ExecuteScalar, which opens no reader the
    /// renter sees) is stopped by its cancellation, and the outer statement runs on: that statement is active as
    /// another reader's is, and SQLite would keep an interrupt pending for it. Before, the nested call counted as alone
    /// on the connection, interrupted SQLite, and the outer call failed with a bare SQLITE_INTERRUPT (a review's finding).
    /// </summary>
    [Test]
    public async Task A_cancelled_call_nested_in_another_calls_statement_leaves_that_statement_running([Values] bool async)
    {
        await using var connection = await Open();
        await using var nested = connection.CreateCommand();
        nested.CommandText = CountingQuery;
        using var cancellation = async ? CancelledBy(connection) : null;
        if (!async)
        {
            CancelsOnFirstCall(connection, nested);
        }

        var runs = 0;
        connection.InnerConnection.CreateFunction("run_nested", () =>
        {
            if (runs++ == 0)
            {
                if (async)
                {
                    Should.Throw<OperationCanceledException>(() => nested.ExecuteScalarAsync(cancellation!.Token).GetAwaiter().GetResult());
                }
                else
                {
                    Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => nested.ExecuteScalar()).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT);
                }

                _calls.ShouldBeLessThan(27, "the nested query was stopped before its end");
            }

            return 1L;
        });
        await using var outer = connection.CreateCommand();
        outer.CommandText = "SELECT sum(run_nested()) FROM t, t AS u";

        (async ? await outer.ExecuteScalarAsync() : outer.ExecuteScalar()).ShouldBe(9L);

        runs.ShouldBe(9);
        ConnectionTests.Scalar(connection, "SELECT 5").ShouldBe(5L);
    }

    /// <summary>
    /// <see cref="DbCommand.Cancel"/> of a reader's next statement (NextResult, or NextResultAsync with a token never
    /// cancelled) beside another open reader: the progress handler stops it on the step's call, and Cancel does not
    /// interrupt SQLite, whose interrupt stayed pending and failed the other reader's next Read (found by the chaos
    /// probe).
    /// </summary>
    [Test]
    public async Task Cancel_stops_a_readers_next_statement_beside_another_open_reader_which_reads_on([Values] bool async)
    {
        await using var connection = await Open();
        await using var other = connection.CreateCommand();
        await using var otherReader = OpenReader(other);
        await using var command = connection.CreateCommand();
        CancelsOnFirstCall(connection, command);
        command.CommandText = "SELECT 1; " + CountingQuery;
        await using var reader = await command.ExecuteReaderAsync();
        using var unused = new CancellationTokenSource();

        var error = async
            ? await Should.ThrowAsync<Microsoft.Data.Sqlite.SqliteException>(() => reader.NextResultAsync(unused.Token))
            : Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => reader.NextResult());

        _calls.ShouldBeLessThan(27, "the statement was stopped before its end");
        ShouldBeStoppedWithNothingPending(error, otherReader, connection);
    }

    /// <summary>
    /// As above for a reader's Read: Cancel during a Read that runs long (its next row is the thousandth value counted)
    /// beside another open reader stops the query, and the other reader reads on.
    /// </summary>
    [Test]
    public async Task Cancel_stops_a_readers_read_beside_another_open_reader_which_reads_on()
    {
        await using var connection = await Open();
        await using var other = connection.CreateCommand();
        await using var otherReader = OpenReader(other);
        await using var command = connection.CreateCommand();
        connection.InnerConnection.CreateFunction("cancel_at", (long x) =>
        {
            if (x == 1500)
            {
                command.Cancel(); // in the Read that moves from the row of 1000 to that of 2000
            }

            return x;
        });
        command.CommandText = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) SELECT x FROM c WHERE cancel_at(x) % 1000 = 0";
        await using var reader = await command.ExecuteReaderAsync();
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(1000L);

        var error = Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => reader.Read());

        ShouldBeStoppedWithNothingPending(error, otherReader, connection);
    }

    /// <summary>
    /// A Read of the query of a writing batch of the caller's transaction that Cancel stops beside another open reader
    /// keeps the transaction, the query being a read, also beside an <c>INSERT ... RETURNING</c> before or after it.
    /// Before, the transaction was rolled back, as it is for the last Read of an <c>INSERT ... RETURNING</c> (a review's
    /// finding; alone, SQLite's interrupt kept it, as it does now). Closing the reader runs the statements not reached.
    /// </summary>
    [Test]
    public async Task A_cancelled_read_of_a_writing_batchs_query_keeps_the_callers_transaction(
        [Values("INSERT INTO w VALUES (200); {0}", "INSERT INTO w VALUES (200) RETURNING x; {0}", "{0}; INSERT INTO w VALUES (200) RETURNING x")] string batch)
    {
        await using var connection = await Open();
        ConnectionTests.Exec(connection, "CREATE TABLE w (x)");
        await using var other = connection.CreateCommand();
        await using var otherReader = OpenReader(other);
        await using var transaction = await connection.BeginTransactionAsync();
        ConnectionTests.Exec(connection, "INSERT INTO w VALUES (100)");
        await using var command = connection.CreateCommand();
        connection.InnerConnection.CreateFunction("cancel_at", (long x) =>
        {
            if (x == 1500)
            {
                command.Cancel(); // in the Read that moves from the row of 1000 to that of 2000
            }

            return x;
        });
        command.Transaction = transaction;
        command.CommandText = string.Format(
            System.Globalization.CultureInfo.InvariantCulture,
            batch,
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) SELECT x FROM c WHERE cancel_at(x) % 1000 = 0");
        await using (var reader = await command.ExecuteReaderAsync())
        {
            if (batch.Contains("RETURNING x;", StringComparison.Ordinal))
            {
                reader.Read().ShouldBeTrue(); // the row of the insert
                reader.NextResult().ShouldBeTrue();
            }

            reader.Read().ShouldBeTrue();

            var error = Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => reader.Read());

            ShouldBeStoppedWithNothingPending(error, otherReader, connection);
        }

        await transaction.CommitAsync();
        ConnectionTests.Scalar(connection, "SELECT group_concat(x) FROM w").ShouldBe("100,200");
    }

    /// <summary>
    /// The Cancel of a command run inside a reader's Read (by a function of its query), beside another open reader,
    /// stops that command only: the Read's step reads on. The renter's calls running at once share their call's token
    /// source, which Cancel cancels; the step stopped on it too (a review's finding: stopped after 499 of 2,000 rows).
    /// </summary>
    [Test]
    public async Task Cancel_of_a_command_run_inside_a_readers_read_leaves_the_read_running()
    {
        await using var connection = await Open();
        await using var other = connection.CreateCommand();
        await using var otherReader = OpenReader(other);
        await using var nested = connection.CreateCommand();
        CancelsOnFirstCall(connection, nested);
        nested.CommandText = CountingQuery;
        connection.InnerConnection.CreateFunction("run_nested", (long x) =>
        {
            if (x == 500)
            {
                Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => nested.ExecuteScalar()).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT);
            }

            return x;
        });
        await using var command = connection.CreateCommand();
        command.CommandText = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000) SELECT run_nested(x) FROM c";
        await using var reader = await command.ExecuteReaderAsync();
        var rows = 0L;

        while (reader.Read())
        {
            rows++;
        }

        rows.ShouldBe(2000L);
        _calls.ShouldBeLessThan(27, "the nested query was stopped before its end");
        otherReader.Read().ShouldBeTrue();
    }

    /// <summary>
    /// The last Read of an <c>INSERT ... RETURNING</c> of the caller's transaction, beside another open reader, while
    /// another thread calls Cancel() over and over: the progress handler may stop the statement as it returns, after its
    /// rows were inserted, and SQLite keeps the transaction with them. A Read that failed so now ends the transaction,
    /// as a NextResult stopped so does; before, the commit kept the rows reported interrupted (a review's finding: 3 of
    /// 400 with a transaction object, 8 to 14 of 400 with BEGIN sent as SQL). For each count of rows from 1 to 400
    /// (the handler looks every 100 of SQLite's steps, so that some counts end as it looks), in passes until a Cancel
    /// landed in some Read, at most 10 (one pass was enough unloaded; on a loaded machine none landed in 400 at times).
    /// </summary>
    [Test]
    public async Task A_returning_insert_whose_read_cancel_stopped_keeps_nothing([Values] bool beganAsSql)
    {
        await using var connection = await Open();
        ConnectionTests.Exec(connection, "CREATE TABLE w (x); CREATE TABLE src (x); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 400) INSERT INTO src SELECT x FROM c");
        await using var other = connection.CreateCommand();
        await using var otherReader = OpenReader(other);
        await using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO w SELECT x FROM src WHERE x <= $n RETURNING x";
        var n = insert.CreateParameter();
        n.ParameterName = "$n";
        insert.Parameters.Add(n);
        var interrupted = 0;
        var keptAfterInterrupt = 0;
        for (var pass = 0; pass < 10 && interrupted == 0; pass++) // another pass when no Cancel landed in a Read (a loaded machine)
        {
            for (var rows = 1L; rows <= 400; rows++)
            {
                n.Value = rows;
                var transaction = beganAsSql ? null : await connection.BeginTransactionAsync();
                if (beganAsSql)
                {
                    ConnectionTests.Exec(connection, "BEGIN");
                }

                insert.Transaction = transaction;
                var stopped = false;
                await using (var reader = await insert.ExecuteReaderAsync())
                {
                    for (var read = 1; read < rows; read++)
                    {
                        reader.Read().ShouldBeTrue();
                    }

                    var cancelling = 1;
                    var cancels = 0;
                    var canceller = new Thread(() =>
                    {
                        while (Volatile.Read(ref cancelling) == 1)
                        {
                            insert.Cancel();
                            Interlocked.Increment(ref cancels);
                        }
                    });
                    canceller.Start();
                    Wait.Until(() => Volatile.Read(ref cancels) > 0); // cancelling over and over as the last Reads run
                    try
                    {
                        while (reader.Read())
                        {
                        }
                    }
                    catch (Microsoft.Data.Sqlite.SqliteException error) when (error.SqliteErrorCode == SQLitePCL.raw.SQLITE_INTERRUPT)
                    {
                        stopped = true;
                    }
                    finally
                    {
                        Volatile.Write(ref cancelling, 0);
                        canceller.Join();
                    }
                }

                try
                {
                    if (beganAsSql)
                    {
                        ConnectionTests.Exec(connection, "COMMIT");
                    }
                    else
                    {
                        await transaction!.CommitAsync();
                    }
                }
                catch (Exception)
                {
                    // SQLite ended the transaction (nothing to commit), or the transaction object refuses its commit.
                }

                transaction?.Dispose();

                var kept = (long)ConnectionTests.Scalar(connection, "SELECT count(*) FROM w")!;
                interrupted += stopped ? 1 : 0;
                keptAfterInterrupt += stopped && kept > 0 ? 1 : 0;
                ConnectionTests.Exec(connection, "DELETE FROM w");
            }
        }

        interrupted.ShouldBeGreaterThan(0, "some Reads were stopped (13 to 16 of 400 in one pass in runs of mine)");
        keptAfterInterrupt.ShouldBe(0, $"of {interrupted} interrupted");
        otherReader.Read().ShouldBeTrue();
    }

    /// <summary>
    /// Cancel() during a reader's closing beside another open reader: closing runs the statements not reached, and the
    /// progress handler stops the one running (closing ignores its error, as it ignores theirs); the other reader reads
    /// on. Before, Cancel interrupted SQLite, which kept the interrupt pending for the other reader: its next Read, and
    /// every statement of the connection until it closed, failed with SQLITE_INTERRUPT.
    /// </summary>
    [Test]
    public async Task Cancel_stops_a_readers_closing_beside_another_open_reader_which_reads_on()
    {
        await using var connection = await Open();
        await using var other = connection.CreateCommand();
        await using var otherReader = OpenReader(other);
        await using var command = connection.CreateCommand();
        var reader = await ReaderOnFirstRow(connection, command, "SELECT 1; " + CountingQuery);

        reader.Close(); // runs the counting query, whose first row cancels

        _calls.ShouldBeLessThan(27, "the statement was stopped before its end");
        otherReader.Read().ShouldBeTrue();
        otherReader.GetInt64(0).ShouldBe(2L);
        ConnectionTests.Scalar(connection, "SELECT 5").ShouldBe(5L);
    }

    /// <summary>
    /// As above for a writing batch of the caller's transaction whose last insert Cancel() stops as the reader closes:
    /// the batch is not whole, so the transaction object refuses its commit, and a transaction begun as SQL ends (the
    /// reader's Close says so, and the <c>COMMIT</c> fails, as none is open), as when SQLite's interrupt stops the
    /// insert; nothing is kept, and the other reader reads on.
    /// </summary>
    [Test]
    public async Task A_writing_batch_whose_closing_cancel_stopped_keeps_nothing_of_the_callers_transaction([Values] bool beganAsSql)
    {
        await using var connection = await Open();
        ConnectionTests.Exec(connection, "CREATE TABLE w (x)");
        await using var other = connection.CreateCommand();
        await using var otherReader = OpenReader(other);
        var transaction = beganAsSql ? null : await connection.BeginTransactionAsync();
        if (beganAsSql)
        {
            ConnectionTests.Exec(connection, "BEGIN");
        }

        ConnectionTests.Exec(connection, "INSERT INTO w VALUES (100)");
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        var reader = await ReaderOnFirstRow(connection, command, "SELECT 1; INSERT INTO w VALUES (200); INSERT INTO w SELECT count(cancel_now()) FROM t, t AS u, t AS v");

        if (beganAsSql)
        {
            // Runs the inserts: the last one cancels.
            Should.Throw<Microsoft.Data.Sqlite.SqliteException>(reader.Close).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT);
        }
        else
        {
            reader.Close(); // the error is the transaction's
        }

        _calls.ShouldBeLessThan(27, "the insert was stopped before its end");
        otherReader.Read().ShouldBeTrue();
        otherReader.GetInt64(0).ShouldBe(2L);
        if (beganAsSql)
        {
            Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => ConnectionTests.Exec(connection, "COMMIT")).Message.ShouldContain("no transaction is active");
        }
        else
        {
            Should.Throw<Exception>(() => transaction!.Commit());
            await transaction!.DisposeAsync();
        }

        ConnectionTests.Scalar(connection, "SELECT count(*) FROM w").ShouldBe(0L);
    }

    /// <summary>
    /// A write of the caller's transaction that Cancel() stops as its reader closes makes SQLite roll the transaction
    /// back, and closing ignores the error, as Microsoft.Data.Sqlite's does: the next command, and the commit, are
    /// refused as SQLite ended the transaction, and now say why, the interrupt their inner exception (before, they did
    /// not name it: the chaos probe's seed 1919, a unit of work failed without a word of its Cancel).
    /// </summary>
    [Test]
    public async Task A_command_after_a_closing_whose_stopped_write_ended_the_transaction_names_the_interrupt([Values] bool besideAnotherReader)
    {
        await using var connection = await Open();
        ConnectionTests.Exec(connection, "CREATE TABLE w (x)");
        await using var other = connection.CreateCommand();
        await using var otherReader = besideAnotherReader ? OpenReader(other) : null;
        await using var transaction = await connection.BeginTransactionAsync();
        await using var command = connection.CreateCommand();
        var reader = await ReaderOnFirstRow(connection, command, "SELECT 1; INSERT INTO w SELECT count(cancel_now()) FROM t, t AS u, t AS v");
        reader.Close(); // runs the insert, which cancels

        var refused = Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "INSERT INTO w VALUES (1)"));
        var commit = Should.Throw<InvalidOperationException>(transaction.Commit);

        foreach (var error in new[] { refused, commit })
        {
            error.Message.ShouldContain("SQLite has already ended");
            error.Message.ShouldContain("interrupted");
            error.InnerException.ShouldBeOfType<Microsoft.Data.Sqlite.SqliteException>().SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT);
        }

        await transaction.RollbackAsync();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM w").ShouldBe(0L);
    }

    /// <summary>
    /// A writing batch in a transaction begun as SQL whose closing Cancel() stops in a query after its first insert,
    /// beside another open reader or alone: SQLite keeps the transaction (a read was stopped), and closing ignored the
    /// error, so before, the <c>COMMIT</c> sent next kept the first insert without the second, and nothing said so.
    /// Now the reader's Close throws SQLITE_INTERRUPT, saying the batch is not whole, as an execution of the batch
    /// would. Beside another reader the progress handler stopped the statement, perhaps as it returned, after its
    /// changes, and the transaction is rolled back, as it is for an execution so stopped (the <c>COMMIT</c> fails);
    /// alone the interrupt stopped it, and the transaction is left open, as SQLite leaves it, for the caller to roll
    /// back (or commit what ran, knowingly).
    /// </summary>
    [Test]
    public async Task A_writing_batch_whose_closing_cancel_stopped_after_a_write_fails_the_close([Values] bool besideAnotherReader)
    {
        await using var connection = await Open();
        ConnectionTests.Exec(connection, "CREATE TABLE w (x)");
        await using var other = connection.CreateCommand();
        await using var otherReader = besideAnotherReader ? OpenReader(other) : null;
        ConnectionTests.Exec(connection, "BEGIN; INSERT INTO w VALUES (100)");
        await using var command = connection.CreateCommand();
        var reader = await ReaderOnFirstRow(connection, command, "SELECT 1; INSERT INTO w VALUES (200); " + CountingQuery + "; INSERT INTO w VALUES (300)");

        var error = Should.Throw<Microsoft.Data.Sqlite.SqliteException>(reader.Close); // runs the rest: the query cancels

        error.SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT);
        error.Message.ShouldContain("the batch is not whole");
        _calls.ShouldBeLessThan(27, "the query was stopped before its end");
        if (besideAnotherReader)
        {
            error.Message.ShouldContain("is rolled back, as the statement was stopped");
            Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => ConnectionTests.Exec(connection, "COMMIT")).Message.ShouldContain("no transaction is active");
            otherReader!.Read().ShouldBeTrue();
        }
        else
        {
            error.Message.ShouldContain("is still open");
            ConnectionTests.Scalar(connection, "SELECT group_concat(x) FROM w").ShouldBe("100,200");
            ConnectionTests.Exec(connection, "ROLLBACK");
        }

        ConnectionTests.Scalar(connection, "SELECT count(*) FROM w").ShouldBe(0L);
    }

    /// <summary>
    /// A Cancel() that lands as a reader of a writing batch in a transaction begun as SQL closes but stops nothing (the
    /// batch's last statement calls it and ends before the progress handler or an interrupt stops it) leaves the
    /// transaction as it is: the batch ran whole, and the <c>COMMIT</c> keeps it, as a transaction object commits
    /// (a review's finding: for a moment any such Cancel rolled the transaction back).
    /// </summary>
    [Test]
    public async Task A_cancel_in_a_closing_that_stops_nothing_keeps_the_transaction_begun_as_sql([Values] bool besideAnotherReader)
    {
        await using var connection = await Open();
        ConnectionTests.Exec(connection, "CREATE TABLE w (x)");
        await using var other = connection.CreateCommand();
        await using var otherReader = besideAnotherReader ? OpenReader(other) : null;
        ConnectionTests.Exec(connection, "BEGIN; INSERT INTO w VALUES (100)");
        await using var command = connection.CreateCommand();
        var reader = await ReaderOnFirstRow(connection, command, "SELECT 1; INSERT INTO w VALUES (200); SELECT cancel_now()");

        reader.Close(); // runs the rest: the last statement cancels as it ends

        _calls.ShouldBe(1);
        ConnectionTests.Exec(connection, "COMMIT");
        ConnectionTests.Scalar(connection, "SELECT group_concat(x) FROM w").ShouldBe("100,200");
        if (otherReader is not null)
        {
            otherReader.Read().ShouldBeTrue();
        }
    }

    /// <summary>
    /// As above for a reader of a write outside a transaction (an <c>INSERT ... RETURNING</c>, its write open for the
    /// reader): Cancel() stops the batch's next insert as the reader closes, its Close fails with SQLITE_INTERRUPT, and
    /// the write is rolled back whole; the other reader reads on.
    /// </summary>
    [Test]
    public async Task A_write_readers_closing_that_cancel_stopped_rolls_the_write_back()
    {
        await using var connection = await Open();
        ConnectionTests.Exec(connection, "CREATE TABLE w (x)");
        await using var other = connection.CreateCommand();
        await using var otherReader = OpenReader(other);
        await using var command = connection.CreateCommand();
        var reader = await ReaderOnFirstRow(connection, command, "INSERT INTO w VALUES (200) RETURNING x; INSERT INTO w SELECT count(cancel_now()) FROM t, t AS u, t AS v");

        var error = Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => reader.Close());

        _calls.ShouldBeLessThan(27, "the insert was stopped before its end");
        ShouldBeStoppedWithNothingPending(error, otherReader, connection);
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM w").ShouldBe(0L);
    }

    /// <summary>
    /// A reader of a batch run as written (here it holds a <c>SAVEPOINT</c>), beside another open reader: the progress
    /// handler may not stop its statements (it could report a <c>SAVEPOINT</c> or <c>RELEASE</c> failed after it took
    /// effect), and SQLite's interrupt would stay pending for the other reader, so <c>Cancel()</c> during its
    /// <c>NextResult</c> or its closing does not stop it, as it does not stop such a batch's execution: the query runs to
    /// its end, and the other reader reads on. Before, Cancel interrupted SQLite, and the other reader's next Read failed
    /// with SQLITE_INTERRUPT (a review's finding). So also in the caller's transaction (there the handler stopped it, and
    /// this passed every test, a hunt).
    /// </summary>
    [Test]
    public async Task Cancel_leaves_a_reader_of_a_batch_run_as_written_running_beside_another_open_reader([Values] bool closing, [Values] bool inTransaction)
    {
        await using var connection = await Open();
        await using var transaction = inTransaction ? await connection.BeginTransactionAsync() : null;
        await using var other = connection.CreateCommand();
        other.Transaction = transaction;
        await using var otherReader = OpenReader(other);
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        var reader = await ReaderOnFirstRow(connection, command, "SELECT 1; SAVEPOINT s; " + CountingQuery + "; RELEASE s");

        if (closing)
        {
            reader.Close(); // runs the rest
        }
        else
        {
            reader.NextResult().ShouldBeTrue(); // runs the SAVEPOINT and the query
            reader.Read().ShouldBeTrue();
            reader.GetInt64(0).ShouldBe(27L);
            reader.Close();
        }

        _calls.ShouldBe(27, "the query ran to its end");
        otherReader.Read().ShouldBeTrue();
        otherReader.GetInt64(0).ShouldBe(2L);
        ConnectionTests.Scalar(connection, "SELECT 5").ShouldBe(5L);
    }

    /// <summary>A reader's own next statement is stopped by its token, as before: the reader is not another.</summary>
    [Test]
    public async Task A_token_interrupts_a_readers_own_next_statement()
    {
        await using var connection = await Open();
        using var cancellation = CancelledBy(connection);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1; " + CountingQuery;
        await using var reader = await command.ExecuteReaderAsync();

        await Should.ThrowAsync<OperationCanceledException>(() => reader.NextResultAsync(cancellation.Token));

        _calls.ShouldBe(1, "the interrupt stopped the statement at its next row");
        ConnectionTests.Scalar(connection, "SELECT 5").ShouldBe(5L);
    }

    /// <summary>
    /// A reader's next statement beside another open reader, stopped by the NextResultAsync's own token: the progress
    /// handler stops the step on that token as well as on Cancel's (on Cancel's alone, the statement ran to its end
    /// before the call was reported cancelled; this passed every test, a hunt).
    /// </summary>
    [Test]
    public async Task A_token_stops_a_readers_next_statement_beside_another_open_reader_which_reads_on()
    {
        await using var connection = await Open();
        using var cancellation = CancelledBy(connection);
        await using var other = connection.CreateCommand();
        await using var otherReader = OpenReader(other);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1; " + CountingQuery;
        await using var reader = await command.ExecuteReaderAsync();

        await Should.ThrowAsync<OperationCanceledException>(() => reader.NextResultAsync(cancellation.Token));

        _calls.ShouldBeLessThan(27, "the statement was stopped before its end");
        otherReader.Read().ShouldBeTrue();
        otherReader.GetInt64(0).ShouldBe(2L);
        ConnectionTests.Scalar(connection, "SELECT 5").ShouldBe(5L);
    }

    private async Task<SaverDbConnection> Open()
    {
        _calls = 0;
        var connection = new SaverDbConnection(Folder.ConnectionString());
        await connection.OpenAsync();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3)");
        return connection;
    }

    /// <summary>
    /// The call failed with SQLITE_INTERRUPT and left no interrupt pending: <paramref name="otherReader"/> (of t, on its
    /// first row) reads its next row, and the connection runs a statement.
    /// </summary>
    private static void ShouldBeStoppedWithNothingPending(Microsoft.Data.Sqlite.SqliteException error, DbDataReader otherReader, SaverDbConnection connection)
    {
        error.SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT);
        otherReader.Read().ShouldBeTrue();
        otherReader.GetInt64(0).ShouldBe(2L);
        ConnectionTests.Scalar(connection, "SELECT 5").ShouldBe(5L);
    }

    /// <summary>A reader of t by <paramref name="command"/>, on its first row: its statement is active.</summary>
    internal static DbDataReader OpenReader(DbCommand command)
    {
        command.CommandText = "SELECT x FROM t ORDER BY x";
        var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();
        return reader;
    }

    /// <summary>A token source that the function cancel_now, called in a statement, cancels (its calls counted).</summary>
    private CancellationTokenSource CancelledBy(SaverDbConnection connection)
    {
        var cancellation = new CancellationTokenSource();
        connection.InnerConnection.CreateFunction("cancel_now", () =>
        {
            _calls++;
            cancellation.Cancel();
            return 0L;
        });
        return cancellation;
    }

    /// <summary>
    /// A reader of <paramref name="batch"/> by <paramref name="command"/>, on its first row; the function cancel_now,
    /// called in a statement, calls the command's Cancel() the first time (see <see cref="CancelsOnFirstCall"/>).
    /// </summary>
    private async Task<DbDataReader> ReaderOnFirstRow(SaverDbConnection connection, DbCommand command, string batch)
    {
        CancelsOnFirstCall(connection, command);
        command.CommandText = batch;
        var reader = await command.ExecuteReaderAsync();
        reader.Read().ShouldBeTrue();
        return reader;
    }

    /// <summary>The function cancel_now, called in a statement, calls <paramref name="command"/>'s Cancel() the first time (its calls counted).</summary>
    private void CancelsOnFirstCall(SaverDbConnection connection, DbCommand command)
        => connection.InnerConnection.CreateFunction("cancel_now", () =>
        {
            if (_calls++ == 0)
            {
                command.Cancel();
            }

            return 0L;
        });
}
