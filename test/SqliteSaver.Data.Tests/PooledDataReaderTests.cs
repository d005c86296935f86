using System.Data;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests;

/// <summary>
/// The reader <see cref="SaverDbCommand.ExecuteReader()"/> returns: the same results as Microsoft.Data.Sqlite's for
/// the same calls, and its asynchronous calls behaving as its synchronous ones.
/// </summary>
public class PooledDataReaderTests : DatabaseTest
{
    [Test]
    public async Task NextResultAsync_running_a_SAVEPOINT_after_a_batch_failed_to_finish_still_refuses_the_commit_as_NextResult_does([Values] bool async)
    {
        // TransactionReaderTests.A_rollback_to_a_name_set_again_by_a_reader_opened_before_the_failure_still_refuses_the_commit,
        // with the SAVEPOINT run by NextResultAsync as well as by NextResult. SQLite rolls back to the newest savepoint
        // of the name, set after the failed batch's first INSERT, which stays: the commit must still be refused, or
        // that part of the batch is committed without its failed statement.
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
        (async ? await savepoint.NextResultAsync() : savepoint.NextResult()).ShouldBeFalse(); // runs SAVEPOINT a after the batch's first INSERT

        transaction.Rollback("a");

        Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("cannot commit it");
        transaction.Rollback();
        await savepoint.DisposeAsync(); // closing it only now: its close, too, counts it as a batch run as written
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    private static DbDataReader Reader(
        SaverDbConnection connection, SaverDbTransaction? transaction, string sql, CommandBehavior behavior = CommandBehavior.Default)
    {
        var command = connection.CreateCommand(); // not disposed: that would close its reader
        command.Transaction = transaction;
        command.CommandText = sql;
        return command.ExecuteReader(behavior);
    }
}
