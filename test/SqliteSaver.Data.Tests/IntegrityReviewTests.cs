using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests;

/// <summary>Defects found by the integrity review: writes applied twice, lost, or reported done when they were not.</summary>
public class IntegrityReviewTests : DatabaseTest
{
    private const int SqliteFull = 13;

    /// <summary>
    /// The write of an <c>INSERT ... RETURNING</c> read through a reader outside a transaction commits as the reader
    /// closes; meanwhile only queries may run on the connection. A query that fails with SQLITE_FULL (a sort spilling
    /// to a full temporary disk, here a function that reports it) makes SQLite roll back every transaction on the
    /// connection, the reader's write included. Closing the reader must then say that the write was not committed, as
    /// a <c>Commit</c> after SQLite ended a transaction does, rather than return as if it had committed it.
    /// </summary>
    [Test]
    public void A_RETURNING_reader_whose_write_SQLite_rolled_back_does_not_close_as_if_it_had_committed()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        connection.InnerConnection.CreateFunction<long, long>("disk_full", _ => throw new SqliteException("SQLite Error 13: 'database or disk is full'.", SqliteFull));
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t VALUES (1) RETURNING x";
        var reader = insert.ExecuteReader();
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(1L);
        Should.Throw<SqliteException>(() => ConnectionTests.Scalar(connection, "SELECT disk_full(x) FROM t")).SqliteErrorCode.ShouldBe(SqliteFull);

        Exception? closing = null;
        try
        {
            reader.Dispose(); // the write's COMMIT, which SQLite has nothing left to commit for
        }
        catch (Exception error)
        {
            closing = error;
        }

        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L); // SQLite rolled the write back
        closing.ShouldNotBeNull("closing the reader reported its write committed, but the row is not in the database");
    }

    /// <summary>
    /// A batch that stops at a failing statement never reaches the statements after it, and Microsoft.Data.Sqlite
    /// never even prepares them. The classifier prepares every statement of a command to ask SQLite whether it writes,
    /// and skips only those that begin with PRAGMA, because SQLite applies many PRAGMAs as it compiles them. But
    /// <c>EXPLAIN PRAGMA ...</c> compiles the PRAGMA too: classifying the batch switches CHECK constraints off on the
    /// connection although the command failed before its PRAGMA, and a row that breaks the constraint is written.
    /// </summary>
    [Test]
    public void A_PRAGMA_behind_EXPLAIN_in_a_batch_that_fails_before_reaching_it_has_no_effect()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x CHECK (x > 0)); CREATE TABLE n (y NOT NULL)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();

        Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO n VALUES (NULL); EXPLAIN PRAGMA ignore_check_constraints = ON"))
            .SqliteErrorCode.ShouldBe(19);

        Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (-5)")).SqliteErrorCode.ShouldBe(19); // CHECK still holds
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }
}
