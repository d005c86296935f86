using System.Data;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests;

/// <summary>
/// A reader of a command run in a transaction, still open when the transaction ends: the statements of the command
/// it has not reached run inside the transaction, never after it (Microsoft.Data.Sqlite runs them as the reader is
/// read on or closed, outside the transaction, so a write the caller rolled back was applied after all).
/// </summary>
public class TransactionReaderTests : DatabaseTest
{
    private const string SelectThenInsert = "SELECT 1; INSERT INTO t VALUES (42)";

    /// <summary>A query whose second Read fails (an integer overflow), leaving its transaction as it was.</summary>
    private const string FailsOnSecondRow = "SELECT CASE WHEN n = 2 THEN abs(-9223372036854775808) END FROM (SELECT 1 AS n UNION ALL SELECT 2)";

    [Test]
    public void A_rolled_back_transaction_leaves_nothing_for_its_open_reader_to_apply_afterwards()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();

        transaction.Rollback();

        Should.Throw<InvalidOperationException>(() => reader.NextResult()); // the SQLite reader has closed
        reader.Dispose();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public void Disposing_a_transaction_with_an_open_reader_rolls_back_the_readers_remaining_statements_too()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        DbDataReader reader;
        using (var transaction = connection.BeginTransaction())
        {
            reader = Reader(connection, transaction, SelectThenInsert);
            reader.Read().ShouldBeTrue();
        }

        reader.Dispose();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (7)").ShouldBe(1);
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("7");
    }

    [Test]
    public async Task A_commit_runs_the_open_readers_remaining_statements_inside_the_transaction([Values] bool async)
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        var transaction = connection.BeginTransaction();
        var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();

        if (async)
        {
            await transaction.CommitAsync();
        }
        else
        {
            transaction.Commit();
        }

        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L); // committed, before the reader closes
        Should.Throw<InvalidOperationException>(() => reader.Read());
        await reader.DisposeAsync();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L); // and not applied a second time
    }

    /// <summary>
    /// A batch that only reads, in a transaction begun as SQL (a BEGIN sent as a command), closes as with
    /// Microsoft.Data.Sqlite: a statement not reached that fails does so quietly, as nothing of the transaction is lost
    /// by it; only a writing batch's closing throws such an error (the batch is not whole).
    /// </summary>
    [Test]
    public void Closing_a_query_in_a_transaction_begun_as_SQL_is_quiet_about_a_statement_not_reached_that_fails()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        ConnectionTests.Exec(connection, "BEGIN");
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
        var reader = Reader(connection, null, "SELECT 1; SELECT abs(-9223372036854775808)");
        reader.Read().ShouldBeTrue();

        reader.Dispose(); // the overflow not reached fails as the reader closes

        ConnectionTests.Exec(connection, "COMMIT");
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    [Test]
    public void A_remaining_statement_that_fails_fails_the_commit_and_leaves_the_transaction_open()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)");
        reader.Read().ShouldBeTrue();

        Should.Throw<SqliteException>(transaction.Commit).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);

        transaction.Connection.ShouldBeSameAs(connection); // still open
        Should.Throw<InvalidOperationException>(transaction.Commit) // would commit the batch without its failed part
            .InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        transaction.Rollback();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public void Rolling_back_to_a_savepoint_undoes_the_statements_an_open_reader_had_not_reached()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var transaction = connection.BeginTransaction();
        transaction.Save("a");
        var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();

        transaction.Rollback("a");

        reader.Dispose(); // runs nothing after the rollback
        transaction.Commit();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public void A_savepoint_set_while_a_reader_is_open_comes_after_the_readers_remaining_statements()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var transaction = connection.BeginTransaction();
        var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();

        transaction.Save("a");
        transaction.Rollback("a"); // undoes nothing: the command ran before the savepoint was set

        Scalar(connection, transaction, "SELECT count(*) FROM t").ShouldBe(1L);
        reader.Dispose();
        transaction.Commit();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L); // once
    }

    [Test]
    public void Releasing_a_savepoint_while_a_reader_is_open_runs_the_readers_remaining_statements_first()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var transaction = connection.BeginTransaction();
        transaction.Save("a");
        var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();

        transaction.Release("a");

        Scalar(connection, transaction, "SELECT count(*) FROM t").ShouldBe(1L);
        reader.Dispose();
        transaction.Commit();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    [Test]
    public void A_remaining_statement_that_fails_at_a_savepoint_fails_it_and_every_later_commit()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)");
        reader.Read().ShouldBeTrue();

        Should.Throw<SqliteException>(() => transaction.Save("a")).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);

        Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("cannot commit it");
        transaction.Rollback();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void A_rollback_to_a_savepoint_set_before_a_batch_that_failed_to_finish_lets_the_transaction_commit(bool closedByCaller)
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (0)");
        transaction.Save("before");
        var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)");
        reader.Read().ShouldBeTrue();
        if (closedByCaller)
        {
            reader.Dispose(); // the failure waits for the next commit
        }
        else
        {
            Should.Throw<SqliteException>(() => transaction.Save("after")).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        }

        transaction.Rollback("BEFORE"); // SQLite matches savepoint names without ASCII case: undoes the whole batch

        transaction.Commit();
        reader.Dispose();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("0");
    }

    [Test]
    public void A_savepoint_rolled_back_to_stays_to_undo_a_second_batch_that_failed_to_finish()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        var transaction = connection.BeginTransaction();
        transaction.Save("before");
        FailToFinish(connection, transaction);
        transaction.Rollback("before");

        FailToFinish(connection, transaction);
        transaction.Rollback("before"); // the savepoint is still the one Save set, before this batch too

        transaction.Commit();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    [Test]
    public void A_rollback_to_a_name_set_twice_keeps_the_savepoints_set_between_them()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        var transaction = connection.BeginTransaction();
        transaction.Save("a");
        transaction.Save("b");
        transaction.Save("a");
        transaction.Rollback("a"); // the newer one: "b" stays
        FailToFinish(connection, transaction);

        transaction.Rollback("b"); // set before the batch, so it undoes it whole

        transaction.Commit();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    [TestCase("a", "ab")]
    [TestCase("@", "`")] // '@' | 0x20 is '`', but they are not letters
    [TestCase("\u00C0", "\u00E0")] // SQLite folds the case of ASCII letters only
    public void A_rollback_to_a_savepoint_set_as_SQL_text_whose_name_only_looks_like_one_Save_set_keeps_the_savepoints_Save_set_after_that_one(string saved, string sql)
    {
        using var connection = OpenWithRowOne(out var connectionString);
        var transaction = connection.BeginTransaction();
        transaction.Save(saved);
        transaction.Save("c");
        ConnectionTests.Exec(connection, $"SAVEPOINT \"{sql}\"");
        transaction.Rollback(sql); // SQLite's newest savepoint: "c" stays
        FailToFinish(connection, transaction);

        transaction.Rollback("c"); // set before the batch, so it undoes it whole

        transaction.Commit();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    [Test]
    public void A_savepoint_rolled_back_to_undoes_a_batch_whose_statement_failed_as_the_commit_ran_it_after_a_savepoint_set_as_SQL_text()
    {
        // The SAVEPOINT sent as SQL text comes before the batch, so the rollback to the savepoint Save set before it
        // still undoes the batch whole.
        using var connection = OpenWithRowOne(out var connectionString);
        var transaction = connection.BeginTransaction();
        transaction.Save("before");
        ConnectionTests.Exec(connection, "SAVEPOINT other");
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (2); INSERT INTO t VALUES (1)");
        reader.Read().ShouldBeTrue();
        Should.Throw<SqliteException>(transaction.Commit).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);

        transaction.Rollback("before");

        transaction.Commit();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    [Test]
    public void A_rollback_to_a_released_name_set_again_as_SQL_text_inside_a_failed_batch_still_refuses_the_commit()
    {
        // The SAVEPOINT runs after the reader's first INSERT: rolling back to it keeps that INSERT, whose batch is not
        // whole. The name Save set before is released, so it cannot be the one rolled back to.
        using var connection = OpenWithRowOne(out var connectionString);
        var transaction = connection.BeginTransaction();
        transaction.Save("a");
        transaction.Release("a");
        var reader = Reader(connection, transaction, "INSERT INTO t VALUES (5); SELECT 1; INSERT INTO t VALUES (1)");
        reader.Read().ShouldBeTrue();
        ConnectionTests.Exec(connection, "SAVEPOINT a");
        reader.Dispose(); // its second INSERT fails

        transaction.Rollback("a");

        Should.Throw<SqliteException>(transaction.Commit).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT); // as if the commit ran it
        transaction.Rollback();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    [Test]
    public void A_rollback_to_a_savepoint_set_as_SQL_text_after_a_batch_failed_to_finish_still_refuses_the_commit()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)");
        reader.Read().ShouldBeTrue();
        Should.Throw<SqliteException>(() => transaction.Save("a")).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        ConnectionTests.Exec(connection, "SAVEPOINT b"); // after the batch's first INSERT, which stays; its last never ran

        transaction.Rollback("b");

        Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("cannot commit it");
        transaction.Rollback();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    /// <summary>
    /// A rollback to a savepoint runs the statements an open reader of a writing batch has not reached first, so that it
    /// undoes them; but a savepoint set as SQL text after the batch began would undo them where they belong after it
    /// (Microsoft.Data.Sqlite keeps them: it runs them as the reader closes, after the rollback). The library cannot
    /// tell where such a savepoint lies, so it refuses, rolling back nothing, while the reader is open. Before, the row
    /// was silently rolled back (a bug hunt's finding).
    /// </summary>
    [Test]
    public void A_rollback_to_a_savepoint_that_may_have_been_set_as_SQL_after_an_open_readers_batch_is_refused(
        [Values("SAVEPOINT z", "PRAGMA user_version; SAVEPOINT z")] string savepoint)
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();
        ConnectionTests.Exec(connection, savepoint); // after the batch began

        Should.Throw<InvalidOperationException>(() => transaction.Rollback("z")).Message.ShouldStartWith("Rollback(\"z\") would first run the statements not reached yet");

        Scalar(connection, transaction, "SELECT count(*) FROM t").ShouldBe(0L); // the batch's INSERT has not run
        reader.Dispose(); // runs it, inside the transaction, still open
        transaction.Commit();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    /// <summary>
    /// Only a <c>SAVEPOINT</c> sent as SQL makes such a rollback refused: a PRAGMA read since the reader opened does not
    /// (a review's finding: every statement the library runs as written counted).
    /// </summary>
    [Test]
    public void A_PRAGMA_since_an_open_readers_batch_does_not_refuse_a_rollback_to_a_savepoint_set_before_it()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var transaction = connection.BeginTransaction();
        transaction.Save("a");
        var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();
        Scalar(connection, transaction, "PRAGMA user_version").ShouldBe(0L);

        transaction.Rollback("a");

        reader.Dispose();
        transaction.Commit();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    /// <summary>
    /// A reader of an ended transaction's batch that sets a savepoint as SQL text, closed during the next transaction:
    /// the transaction its batch ran in is over, so its closing counts no savepoint for the next one, whose rollback
    /// to a savepoint of its own beside an open reader of a writing batch goes ahead.
    /// </summary>
    [Test]
    public void A_reader_of_an_ended_transaction_closed_in_the_next_does_not_refuse_its_rollback_to_a_savepoint()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var first = connection.BeginTransaction();
        var earlier = Reader(connection, first, "SELECT 1; SAVEPOINT s; SELECT 2");
        earlier.Read().ShouldBeTrue();
        first.Commit();
        using var second = connection.BeginTransaction();
        second.Save("a");
        var reader = Reader(connection, second, SelectThenInsert);
        reader.Read().ShouldBeTrue();

        earlier.Dispose();
        second.Rollback("a");

        reader.Dispose();
        second.Commit();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    /// <summary>
    /// A rollback to a savepoint ignored the error of a remaining statement it ran first, as the rollback would undo
    /// the batch; but when the rollback itself fails (no such savepoint: a typo), nothing is undone, and the commit
    /// went ahead with the batch in part (its first INSERT kept, its last never run; a bug hunt's finding). The error
    /// now stays with the transaction, as for a savepoint or commit that runs a failing statement.
    /// </summary>
    [Test]
    public void A_rollback_to_no_such_savepoint_leaves_a_batch_that_failed_as_it_ran_uncommittable()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)");
        reader.Read().ShouldBeTrue();

        Should.Throw<SqliteException>(() => transaction.Rollback("nosuch")).Message.ShouldContain("no such savepoint");

        Should.Throw<SqliteException>(transaction.Commit).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("cannot commit it");
        transaction.Rollback();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    /// <summary>
    /// A rollback to a savepoint finishes every open reader of a writing batch, also after one of them failed: a reader
    /// left unfinished would run its statements after the rollback, which would keep them.
    /// </summary>
    [Test]
    public void A_rollback_to_a_savepoint_undoes_every_open_readers_remaining_statements_after_one_of_them_fails()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        transaction.Save("a");
        using var failing = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)");
        failing.Read().ShouldBeTrue();
        using var other = Reader(connection, transaction, "SELECT 2; INSERT INTO t VALUES (2)");
        other.Read().ShouldBeTrue();

        transaction.Rollback("a");

        other.Dispose();
        failing.Dispose();
        transaction.Commit();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public void A_rollback_to_a_name_Save_used_before_the_failure_but_set_again_as_SQL_text_after_it_still_refuses_the_commit()
    {
        // SQLite rolls back to the newest savepoint of the name: the one set as SQL text after the failed batch's first
        // INSERT, which stays. The batch is not whole, so the commit must still be refused.
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        transaction.Save("a");
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)");
        reader.Read().ShouldBeTrue();
        Should.Throw<SqliteException>(() => transaction.Save("b")).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        ConnectionTests.Exec(connection, "SAVEPOINT a"); // after the batch's first INSERT; its last never ran

        transaction.Rollback("a");

        Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("cannot commit it");
        transaction.Rollback();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public void A_batch_failing_after_another_failed_leaves_the_first_failure_to_decide_what_a_rollback_to_a_savepoint_undoes()
    {
        // As the test above, with a second batch failing after the SAVEPOINT: the rollback to it undoes that one
        // whole, but not the first one, so the commit must still be refused.
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        transaction.Save("a");
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)");
        reader.Read().ShouldBeTrue();
        Should.Throw<SqliteException>(() => transaction.Save("b")).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        ConnectionTests.Exec(connection, "SAVEPOINT a");
        FailToFinish(connection, transaction);

        transaction.Rollback("a");

        Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("cannot commit it");
        transaction.Rollback();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [TestCase("NextResult", false)]
    [TestCase("NextResult", true)]
    [TestCase("NextResultAsync", false)]
    [TestCase("NextResultAsync", true)]
    [TestCase("Dispose", true)] // closed first by its Dispose, which runs the SAVEPOINT
    public async Task A_rollback_to_a_name_set_again_by_a_reader_opened_before_the_failure_still_refuses_the_commit(string runBy, bool closedFirst)
    {
        // As the test above, but the SAVEPOINT is a later statement of a reader opened before the failure: its command
        // ran before it, yet the statement runs after it, as the reader moves on (by NextResult or NextResultAsync, each
        // counting it as run as written; the reader closed before the rollback, or still open at it) or closes (which
        // runs the statements not reached and counts them so, too). SQLite rolls back
        // to that newer savepoint, after the failed batch's first INSERT, so the commit must still be refused, or that
        // part of the batch would be committed without its failed statement.
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        transaction.Save("a");
        var savepoint = Reader(connection, transaction, "SELECT 1; SAVEPOINT a");
        savepoint.Read().ShouldBeTrue(); // the SAVEPOINT has not run yet
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)");
        reader.Read().ShouldBeTrue();
        Should.Throw<SqliteException>(() => transaction.Save("b")).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        if (runBy == "Dispose")
        {
            savepoint.Dispose(); // runs SAVEPOINT a after the batch's first INSERT
        }
        else
        {
            (runBy == "NextResultAsync" ? await savepoint.NextResultAsync() : savepoint.NextResult()).ShouldBeFalse(); // runs SAVEPOINT a after the batch's first INSERT; its last never ran
            if (closedFirst)
            {
                await savepoint.DisposeAsync();
            }
        }

        transaction.Rollback("a");

        Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("cannot commit it");
        transaction.Rollback();
        await savepoint.DisposeAsync(); // closing it only now, when still open: its close, too, counts it as a batch run as written
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public async Task SaveAsync_in_a_deferred_transaction_stops_waiting_for_the_write_lock_when_cancelled()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=60000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction(deferred: true);
        using var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();
        using var holder = HoldWriteLock(); // the INSERT the savepoint runs first must wait for it
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));

        // SaveAsync runs synchronously: on another thread, so that a wait the token does not end outlasts the bound.
        await Should.ThrowAsync<OperationCanceledException>(Task.Run(() => transaction.SaveAsync("a", cancellation.Token)).WaitAsync(TimeSpan.FromSeconds(30)));

        transaction.Rollback();
        holder.Dispose();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    /// <summary>
    /// A writing batch outside a transaction whose Read failed: the write is rolled back, and closing the reader runs
    /// none of the statements not reached, as closing the SQLite reader would (inside the write, rolled back after,
    /// but an application function they call, or a lock they wait for, would still be met).
    /// </summary>
    [Test]
    public void Closing_a_write_whose_read_failed_runs_none_of_its_statements_not_reached()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var calls = 0;
        connection.InnerConnection.CreateFunction("counted", () => ++calls);
        var reader = Reader(
            connection,
            null,
            $"{FailsOnSecondRow}; INSERT INTO t VALUES (counted())");
        reader.Read().ShouldBeTrue();
        Should.Throw<SqliteException>(() => reader.Read()).Message.ShouldContain("integer overflow");

        reader.Dispose();

        calls.ShouldBe(0);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (counted())").ShouldBe(1); // the connection and its write gate are free
    }

    /// <summary>
    /// As above, on a connection whose busy timeout the library knows: closing switches SQLite's busy waits off while
    /// it discards the statements not reached, and on again after, for the renter's next statements.
    /// </summary>
    [Test]
    public void Closing_a_write_whose_read_failed_leaves_the_busy_timeout_as_it_was()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=60000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var reader = Reader(connection, null, $"{FailsOnSecondRow}; INSERT INTO t VALUES (1)");
        reader.Read().ShouldBeTrue();
        Should.Throw<SqliteException>(() => reader.Read());

        reader.Dispose();

        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(60000L);
    }

    [Test]
    public void Rolling_back_to_a_savepoint_after_a_readers_statement_made_SQLite_end_the_transaction_says_so()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE ON CONFLICT ROLLBACK); INSERT INTO t VALUES (1)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        transaction.Save("a");
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1)");
        reader.Read().ShouldBeTrue();

        Should.Throw<InvalidOperationException>(() => transaction.Rollback("a")).Message.ShouldContain("SQLite has already ended");

        transaction.Rollback();
    }

    [Test]
    public void A_savepoint_after_a_statement_that_failed_as_the_commit_ran_it_made_SQLite_end_the_transaction_names_its_error()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE ON CONFLICT ROLLBACK); INSERT INTO t VALUES (1)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1)");
        reader.Read().ShouldBeTrue();
        Should.Throw<SqliteException>(transaction.Commit); // the INSERT fails, and SQLite rolls the transaction back

        var refused = Should.Throw<InvalidOperationException>(() => transaction.Save("a"));
        refused.Message.ShouldContain("SQLite has already ended");
        refused.InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        transaction.Rollback();
    }

    [Test]
    public void A_savepoint_after_a_statement_that_failed_as_its_reader_closed_made_SQLite_end_the_transaction_says_so([Values] bool release)
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE ON CONFLICT ROLLBACK); INSERT INTO t VALUES (1)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        transaction.Save("a");
        var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (1)");
        reader.Read().ShouldBeTrue();
        reader.Dispose(); // the INSERT fails, and SQLite rolls the transaction back

        // Not the error of the INSERT, as if the savepoint were what ran it: the transaction is gone.
        var refused = Should.Throw<InvalidOperationException>(() =>
        {
            if (release)
            {
                transaction.Release("a");
            }
            else
            {
                transaction.Save("b");
            }
        });
        refused.Message.ShouldContain("SQLite has already ended");
        refused.InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);

        transaction.Rollback();
    }

    [Test]
    public void A_statement_that_fails_when_its_reader_closes_in_a_transaction_keeps_the_batch_from_being_committed_in_part()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        var transaction = connection.BeginTransaction();
        var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (2); INSERT INTO t VALUES (1); INSERT INTO t VALUES (3)");
        reader.Read().ShouldBeTrue();

        reader.Dispose(); // Microsoft.Data.Sqlite's reader ignores the error of the second INSERT here

        Should.Throw<SqliteException>(transaction.Commit).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT); // as if the commit ran it
        Should.Throw<InvalidOperationException>(transaction.Commit)
            .InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        transaction.Rollback();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1"); // nothing of the batch
    }

    /// <summary>
    /// As above in a transaction begun as SQL (a <c>BEGIN</c> sent as a command), where no transaction object can refuse
    /// the commit: the reader's Close throws the statement's error, saying that the batch is not whole and that the
    /// transaction is still open, as an execution of the batch would throw it. Before, Close ignored the error, as
    /// Microsoft.Data.Sqlite's does, and the <c>COMMIT</c> sent next kept the batch's first insert alone, without a word.
    /// </summary>
    [Test]
    public void A_statement_that_fails_when_its_reader_closes_in_a_transaction_begun_as_sql_fails_the_close()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        ConnectionTests.Exec(connection, "BEGIN; INSERT INTO t VALUES (100)");
        var reader = Reader(connection, null, "SELECT 1; INSERT INTO t VALUES (2); INSERT INTO t VALUES (1); INSERT INTO t VALUES (3)");
        reader.Read().ShouldBeTrue();

        var error = Should.Throw<SqliteException>(reader.Dispose);

        error.SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        error.SqliteExtendedErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT_UNIQUE);
        error.Message.ShouldContain("UNIQUE constraint failed");
        error.Message.ShouldContain("the batch is not whole");
        error.Message.ShouldContain("is still open");
        reader.IsClosed.ShouldBeTrue();
        ConnectionTests.Exec(connection, "ROLLBACK");
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    /// <summary>
    /// As above, the reader closed by its connection's Close instead: that Close closes its readers quietly, the
    /// statements not reached running as the SQLite reader's closing runs them, and rolls the transaction back; the
    /// failed statement's error does not come out of it.
    /// </summary>
    [Test]
    public void A_statement_that_fails_as_the_connections_Close_closes_its_reader_in_a_transaction_begun_as_sql_leaves_the_Close_quiet()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        ConnectionTests.Exec(connection, "BEGIN; INSERT INTO t VALUES (100)");
        var reader = Reader(connection, null, "SELECT 1; INSERT INTO t VALUES (2); INSERT INTO t VALUES (1); INSERT INTO t VALUES (3)");
        reader.Read().ShouldBeTrue();

        connection.Close();

        reader.IsClosed.ShouldBeTrue();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    /// <summary>
    /// As above for a statement of the batch that waited out Busy Timeout for a lock another connection holds, in a
    /// deferred transaction begun as SQL whose earlier insert went to a temp table, which takes no lock on the file:
    /// Close throws SQLITE_BUSY (a review's finding: it was ignored, and the temp insert kept alone by the COMMIT).
    /// </summary>
    [Test]
    public void A_statement_that_meets_a_held_lock_when_its_reader_closes_in_a_transaction_begun_as_sql_fails_the_close()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=50");
        PoolTests.Execute(connectionString, "CREATE TABLE w (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TEMP TABLE tt (x); BEGIN; INSERT INTO tt VALUES (100)");
        var reader = Reader(connection, null, "SELECT 1; INSERT INTO tt VALUES (200); INSERT INTO w VALUES (300); INSERT INTO tt VALUES (400)");
        reader.Read().ShouldBeTrue();
        using (HoldWriteLock())
        {
            var error = Should.Throw<SqliteException>(reader.Dispose);
            error.SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_BUSY);
            error.Message.ShouldContain("the batch is not whole");
        }

        ConnectionTests.Exec(connection, "ROLLBACK");
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM tt").ShouldBe(0L);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM w").ShouldBe(0L);
    }

    /// <summary>
    /// A reader opened in a transaction begun as SQL, closed after a <c>COMMIT</c> sent as SQL ended that transaction and
    /// a transaction object began another: a statement of its batch that fails as it closes is that transaction's
    /// error, which refuses the commit, as for a reader of its own; Close stays quiet. Before, Close rolled the
    /// transaction object's transaction back and said a transaction begun as SQL was (a review's finding on c7dfb2b),
    /// and earlier still, the commit kept the batch in part.
    /// </summary>
    [Test]
    public void A_statement_that_fails_when_a_reader_closes_in_a_transaction_begun_since_is_that_transactions_error()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        ConnectionTests.Exec(connection, "BEGIN; INSERT INTO t VALUES (100)");
        var reader = Reader(connection, null, "SELECT 1; INSERT INTO t VALUES (2); INSERT INTO t VALUES (1); INSERT INTO t VALUES (3)");
        reader.Read().ShouldBeTrue();
        ConnectionTests.Exec(connection, "COMMIT");
        using var transaction = connection.BeginTransaction();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (200)");

        reader.Dispose();

        Should.Throw<SqliteException>(transaction.Commit).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        transaction.Rollback();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1,100");
    }

    /// <summary>
    /// A reader of a writing batch opened in a transaction begun as SQL, closed after a <c>COMMIT</c> or <c>ROLLBACK</c>
    /// sent as SQL ended that transaction: the statements it had not reached do not run in autocommit as it closes,
    /// each committed on its own (after the ROLLBACK too, keeping a statement of the transaction rolled back): SQLite
    /// refuses their writes, and Close throws, saying the batch is not whole; the connection writes again after. Before,
    /// they ran and were kept, and their errors were ignored (a review's finding, older: Microsoft.Data.Sqlite's
    /// behaviour). Any write counts, one that changes no row too.
    /// </summary>
    [Test]
    public void A_reader_closed_after_its_transaction_begun_as_sql_ended_writes_nothing_outside_it(
        [Values] bool commit, [Values("INSERT INTO t VALUES (2); INSERT INTO t VALUES (3)", "DELETE FROM t WHERE x = 999")] string rest)
    {
        using var connection = OpenWithRowOne(out var connectionString);
        ConnectionTests.Exec(connection, "BEGIN; INSERT INTO t VALUES (100)");
        var reader = Reader(connection, null, "SELECT 1; " + rest);
        reader.Read().ShouldBeTrue();
        ConnectionTests.Exec(connection, commit ? "COMMIT" : "ROLLBACK");

        var error = Should.Throw<InvalidOperationException>(reader.Dispose);

        error.Message.ShouldContain("ended before the reader closed");
        error.Message.ShouldContain("a statement that writes did not run");
        error.Message.ShouldContain("the batch is not whole");
        error.InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_READONLY);
        reader.IsClosed.ShouldBeTrue();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(commit ? 2L : 1L); // in no transaction
        ConnectionTests.Scalar(connection, "PRAGMA query_only").ShouldBe(0L);
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (4); DELETE FROM t WHERE x = 4");
        connection.Close();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe(commit ? "1,100" : "1");
    }

    /// <summary>
    /// As above for a <c>NextResult</c> (or <c>NextResultAsync</c>, as Dapper's grid reader calls) after the transaction
    /// ended: a read runs, as it would, but a statement that writes does not run outside the transaction; NextResult
    /// throws, saying the batch is not whole, and the reader's Close is quiet after it. Before, it ran in autocommit.
    /// </summary>
    [Test]
    public async Task A_next_result_after_the_transaction_begun_as_sql_ended_writes_nothing_outside_it([Values] bool async)
    {
        using var connection = OpenWithRowOne(out var connectionString);
        ConnectionTests.Exec(connection, "BEGIN; INSERT INTO t VALUES (100)");
        var reader = Reader(connection, null, "SELECT 1; SELECT 2; INSERT INTO t VALUES (2); SELECT 3");
        reader.Read().ShouldBeTrue();
        ConnectionTests.Exec(connection, "ROLLBACK");
        (async ? await reader.NextResultAsync() : reader.NextResult()).ShouldBeTrue();
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(2L);

        var error = async
            ? await Should.ThrowAsync<InvalidOperationException>(reader.NextResultAsync())
            : Should.Throw<InvalidOperationException>(() => reader.NextResult());

        error.Message.ShouldContain("has ended");
        error.Message.ShouldContain("NextResult runs the batch's next statement");
        error.Message.ShouldContain("a statement that writes did not run");
        error.Message.ShouldContain("the batch is not whole");
        error.InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_READONLY);
        reader.Dispose();
        ConnectionTests.Scalar(connection, "PRAGMA query_only").ShouldBe(0L);
        connection.Close();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    /// <summary>
    /// As above for a read that fails (a function's error) in a NextResult after the transaction ended: it runs, as it
    /// would, and throws its own error, as it would, not the refusal of a write; nothing after it runs.
    /// </summary>
    [Test]
    public void A_read_failing_in_a_next_result_after_the_transaction_begun_as_sql_ended_throws_its_own_error()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        connection.InnerConnection.CreateFunction<long, long>("fail", _ => throw new InvalidOperationException("failing on purpose"));
        ConnectionTests.Exec(connection, "BEGIN; INSERT INTO t VALUES (100)");
        var reader = Reader(connection, null, "SELECT 1; SELECT fail(x) FROM t; INSERT INTO t VALUES (2)");
        reader.Read().ShouldBeTrue();
        ConnectionTests.Exec(connection, "ROLLBACK");

        Should.Throw<SqliteException>(() => reader.NextResult()).Message.ShouldContain("failing on purpose");

        reader.Dispose();
        ConnectionTests.Scalar(connection, "PRAGMA query_only").ShouldBe(0L);
        connection.Close();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    /// <summary>
    /// As above for a statement not reached that would wait for a lock another connection holds: it does not wait,
    /// and Close throws as above; nothing of it is kept once the lock is free.
    /// </summary>
    [Test]
    public async Task A_reader_closed_after_its_transaction_begun_as_sql_ended_does_not_wait_for_a_lock_to_write_outside_it()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=60000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        ConnectionTests.Exec(connection, "BEGIN; INSERT INTO t VALUES (100)");
        var reader = Reader(connection, null, "SELECT 1; INSERT INTO t VALUES (2)");
        reader.Read().ShouldBeTrue();
        ConnectionTests.Exec(connection, "COMMIT");
        using (HoldWriteLock())
        {
            var error = await Should.ThrowAsync<InvalidOperationException>(Task.Run(reader.Dispose).WaitAsync(TimeSpan.FromSeconds(30))); // not 60 s
            error.Message.ShouldContain("the batch is not whole");
            error.InnerException.ShouldBeOfType<SqliteException>().SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_READONLY);
        }

        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("100");
    }

    /// <summary>
    /// As above for a statement not reached that fails before any write (a function's error, or a <c>Cancel()</c> that
    /// stops it): Close throws as above, saying which, with its error inside, and the write after it does not run.
    /// </summary>
    [Test]
    public void A_reader_closed_after_its_transaction_begun_as_sql_ended_says_that_a_statement_not_reached_failed([Values] bool cancelled)
    {
        using var connection = OpenWithRowOne(out var connectionString);
        var command = connection.CreateCommand();
        connection.InnerConnection.CreateFunction<long, long>("fail", _ => cancelled ? Cancelled(command) : throw new InvalidOperationException("failing on purpose"));
        ConnectionTests.Exec(connection, "BEGIN");
        command.CommandText = "SELECT 1; SELECT count(fail(1)) FROM t, t AS u, t AS v, t AS w, t AS z; INSERT INTO t VALUES (2)";
        var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();
        ConnectionTests.Exec(connection, "COMMIT");

        var error = Should.Throw<InvalidOperationException>(reader.Dispose);

        error.Message.ShouldContain(cancelled ? "one of them was stopped by Cancel()" : "one of them failed (");
        error.Message.ShouldNotContain("refused their writes");
        error.InnerException.ShouldBeOfType<SqliteException>().Message.ShouldContain(cancelled ? "interrupted" : "failing on purpose");
        connection.Close();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");

        static long Cancelled(DbCommand command)
        {
            command.Cancel();
            return 0;
        }
    }

    /// <summary>
    /// As above for a statement not reached that a Close of the connection on another thread stops (it interrupts the
    /// renter's calls): the reader's Close is quiet, as for any statement that Close ends, and nothing is kept (a
    /// review's finding: it threw, saying a statement failed).
    /// </summary>
    [Test]
    public async Task A_reader_closed_after_its_transaction_begun_as_sql_ended_is_quiet_when_the_connections_close_stops_it()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        using var running = new ManualResetEventSlim();
        connection.InnerConnection.CreateFunction<long, long>("running", x =>
        {
            running.Set();
            return x;
        });
        ConnectionTests.Exec(connection, "BEGIN");
        var reader = Reader(
            connection,
            null,
            "SELECT 1; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(running(x)) FROM c; INSERT INTO t VALUES (2)");
        reader.Read().ShouldBeTrue();
        ConnectionTests.Exec(connection, "COMMIT");
        var closer = Task.Run(() =>
        {
            running.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue(); // the endless count runs as the reader closes
            connection.Close();
        });

        Should.NotThrow(reader.Dispose);

        await closer.WaitAsync(TimeSpan.FromSeconds(30));
        connection.State.ShouldBe(ConnectionState.Closed);
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    /// <summary>
    /// A renter's own <c>PRAGMA query_only = 1</c> stays set through such a closing, or a NextResult (<paramref name="nextResult"/>), which refuse writes too.
    /// </summary>
    [Test]
    public void A_reader_closed_after_its_transaction_begun_as_sql_ended_leaves_query_only_as_the_renter_set_it([Values] bool nextResult)
    {
        using var connection = OpenWithRowOne(out _);
        ConnectionTests.Exec(connection, "BEGIN");
        var reader = Reader(connection, null, "SELECT 1; INSERT INTO t VALUES (2)");
        reader.Read().ShouldBeTrue();
        ConnectionTests.Exec(connection, "COMMIT; PRAGMA query_only = 1");

        if (nextResult)
        {
            Should.Throw<InvalidOperationException>(() => reader.NextResult()).Message.ShouldContain("a statement that writes did not run");
            reader.Dispose();
        }
        else
        {
            Should.Throw<InvalidOperationException>(reader.Dispose).Message.ShouldContain("a statement that writes did not run");
        }

        ConnectionTests.Scalar(connection, "PRAGMA query_only").ShouldBe(1L);
    }

    /// <summary>
    /// A reader opened in a transaction begun as SQL, closed after that transaction ended, with nothing of its batch
    /// left that writes (read to its end, or only reads left): Close is quiet, as before.
    /// </summary>
    [TestCase("INSERT INTO t VALUES (2) RETURNING x", true)]
    [TestCase("INSERT INTO t VALUES (2); SELECT 1; SELECT 2", false)]
    public void A_reader_closed_after_its_transaction_begun_as_sql_ended_with_no_write_left_closes_quietly(string batch, bool readToEnd)
    {
        using var connection = OpenWithRowOne(out var connectionString);
        ConnectionTests.Exec(connection, "BEGIN");
        var reader = Reader(connection, null, batch);
        reader.Read().ShouldBeTrue();
        if (readToEnd)
        {
            reader.Read().ShouldBeFalse();
        }

        ConnectionTests.Exec(connection, "COMMIT");

        reader.Dispose();

        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1,2");
    }

    /// <summary>
    /// As above, after a <c>Read</c> of the reader failed, which the caller met (and then rolled back): the statements not
    /// reached are rolled back as above, but Close is quiet, so that a <c>using</c> block's Dispose does not replace
    /// the error of the Read with its own.
    /// </summary>
    [Test]
    public void A_reader_whose_read_failed_closes_quietly_after_its_transaction_begun_as_sql_ended()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        connection.InnerConnection.CreateFunction("fail_at_two", (long x) => x == 2 ? throw new InvalidOperationException("two") : x);
        ConnectionTests.Exec(connection, "BEGIN; INSERT INTO t VALUES (100)");
        var reader = Reader(connection, null, "SELECT fail_at_two(column1) FROM (VALUES (1), (2)); INSERT INTO t VALUES (2)");
        reader.Read().ShouldBeTrue();
        Should.Throw<SqliteException>(() => reader.Read()).Message.ShouldContain("two");
        ConnectionTests.Exec(connection, "ROLLBACK");

        reader.Dispose();

        reader.IsClosed.ShouldBeTrue();
        connection.Close();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    /// <summary>
    /// The connection's Close closes such a reader as above, but quietly, as it closes any: nothing not reached is kept.
    /// </summary>
    [Test]
    public void Closing_the_connection_after_a_transaction_begun_as_sql_ended_keeps_nothing_its_open_reader_had_not_reached()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        ConnectionTests.Exec(connection, "BEGIN; INSERT INTO t VALUES (100)");
        var reader = Reader(connection, null, "SELECT 1; INSERT INTO t VALUES (2)");
        reader.Read().ShouldBeTrue();
        ConnectionTests.Exec(connection, "COMMIT");

        connection.Close();

        reader.IsClosed.ShouldBeTrue();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1,100");
    }

    /// <summary>
    /// A reader of a batch run as written (it holds a <c>SAVEPOINT</c>), outside a transaction, whose statement fails as
    /// it closes: Close throws the error and says that the connection is in a transaction the batch began. Before,
    /// Close ignored it, as Microsoft.Data.Sqlite's does, and the <c>SAVEPOINT</c> stayed open without a word: the
    /// statements sent next ran inside it, reported success, and were rolled back as the connection closed (a review's
    /// finding, older, also after a <c>Cancel()</c> during the closing).
    /// </summary>
    [Test]
    public void A_statement_of_a_batch_run_as_written_that_fails_when_its_reader_closes_fails_the_close([Values] bool cancelled)
    {
        using var connection = OpenWithRowOne(out var connectionString);
        var command = connection.CreateCommand();
        connection.InnerConnection.CreateFunction("cancel_now", () =>
        {
            command.Cancel();
            return 0L;
        });
        command.CommandText = "SELECT 1; SAVEPOINT s; INSERT INTO t VALUES (2); "
            + (cancelled ? "SELECT count(cancel_now()) FROM t, t AS u, t AS v, t AS w, t AS z" : "INSERT INTO t VALUES (1)") + "; RELEASE s";
        var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();

        var error = Should.Throw<SqliteException>(reader.Dispose);

        error.SqliteErrorCode.ShouldBe(cancelled ? SQLitePCL.raw.SQLITE_INTERRUPT : SQLitePCL.raw.SQLITE_CONSTRAINT);
        error.Message.ShouldContain("the connection is in a transaction now");
        ConnectionTests.Exec(connection, "ROLLBACK");
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (3)");
        connection.Close();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1,3");
    }

    /// <summary>
    /// The error a reader's closing throws says what became of the transaction: SQLite rolled it back itself after an
    /// <c>INSERT OR ROLLBACK</c> of a batch run as written, and a reader opened with
    /// <see cref="CommandBehavior.CloseConnection"/> closed the connection, which rolled it back (a review's finding: the
    /// first said the batch's statements were kept, the second that the transaction was still open).
    /// </summary>
    [Test]
    public void The_error_of_a_failed_closing_says_what_became_of_the_transaction([Values] bool closeConnection)
    {
        using var connection = OpenWithRowOne(out var connectionString);
        ConnectionTests.Exec(connection, closeConnection ? "BEGIN; INSERT INTO t VALUES (100)" : "SELECT 1");
        var reader = closeConnection
            ? Reader(connection, null, "SELECT 1; INSERT INTO t VALUES (2); INSERT INTO t VALUES (1)", CommandBehavior.CloseConnection)
            : Reader(connection, null, "SELECT 1; SAVEPOINT s; INSERT INTO t VALUES (2); INSERT OR ROLLBACK INTO t VALUES (1); RELEASE s");
        reader.Read().ShouldBeTrue();

        var error = Should.Throw<SqliteException>(reader.Dispose);

        error.SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        error.Message.ShouldContain(closeConnection ? "closed its connection (CommandBehavior.CloseConnection), which rolled back" : "in no transaction now");
        error.Message.ShouldNotContain("are kept");
        error.Message.ShouldNotContain("still open");
        connection.State.ShouldBe(closeConnection ? ConnectionState.Closed : ConnectionState.Open);
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    /// <summary>
    /// As above for a reader opened with <see cref="CommandBehavior.CloseConnection"/> whose batch, run as written, SQLite
    /// ended the transaction for (<c>INSERT OR ROLLBACK</c>): closing the connection rolled back no transaction, and the
    /// error says the connection was left in none, not that the close rolled one back.
    /// </summary>
    [Test]
    public void The_error_of_a_failed_closing_that_closes_the_connection_after_SQLite_ended_the_transaction_says_so()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        var reader = Reader(connection, null, "SELECT 1; SAVEPOINT s; INSERT INTO t VALUES (2); INSERT OR ROLLBACK INTO t VALUES (1); RELEASE s", CommandBehavior.CloseConnection);
        reader.Read().ShouldBeTrue();

        var error = Should.Throw<SqliteException>(reader.Dispose);

        error.Message.ShouldContain("in no transaction now");
        error.Message.ShouldNotContain("closed its connection");
        connection.State.ShouldBe(ConnectionState.Closed);
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    /// <summary>
    /// A reader of a batch run as written whose statement fails as it closes, with a transaction object on the
    /// connection (the unit of work's own, or one begun after the reader opened): the error is that transaction's,
    /// which refuses to commit, as for a writing batch of its own. Before, closing ignored it, as
    /// Microsoft.Data.Sqlite's does, and the commit kept the batch's first insert alone (a review's finding, older).
    /// </summary>
    [Test]
    public void A_statement_of_a_batch_run_as_written_that_fails_when_its_reader_closes_fails_the_transactions_commit([Values] bool unitOfWork)
    {
        using var connection = OpenWithRowOne(out var connectionString);
        if (unitOfWork)
        {
            Should.Throw<SqliteException>(() => connection.RunInTransaction(transaction =>
            {
                using var reader = Reader(connection, transaction, "SELECT 1; SAVEPOINT s; INSERT INTO t VALUES (2); INSERT INTO t VALUES (1); RELEASE s");
                reader.Read().ShouldBeTrue();
            })).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        }
        else
        {
            var reader = Reader(connection, null, "SELECT 1; INSERT INTO t VALUES (2); INSERT INTO t VALUES (1); PRAGMA user_version = 7");
            reader.Read().ShouldBeTrue();
            using var transaction = connection.BeginTransaction();

            reader.Dispose();

            Should.Throw<SqliteException>(transaction.Commit).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
            transaction.Rollback();
        }

        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    /// <summary>
    /// A batch run as written that sets a savepoint of the name <see cref="SaverDbTransaction.Save"/> used, then fails
    /// as its reader closes: a rollback to that name goes to the batch's own savepoint, after the batch's first insert,
    /// so it does not lift the refusal, and the transaction can only be rolled back whole (a review's finding, older:
    /// the commit kept the first insert).
    /// </summary>
    [Test]
    public void A_rollback_to_a_name_a_failed_batch_run_as_written_set_again_still_refuses_the_commit()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        var transaction = connection.BeginTransaction();
        transaction.Save("a");
        var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (2); SAVEPOINT a; INSERT INTO t VALUES (1)");
        reader.Read().ShouldBeTrue();
        reader.Dispose();

        transaction.Rollback("a");

        Should.Throw<SqliteException>(transaction.Commit).SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_CONSTRAINT);
        transaction.Rollback();
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("1");
    }

    [Test]
    public void A_reader_closed_after_SQLite_ended_the_transaction_itself_writes_nothing_outside_it()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); CREATE TABLE u (x UNIQUE); INSERT INTO u VALUES (1)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();
        Should.Throw<SqliteException>(() => Scalar(connection, transaction, "INSERT OR ROLLBACK INTO u VALUES (1)")); // SQLite rolls back

        reader.Dispose();

        transaction.Rollback();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    /// <summary>
    /// A write the token stopped, beside an open reader of a writing batch, makes SQLite end the transaction. The
    /// reader's statements not reached must not then run in autocommit, whether the reader closes first or the
    /// transaction rolls back first (before, a Rollback first ran them outside the transaction, and they were kept;
    /// and with the interrupt SQLite kept pending for the reader, closing it first did too).
    /// </summary>
    [Test]
    public async Task A_reader_of_a_transaction_a_cancelled_write_ended_keeps_nothing([Values] bool rollbackFirst)
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); CREATE TABLE big (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();
        using (var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(300)))
        using (var write = connection.CreateCommand())
        {
            write.Transaction = transaction;
            // Runs (on this thread: SQLite has no asynchronous I/O) until cancelled; stopping it makes SQLite end the transaction.
            write.CommandText = "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT 1000000000) INSERT INTO big SELECT i FROM c";
            await Should.ThrowAsync<OperationCanceledException>(() => write.ExecuteNonQueryAsync(cancellation.Token));
        }

        if (rollbackFirst)
        {
            transaction.Rollback();
            reader.Dispose();
        }
        else
        {
            reader.Dispose();
            reader.IsClosed.ShouldBeTrue();
            transaction.Rollback();
        }

        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    /// <summary>
    /// As above, with SQLite ending the transaction through an <c>ON CONFLICT ROLLBACK</c>: before, Rollback ran the
    /// reader's INSERT outside the transaction, and it was kept.
    /// </summary>
    [Test]
    public void Rolling_back_a_transaction_SQLite_ended_keeps_nothing_of_an_open_readers_remaining_statements()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); CREATE TABLE u (y UNIQUE ON CONFLICT ROLLBACK)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        ConnectionTests.Exec(connection, "INSERT INTO u VALUES (1)");
        var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();
        Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO u VALUES (1)"));

        transaction.Rollback();

        reader.Dispose();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM u").ShouldBe(0L);
    }

    /// <summary>
    /// The commit runs the reader's statements not reached and closes the SQLite reader under it, but the reader stays
    /// open until its caller closes it: IsClosed says so (a caller that saw it closed would not close it), and its
    /// closing, with CommandBehavior.CloseConnection, still closes the connection.
    /// </summary>
    [Test]
    public void A_CloseConnection_reader_keeps_its_connection_open_through_the_commit_and_closes_it_when_closed()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        var reader = Reader(connection, transaction, SelectThenInsert, CommandBehavior.CloseConnection);
        reader.Read().ShouldBeTrue();

        transaction.Commit();

        reader.IsClosed.ShouldBeFalse();
        connection.State.ShouldBe(ConnectionState.Open);
        reader.Dispose();
        reader.IsClosed.ShouldBeTrue();
        connection.State.ShouldBe(ConnectionState.Closed);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    [Test]
    public void A_query_reader_reads_on_after_its_transaction_commits_as_with_Microsoft_Data_Sqlite()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        using var reader = Reader(connection, transaction, "SELECT x FROM t ORDER BY x");
        reader.Read().ShouldBeTrue();

        transaction.Commit();

        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(2L);
    }

    [Test]
    public void A_batch_that_ends_the_transaction_itself_is_left_to_run_as_written()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction();
        using (var insert = connection.CreateCommand())
        {
            insert.Transaction = transaction;
            insert.CommandText = "INSERT INTO t VALUES (1)";
            insert.ExecuteNonQuery();
        }

        var reader = Reader(connection, transaction, "SELECT 1; COMMIT");
        reader.Read().ShouldBeTrue();

        transaction.Rollback(); // the COMMIT not reached must not run first and commit what is being rolled back

        reader.Dispose();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public async Task A_rollback_does_not_wait_for_a_lock_to_run_statements_it_then_rolls_back()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=60000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction(deferred: true);
        using var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();
        using var holder = HoldWriteLock();

        await Task.Run(transaction.Rollback).WaitAsync(TimeSpan.FromSeconds(30)); // not the 60 s busy timeout

        holder.Dispose();
        ConnectionTests.Scalar(connection, "PRAGMA busy_timeout").ShouldBe(60000L);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public async Task Closing_the_connection_does_not_wait_for_a_lock_to_run_statements_it_then_rolls_back()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=60000");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var transaction = connection.BeginTransaction(deferred: true);
        var reader = Reader(connection, transaction, SelectThenInsert);
        reader.Read().ShouldBeTrue();
        using var holder = HoldWriteLock();

        await Task.Run(connection.Dispose).WaitAsync(TimeSpan.FromSeconds(30)); // not the 60 s busy timeout

        reader.IsClosed.ShouldBeTrue();
        holder.Dispose();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public void A_remaining_statement_that_uses_the_connection_does_not_break_the_rollback()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        connection.InnerConnection.CreateFunction("nested", () =>
        {
            using var nested = connection.CreateCommand(); // tracked by the connection while its readers are finished
            nested.CommandText = "SELECT 5";
            return (long)nested.ExecuteScalar()!;
        });
        var transaction = connection.BeginTransaction();
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (nested())");
        reader.Read().ShouldBeTrue();

        transaction.Rollback();

        connection.GetOpenPhysical("test").InTransaction.ShouldBeFalse();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (7)").ShouldBe(1);
        PoolTests.Scalar(connectionString, "SELECT group_concat(x) FROM t").ShouldBe("7");
    }

    [Test]
    public void A_reader_opened_before_the_transaction_is_left_alone_when_it_ends()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var reader = Reader(connection, null, "SELECT x FROM t ORDER BY x");
        reader.Read().ShouldBeTrue();
        var transaction = connection.BeginTransaction(deferred: true);

        transaction.Commit();

        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(2L);
    }

    private static object? Scalar(SaverDbConnection connection, SaverDbTransaction transaction, string sql)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    /// <summary>An open connection to a new database whose table t (x UNIQUE) holds the row 1.</summary>
    private SaverDbConnection OpenWithRowOne(out string connectionString)
    {
        connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE); INSERT INTO t VALUES (1)");
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        return connection;
    }

    /// <summary>Runs a batch whose second INSERT, of the row 1 again, fails as its reader closes (see <see cref="OpenWithRowOne"/>).</summary>
    private static void FailToFinish(SaverDbConnection connection, SaverDbTransaction transaction)
    {
        using var reader = Reader(connection, transaction, "SELECT 1; INSERT INTO t VALUES (2); INSERT INTO t VALUES (1)");
        reader.Read().ShouldBeTrue();
    }

    private static DbDataReader Reader(
        SaverDbConnection connection, SaverDbTransaction? transaction, string sql, CommandBehavior behavior = CommandBehavior.Default)
    {
        var command = connection.CreateCommand(); // not disposed: that would close its reader
        command.Transaction = transaction;
        command.CommandText = sql;
        return command.ExecuteReader(behavior);
    }

    /// <summary>
    /// Before the caller's transaction rolls back, the statements its open reader of a writing batch has not reached
    /// are run inside it (PooledDataReader.FinishBeforeTransactionEnds), since the SQLite reader would otherwise run
    /// them as it closes, after the rollback, in autocommit. Whether the batch writes is asked of the classifier again
    /// at that moment; the batch's first statement (its CREATE TABLE) has run by then, so it no longer prepares
    /// ("table n already exists"): the text must still count as a write, or the statements left would be skipped,
    /// and the reader's close would write the row after the caller rolled back.
    /// </summary>
    [Test]
    public void A_reader_of_a_batch_whose_first_statement_created_a_table_writes_nothing_after_its_transaction_rolls_back()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();

        using (var transaction = connection.BeginTransaction())
        {
            using var command = connection.CreateCommand();
            command.CommandText = "CREATE TABLE n (x); SELECT x FROM n UNION ALL SELECT 1; INSERT INTO t VALUES (2)";
            var reader = command.ExecuteReader();
            reader.Read().ShouldBeTrue();

            transaction.Rollback();
            reader.Dispose();
        }

        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t")
            .ShouldBe(0L, "the batch's INSERT ran after its transaction was rolled back, in autocommit");
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM sqlite_master WHERE name = 'n'").ShouldBe(0L);
    }

    /// <summary>
    /// Closing a reader of a writing batch while the caller's transaction is open runs the statements it has not reached
    /// and keeps the first error for the transaction, so that it cannot commit the batch without the failed statement
    /// (PooledDataReader.FinishInTransaction). It asks the classifier again whether the batch writes; the batch's first
    /// statement, a CREATE TABLE that has run, no longer prepares: the text must still count as a write, or the
    /// statements left would run as the SQLite reader closes, which ignores their errors, and the commit would keep
    /// half the batch.
    /// </summary>
    [Test]
    public void A_reader_of_a_batch_whose_first_statement_created_a_table_keeps_a_failure_on_close_from_being_committed()
    {
        using var connection = OpenWithRowOne(out var connectionString);
        using var transaction = connection.BeginTransaction();
        using var command = connection.CreateCommand();
        command.CommandText = "CREATE TABLE n (x); SELECT x FROM n UNION ALL SELECT 1; INSERT INTO t VALUES (1)";
        var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();

        reader.Dispose(); // the INSERT fails here (UNIQUE), which Microsoft.Data.Sqlite's reader ignores

        Should.Throw<SqliteException>(transaction.Commit, "the transaction committed the batch without its failed INSERT")
            .SqliteErrorCode.ShouldBe(19);
    }

    /// <summary>
    /// A command that fails to prepare inside the caller's DEFERRED transaction, before that transaction has read
    /// anything, does not start the transaction's read snapshot, as in SQLite and Microsoft.Data.Sqlite (a prepare that
    /// reads the schema ends its own read): the classifier's read of sqlite_schema, which tells a stale schema from a
    /// real error, runs only outside a transaction. Otherwise another connection's write would make the snapshot
    /// stale, and the transaction's first write would fail with SQLITE_BUSY_SNAPSHOT.
    /// </summary>
    [Test]
    public void A_command_that_fails_to_prepare_does_not_start_the_read_snapshot_of_the_callers_deferred_transaction()
    {
        var connectionString = Folder.ConnectionString("Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();

        using (var transaction = connection.BeginTransaction(deferred: true))
        {
            Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO typo VALUES (1)"))
                .Message.ShouldContain("no such table: typo");
            PoolTests.Execute(connectionString, "INSERT INTO t VALUES (1)"); // another connection writes meanwhile

            ConnectionTests.Scalar(connection, "SELECT count(*) FROM t")
                .ShouldBe(1L, "the transaction's snapshot was taken by the failed command's probe, before the other write");
            Should.NotThrow(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)"));
            transaction.Commit();
        }

        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(2L);
    }

    /// <summary>
    /// A reader re-classifies its batch as it closes in the caller's transaction (PooledDataReader.FinishInTransaction):
    /// the batch's first statement, a CREATE TEMP TABLE that has run, no longer prepares ('table n already exists').
    /// That must not start the caller's DEFERRED transaction's snapshot of main, which until then had touched only the
    /// temp database: a row another connection commits afterwards is still seen, and the transaction's first write
    /// does not meet SQLITE_BUSY_SNAPSHOT.
    /// </summary>
    [Test]
    public void Closing_a_reader_of_a_temp_batch_does_not_start_the_read_snapshot_of_the_callers_deferred_transaction()
    {
        var connectionString = Folder.ConnectionString("Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();

        using (var transaction = connection.BeginTransaction(deferred: true))
        {
            using (var command = connection.CreateCommand())
            {
                command.CommandText = "CREATE TEMP TABLE n (x); SELECT 1";
                using var reader = command.ExecuteReader();
                reader.Read().ShouldBeTrue();
            }

            PoolTests.Execute(connectionString, "INSERT INTO t VALUES (1)"); // another connection writes meanwhile

            ConnectionTests.Scalar(connection, "SELECT count(*) FROM t")
                .ShouldBe(1L, "the transaction's snapshot of main was taken by the probe as the reader closed, before the other write");
            Should.NotThrow(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)"));
            transaction.Commit();
        }

        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(2L);
    }
}
