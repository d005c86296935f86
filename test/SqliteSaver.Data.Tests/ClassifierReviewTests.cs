using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests;

/// <summary>Review of c0f6aa7..14e6854 (the classifier's probe read and EXPLAIN PRAGMA): each test shows a defect.</summary>
public class ClassifierReviewTests : DatabaseTest
{
    /// <summary>
    /// A command that fails to prepare inside the caller's DEFERRED transaction, before that transaction has read
    /// anything, makes the classifier step its probe read (SELECT 1 FROM sqlite_schema) on the caller's connection:
    /// that starts the transaction's read snapshot, which a failed command never does in SQLite or Microsoft.Data.Sqlite
    /// (a prepare that reads the schema ends its own read). Another connection's write then makes the snapshot stale,
    /// and the transaction's first write, which would have taken the newest snapshot, fails with SQLITE_BUSY_SNAPSHOT.
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
    /// The README: "A command whose first statement SQLite cannot prepare (a syntax error, an unknown table) fails at
    /// once with SQLite's own error, before it runs anything, rather than wait for the write lock first". The probe
    /// read the classifier adds (SELECT 1 FROM sqlite_schema) goes through the application's authorizer; one that
    /// keeps the commands it authorizes away from the schema table (a common sandbox for user SQL; SQLite reads its
    /// schema without asking it) refuses the probe, the classifier takes that for a schema it cannot read, and a typo
    /// queues for the write lock another process holds, failing after its CommandTimeout with the library's timeout
    /// (observed) instead of SQLite Error 1 'no such table' at once (expected; nothing was locked for reading).
    /// </summary>
    [Test]
    public void A_typo_fails_at_once_with_SQLites_error_under_an_authorizer_that_hides_the_schema_table()
    {
        var connectionString = Folder.ConnectionString("Busy Timeout=100;Default Timeout=1;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var handle = connection.InnerConnection.Handle!;
        SQLitePCL.raw.sqlite3_set_authorizer(handle, (SQLitePCL.strdelegate_authorizer)((_, action, table, _, _, _) =>
            action == SQLitePCL.raw.SQLITE_READ && table is "sqlite_master" or "sqlite_schema" ? SQLitePCL.raw.SQLITE_DENY : SQLitePCL.raw.SQLITE_OK), null);
        try
        {
            using var holder = HoldWriteLock(); // another process writing

            var error = Should.Throw<Exception>(() => ConnectionTests.Scalar(connection, "SELECT * FROM typo"));
            error.ShouldBeOfType<SqliteException>("the typo waited for the write lock: " + error.GetType().Name + ": " + error.Message);
            ((SqliteException)error).SqliteErrorCode.ShouldBe(1);
            error.Message.ShouldBe("SQLite Error 1: 'no such table: typo'.");
        }
        finally
        {
            SQLitePCL.raw.sqlite3_set_authorizer(handle, (SQLitePCL.strdelegate_authorizer?)null, null);
        }
    }

    /// <summary>
    /// The probe also runs when a reader re-classifies its batch (PooledDataReader.FinishInTransaction, as it closes in
    /// the caller's transaction): the batch's first statement, a CREATE TEMP TABLE that has run, no longer prepares
    /// ('table n already exists'), so the probe steps a read of main's sqlite_schema inside the caller's DEFERRED
    /// transaction, which until then had touched only the temp database. That starts the transaction's snapshot of
    /// main although no statement of the caller's read it: a row another connection commits afterwards is not seen
    /// (observed count 0, expected 1) and the transaction's first write would meet SQLITE_BUSY_SNAPSHOT.
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
