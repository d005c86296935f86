using System.Data;
using Dapper;
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
}
