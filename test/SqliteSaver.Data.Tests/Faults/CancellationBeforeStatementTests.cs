using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

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
    /// A write of the caller's transaction that its cancellation stops as it returns (SQLite counts a kept statement's
    /// steps over its runs, and calls the progress handler also then, after the statement has made its changes) ends
    /// the transaction, as SQLite's interrupt of a write does: before, the write threw its cancellation, and a Commit
    /// then kept its row (a review's finding). Each insert cancels itself; the first one stopped ends the loop.
    /// </summary>
    [Test]
    public async Task A_cancelled_write_of_the_callers_transaction_cannot_be_committed([Values] bool async)
    {
        await using var connection = await Open();
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
        long? stopped = null;
        for (var i = 0L; i < 200 && stopped is null; i++)
        {
            parameter.Value = i;
            using (cancellation = new CancellationTokenSource())
            {
                try
                {
                    _ = async ? await insert.ExecuteNonQueryAsync(cancellation.Token) : insert.ExecuteNonQuery();
                }
                catch (Exception exception) when (exception is OperationCanceledException or SqliteException { SqliteErrorCode: 9 })
                {
                    stopped = i;
                }
            }
        }

        stopped.ShouldNotBeNull("one of the inserts was stopped");
        Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("SQLite has already ended");
        PoolTests.Scalar(Folder.ConnectionString(), "SELECT count(*) FROM w").ShouldBe(0L);
    }

    /// <summary>A first statement that calls cancel_now once and ends, then one that calls it for each of 81 rows.</summary>
    private static string Batch(bool write) => write
        ? "INSERT INTO w VALUES (cancel_now()); INSERT INTO w SELECT cancel_now() FROM t, t AS u, t AS v, t AS x"
        : "SELECT cancel_now(); SELECT count(cancel_now()) FROM t, t AS u, t AS v, t AS x";

    private async Task<SaverDbConnection> Open()
    {
        _calls = 0;
        var connection = new SaverDbConnection(Folder.ConnectionString());
        await connection.OpenAsync();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x); INSERT INTO t VALUES (1), (2), (3); CREATE TABLE w (x)");
        return connection;
    }
}
