using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests;

/// <summary>Review of c0f6aa7..4e83d15: each test shows a defect the changes brought in.</summary>
public class ChangeReviewTests : DatabaseTest
{
    /// <summary>
    /// Before the caller's transaction rolls back, the statements its open reader of a writing batch has not reached
    /// are run inside it (PooledDataReader.FinishBeforeTransactionEnds), since the SQLite reader would otherwise run
    /// them as it closes, after the rollback, in autocommit. Whether the batch writes is asked of the classifier again
    /// at that moment; the batch's first statement (its CREATE TABLE) has run by then, so it no longer prepares
    /// ("table n already exists"), and the text is now CommandKind.Invalid instead of a write: the statements left are
    /// skipped, and the reader's close writes the row after the caller rolled back.
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
    /// statement, a CREATE TABLE that has run, no longer prepares, so the text is CommandKind.Invalid: the statements
    /// left run as the SQLite reader closes, which ignores their errors, and the commit keeps half the batch.
    /// </summary>
    [Test]
    public void A_reader_of_a_batch_whose_first_statement_created_a_table_keeps_a_failure_on_close_from_being_committed()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x UNIQUE); INSERT INTO t VALUES (1)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
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
    /// In a rollback-journal database a connection whose cached schema predates a table another connection created
    /// cannot read the schema again while a third connection holds the EXCLUSIVE lock: SQLite's prepare then reports
    /// "no such table" (SQLITE_ERROR) once its busy timeout is spent. The classifier takes that for a command that can
    /// never run (CommandKind.Invalid) and runs it at once, unretried, where a write waited for the lock (BEGIN
    /// IMMEDIATE under the retry policy and its CommandTimeout), read the new schema and succeeded.
    /// </summary>
    [Test]
    public async Task A_write_to_a_table_another_connection_created_waits_for_a_lock_that_keeps_the_schema_from_being_read()
    {
        var connectionString = Folder.ConnectionString(
            "Journal Mode=Delete;Busy Timeout=200;Retry=100;Base Delay=0.01;Max Delay=0.05;Default Timeout=120;Checkpoint Interval=0");
        PoolTests.Execute(connectionString, "CREATE TABLE item (id INTEGER PRIMARY KEY)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM item").ShouldBe(0L); // the schema as it is before t
        Plain("CREATE TABLE t (x)");

        Task<int> insert;
        using (var holder = new SqliteConnection($"Data Source={Folder.File()};Pooling=False"))
        {
            holder.Open();
            using var begin = holder.CreateCommand();
            begin.CommandText = "BEGIN EXCLUSIVE"; // in a rollback journal it keeps readers out too
            begin.ExecuteNonQuery();

            insert = Task.Run(() => ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)"));
            ((IAsyncResult)insert).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(3)); // while the lock is held, it waits
        }

        await Should.NotThrowAsync(insert, "the write failed at once with 'no such table' instead of waiting for the lock");
        (await insert).ShouldBe(1);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    /// <summary>
    /// A command whose first statement does not prepare when the library looks at it (CommandKind.Invalid) runs as it
    /// is: no write gate, no transaction of its own. If another connection creates the missing table between that look
    /// and the run (another process migrating; an authorizer, which SQLite calls as it prepares, makes the moment
    /// certain here), the whole batch runs in autocommit, one statement at a time, and a failure in its last statement
    /// leaves the earlier ones applied, where a failed batch is rolled back whole.
    /// </summary>
    [Test]
    public void A_batch_whose_first_statement_did_not_prepare_when_classified_is_still_rolled_back_whole()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x PRIMARY KEY)");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var handle = connection.InnerConnection.Handle!;
        var selects = 0;
        SQLitePCL.raw.sqlite3_set_authorizer(handle, (SQLitePCL.strdelegate_authorizer)((_, action, _, _, _, _) =>
        {
            if (action == SQLitePCL.raw.SQLITE_SELECT && Interlocked.Increment(ref selects) == 2)
            {
                try
                {
                    Plain("CREATE TABLE later (y)", busyTimeoutSeconds: 1);
                }
                catch (SqliteException)
                {
                    // The write lock is held: no other connection can change the schema now.
                }
            }

            return SQLitePCL.raw.SQLITE_OK;
        }), null);

        try
        {
            Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, "SELECT count(*) FROM later; INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)"));
        }
        finally
        {
            SQLitePCL.raw.sqlite3_set_authorizer(handle, (SQLitePCL.strdelegate_authorizer?)null, null);
        }

        selects.ShouldBeGreaterThanOrEqualTo(2);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L, "the batch's first INSERT was committed although the batch failed");
    }

    /// <summary>
    /// A leading |DataDirectory| in Data Source is read "each time a connection gets the string" (README). A connection
    /// of the shared pool set again to the string it has (a fixture that gives each test a DataDirectory of its own and
    /// sets its connection's string before each) now keeps the data source of the DataDirectory it first had.
    /// </summary>
    [Test]
    public void A_connection_set_again_to_its_DataDirectory_string_follows_a_change_of_DataDirectory()
    {
        var connectionString = $"Data Source=|DataDirectory|{Guid.NewGuid():N}.db";
        var first = Path.Combine(Folder.Path, "first");
        var second = Path.Combine(Folder.Path, "second");
        Directory.CreateDirectory(first);
        Directory.CreateDirectory(second);
        var previous = AppDomain.CurrentDomain.GetData("DataDirectory");
        try
        {
            AppDomain.CurrentDomain.SetData("DataDirectory", first);
            using var connection = new SaverDbConnection(connectionString);
            connection.DataSource.ShouldStartWith(first);
            AppDomain.CurrentDomain.SetData("DataDirectory", second);

            connection.ConnectionString = connectionString;

            connection.DataSource.ShouldStartWith(second);
        }
        finally
        {
            AppDomain.CurrentDomain.SetData("DataDirectory", previous);
        }
    }

    /// <summary>
    /// A data source's connection set to another string moves to the shared pool for it, and before 4e83d15 so did one
    /// set to the string it had. Now one set to its own string stays with its data source even once that is disposed,
    /// so it can no longer be opened at all; there is no initializer or retry strategy left to keep.
    /// </summary>
    [Test]
    public void A_connection_of_a_disposed_data_source_set_to_its_connection_string_can_be_opened()
    {
        var connectionString = Folder.ConnectionString("Checkpoint Interval=0");
        var dataSource = SaverDataSource.Create(connectionString);
        using var connection = dataSource.CreateConnection();
        dataSource.Dispose();

        connection.ConnectionString = connectionString;

        Should.NotThrow(connection.Open, "the connection stayed with the disposed data source");
        ConnectionTests.Scalar(connection, "SELECT 42").ShouldBe(42L);
    }

    /// <summary>Runs SQL on a plain Microsoft.Data.Sqlite connection to the test database, as another process would.</summary>
    private void Plain(string sql, int busyTimeoutSeconds = 30)
    {
        using var other = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        other.Open();
        using var command = other.CreateCommand();
        command.CommandTimeout = busyTimeoutSeconds;
        command.CommandText = "PRAGMA busy_timeout = 0";
        command.ExecuteNonQuery();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}
