using System.Data;
using Dapper;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Review;

/// <summary>Transactions and write safety: units of work, commits, and what a unit of work may report.</summary>
public class TransactionReviewTests : DatabaseTest
{
    /// <summary>
    /// A unit of work whose connection is closed inside it (here by a reader opened with CloseConnection, as helper
    /// methods hand them out) has its transaction rolled back by the close. RunInTransaction must then not return as
    /// if it had committed: its XML doc says it returns "the result of the attempt that committed".
    /// </summary>
    [Test]
    public async Task A_unit_of_work_whose_connection_closed_inside_it_is_not_reported_as_committed([Values] bool async)
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        connection.Execute("CREATE TABLE t (x)");

        int Work(SaverDbTransaction transaction)
        {
            connection.Execute("INSERT INTO t VALUES (1)", transaction: transaction);
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT count(*) FROM t";
            using (var reader = command.ExecuteReader(CommandBehavior.CloseConnection))
            {
                reader.Read();
            }

            return 42;
        }

        var returned = false;
        try
        {
            var result = async
                ? await connection.RunInTransactionAsync((transaction, _) => Task.FromResult(Work(transaction)))
                : connection.RunInTransaction(Work);
            returned = result == 42;
        }
        catch (InvalidOperationException)
        {
            // Telling the caller that nothing was committed is fine.
        }

        using var check = new SaverDbConnection(Folder.ConnectionString());
        var rows = check.ExecuteScalar<long>("SELECT count(*) FROM t");
        if (returned)
        {
            rows.ShouldBe(1L, "RunInTransaction returned the unit of work's result as committed, but its insert was rolled back when the connection closed");
        }
    }

    /// <summary>
    /// A COMMIT sent as SQL inside a unit of work is detected (TransactionEndedBySqliteTests), so that the unit of work
    /// is never run again after it committed part of its work. Sent in one batch with a BEGIN after it, it is not: the
    /// next busy error runs the whole delegate again, and the part committed by the batch is applied twice.
    /// </summary>
    [Test]
    public void A_unit_of_work_whose_batch_commits_and_begins_again_is_not_run_again_after_a_busy_error()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        connection.Execute("CREATE TABLE t (x)");
        var attempts = 0;

        try
        {
            connection.RunInTransaction(
                transaction =>
                {
                    attempts++;
                    connection.Execute("INSERT INTO t VALUES (1)", transaction: transaction);
                    connection.Execute("COMMIT; BEGIN", transaction: transaction); // commits the insert above
                    connection.ExecuteScalar<long>("SELECT count(*) FROM t", transaction: transaction); // the snapshot starts
                    if (attempts == 1)
                    {
                        using var other = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
                        other.Open();
                        other.Execute("INSERT INTO t VALUES (100)"); // makes that snapshot stale
                    }

                    connection.Execute("INSERT INTO t VALUES (2)", transaction: transaction); // SQLITE_BUSY_SNAPSHOT on attempt 1
                },
                deferred: true);
        }
        catch (InvalidOperationException)
        {
            // Refusing to run it again, as for a plain COMMIT sent as SQL, is fine.
        }

        connection.ExecuteScalar<long>("SELECT count(*) FROM t WHERE x = 1").ShouldBe(1L, $"the insert committed by the unit of work's own COMMIT was applied once per attempt ({attempts} attempts)");
    }
}
