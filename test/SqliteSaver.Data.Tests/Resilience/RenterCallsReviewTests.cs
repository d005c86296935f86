using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Resilience;

/// <summary>Review of RenterCalls (the calls of a renter running on its physical connection): each test shows one defect.</summary>
public class RenterCallsReviewTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Cancel() on a command whose asynchronous write waits at the write gate cancels the connection's call token
    /// (RenterCalls), which stays cancelled until no call of the connection runs. The cancelled call ends on the thread
    /// pool a moment later; a command run on the connection in that moment, which Cancel() was never meant for (and
    /// which SQLite's interrupt, made while no statement ran, did not reach before this change), fails at once with
    /// SQLITE_INTERRUPT.
    /// </summary>
    [Test]
    public async Task Cancel_of_a_call_waiting_at_the_gate_does_not_fail_the_next_command_on_the_connection()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var gate = dataSource.Executor.Gate!;
        await using var holder = dataSource.OpenConnection();
        await using var connection = dataSource.OpenConnection();
        var failures = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            var transaction = holder.BeginTransaction(); // holds the write gate
            await using var insert = connection.CreateCommand();
            insert.CommandText = "INSERT INTO t VALUES ('cancelled')";
            var pending = insert.ExecuteNonQueryAsync();
            Wait.Until(() => gate.WaitingCount == 1, 10);
            insert.Cancel();
            try
            {
                ConnectionTests.Scalar(connection, "SELECT 1").ShouldBe(1L); // another command, never cancelled
            }
            catch (SqliteException error)
            {
                failures.Add($"SqliteException {error.SqliteErrorCode}");
            }

            await Should.ThrowAsync<SqliteException>(pending.WaitAsync(Bound)); // the cancelled write
            transaction.Rollback();
        }

        failures.ShouldBeEmpty("a command run after Cancel() of another call failed");
    }

    /// <summary>
    /// 50824e8 closes a connection on return once a renter set a PRAGMA of the temp schema, recognised by
    /// PhysicalConnection.UnreadablePragmaStatement. SQLite also takes the schema name as a string ('temp') and
    /// allows a comment between PRAGMA and the name; the regex sees neither, so the setting reaches the next renter.
    /// </summary>
    [Test]
    public void A_temp_schema_PRAGMA_written_another_way_does_not_reach_the_next_renter(
        [Values("PRAGMA 'temp'.max_page_count = 2", "PRAGMA /* temp */ temp.max_page_count = 2")] string pragma)
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1"));
        using (var connection = dataSource.OpenConnection())
        {
            ConnectionTests.Exec(connection, pragma);
            ConnectionTests.Pragma(connection, "temp.max_page_count").ShouldBe(2L); // SQLite took it
        }

        using (var connection = dataSource.OpenConnection())
        {
            Should.NotThrow(() => ConnectionTests.Exec(
                connection,
                "CREATE TEMP TABLE ids AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT i, randomblob(100) AS b FROM n"));
        }
    }

    /// <summary>
    /// Cancel() then Close (a timeout handler that cancels a command and disposes its connection): the cancelled call
    /// should report the cancellation, SQLITE_INTERRUPT, as it does when the connection stays open. RenterCalls.EndAll
    /// marks the token as cancelled by Close (_closed) while the call, already cancelled, has not yet reached
    /// RenterCalls.Ended, which then reports an InvalidOperationException that the connection was closed.
    /// </summary>
    [Test]
    public async Task Cancel_then_Close_reports_the_cancellation()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var gate = dataSource.Executor.Gate!;
        await using var holder = dataSource.OpenConnection();
        var transaction = holder.BeginTransaction(); // holds the write gate
        var outcomes = new List<string>();
        for (var i = 0; i < 10; i++)
        {
            var connection = dataSource.OpenConnection();
            var insert = connection.CreateCommand();
            insert.CommandText = "INSERT INTO t VALUES ('cancelled')";
            var pending = insert.ExecuteNonQueryAsync();
            Wait.Until(() => gate.WaitingCount == 1, 10);
            insert.Cancel();
            connection.Close();
            try
            {
                await pending.WaitAsync(Bound);
                outcomes.Add("succeeded");
            }
            catch (Exception error)
            {
                outcomes.Add(error is SqliteException sqlite ? $"SqliteException {sqlite.SqliteErrorCode}" : error.GetType().Name);
            }
        }

        transaction.Rollback();
        outcomes.ShouldAllBe(outcome => outcome == "SqliteException 9", "Cancel() came first: " + string.Join(", ", outcomes));
    }
}
