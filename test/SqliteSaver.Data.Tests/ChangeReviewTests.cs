using System.Data;
using System.Diagnostics.Metrics;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Tests.Pooling;
using SQLitePCL;

namespace SqliteSaver.Data.Tests;

/// <summary>
/// Review of b51c674..HEAD (the executor's single autocommit read, TryRentAgain, memoized classification,
/// SaverDbConnection.BeginCall, transaction calls, Dispose during an async execution). Each test states what it
/// observed and what it expected.
/// </summary>
public class ChangeReviewTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Observed: ExecuteReader(CommandBehavior.CloseConnection) in a transaction SQLite has ended (ON CONFLICT ROLLBACK)
    /// still throws InvalidOperationException, but now closes the connection too, which completes the transaction, so
    /// the Rollback its message asks for throws "Rollback was called on a transaction that has already completed".
    /// Expected (as before the change, when Bind refused it before the call; Microsoft.Data.Sqlite also refuses a command in a
    /// transaction rolled back externally before it makes a reader): the command is refused before it runs; the connection stays open and the transaction can be rolled
    /// back. Why: the check moved from SaverDbCommand.Bind (before the call) into Executor.ExecuteCore, whose failure
    /// takes ExecuteDbDataReader's catch, and ReaderFailed closes a CloseConnection command's connection.
    /// </summary>
    [Test]
    public void ExecuteReader_with_CloseConnection_refused_in_a_transaction_SQLite_ended_leaves_the_connection_open()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE ON CONFLICT ROLLBACK); INSERT INTO t VALUES (1)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var transaction = connection.BeginTransaction();
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)");
        Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)")); // SQLite rolls back

        using var select = connection.CreateCommand();
        select.CommandText = "SELECT x FROM t";
        Should.Throw<InvalidOperationException>(() => select.ExecuteReader(CommandBehavior.CloseConnection));

        connection.State.ShouldBe(ConnectionState.Open, "a command refused before it ran closed the connection");
        Should.NotThrow(transaction.Rollback);
    }
}
