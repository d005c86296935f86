using System.Data.Common;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>
/// A caller's token, or a command's Cancel(), cancelled as a step of a reader ends (here by a function of the statement,
/// as it makes the row): the interrupt comes after the row, and SQLite keeps it pending while the statement is active.
/// The step now counts as cancelled: it throws OperationCanceledException (SQLITE_INTERRUPT for Cancel), the reader
/// closes as a cancelled one, and the connection's next statements run. Before, ExecuteReaderAsync and NextResultAsync returned as if nothing happened, and every other
/// statement on the connection failed with a bare SQLITE_INTERRUPT while the reader was open (a chaos probe: a
/// GetColumnSchema after ExecuteReaderAsync whose token's timer fired; then deterministic with the function).
/// </summary>
public class LateCancellationTests : DatabaseTest
{
    [Test]
    public async Task A_query_whose_token_is_cancelled_as_its_first_row_is_made_is_cancelled_and_the_connection_goes_on()
    {
        await using var connection = await Open("INSERT INTO t VALUES (1), (2)");
        using var cancellation = CancelledBy(connection, "cancel_now");
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT x, cancel_now() FROM t";

        var error = await Should.ThrowAsync<OperationCanceledException>(() => command.ExecuteReaderAsync(cancellation.Token));

        error.CancellationToken.ShouldBe(cancellation.Token);
        ConnectionTests.Scalar(connection, "SELECT 5").ShouldBe(5L);
        command.CommandText = "SELECT count(*) FROM t";
        (await command.ExecuteScalarAsync()).ShouldBe(2L);
    }

    /// <summary>
    /// The statements after it do not run either (before the review of the first fix, closing the reader ran them,
    /// rolled back with the write).
    /// </summary>
    [Test]
    public async Task A_write_outside_a_transaction_whose_token_is_cancelled_as_its_first_row_is_made_is_rolled_back()
    {
        await using var connection = await Open();
        using var cancellation = CancelledBy(connection, "cancel_now");
        var ticks = 0;
        connection.InnerConnection.CreateFunction("tick", () => Interlocked.Increment(ref ticks));
        await using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1) RETURNING x + cancel_now(); SELECT tick()";

        await Should.ThrowAsync<OperationCanceledException>(() => command.ExecuteReaderAsync(cancellation.Token));

        ticks.ShouldBe(0);
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(0L);
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (2)"); // the write gate and SQLite's lock were let go
        PoolTests.Scalar(Folder.ConnectionString(), "SELECT group_concat(x) FROM t").ShouldBe("2");
    }

    /// <summary>In the caller's transaction the cancelled write cannot be committed: Commit throws the cancellation.</summary>
    [Test]
    public async Task A_write_in_a_transaction_whose_token_is_cancelled_as_its_first_row_is_made_cannot_be_committed()
    {
        await using var connection = await Open();
        using var cancellation = CancelledBy(connection, "cancel_now");
        await using var transaction = await connection.BeginTransactionAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1) RETURNING x + cancel_now()";

        await Should.ThrowAsync<OperationCanceledException>(() => command.ExecuteReaderAsync(cancellation.Token));

        Should.Throw<OperationCanceledException>(transaction.Commit);
        PoolTests.Scalar(Folder.ConnectionString(), "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public async Task NextResultAsync_whose_token_is_cancelled_as_the_next_statements_first_row_is_made_is_cancelled()
    {
        await using var connection = await Open("INSERT INTO t VALUES (1)");
        using var cancellation = CancelledBy(connection, "cancel_now");
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1; SELECT cancel_now(); SELECT 3";
        await using var reader = await command.ExecuteReaderAsync(cancellation.Token);

        var next = reader.NextResultAsync(cancellation.Token);

        await Should.ThrowAsync<OperationCanceledException>(() => next);
        next.IsCanceled.ShouldBeTrue("a cancelled task, not a faulted one");
        reader.IsClosed.ShouldBeTrue();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(1L);
    }

    /// <summary>
    /// A reader of a batch that only reads, cancelled so in a transaction begun as SQL (a BEGIN sent as a command):
    /// the transaction stays open with what it wrote before, to be committed. Only a writing batch's cancellation
    /// rolls such a transaction back, as it may have been stopped after its changes.
    /// </summary>
    [Test]
    public async Task NextResultAsync_of_a_query_cancelled_so_leaves_the_transaction_begun_as_SQL_open()
    {
        await using var connection = await Open();
        using var cancellation = CancelledBy(connection, "cancel_now");
        ConnectionTests.Exec(connection, "BEGIN");
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1; SELECT cancel_now(); SELECT 3";
        await using var reader = await command.ExecuteReaderAsync(cancellation.Token);

        await Should.ThrowAsync<OperationCanceledException>(() => reader.NextResultAsync(cancellation.Token));

        reader.IsClosed.ShouldBeTrue();
        ConnectionTests.Exec(connection, "COMMIT");
        PoolTests.Scalar(Folder.ConnectionString(), "SELECT count(*) FROM t").ShouldBe(1L);
    }

    /// <summary>
    /// A command's <see cref="DbCommand.Cancel"/> that lands as its ExecuteReader ends, after the first row: the
    /// execution throws SQLITE_INTERRUPT, as one Cancel interrupts does, and the connection's next statements run.
    /// </summary>
    [TestCase(false)]
    [TestCase(true)]
    public async Task A_query_whose_command_is_cancelled_as_its_first_row_is_made_throws_the_interrupt_and_the_connection_goes_on(bool async)
    {
        await using var connection = await Open("INSERT INTO t VALUES (1)");
        await using var command = connection.CreateCommand();
        connection.InnerConnection.CreateFunction("cancel_command", () =>
        {
            command.Cancel();
            return 0L;
        });
        command.CommandText = "SELECT x, cancel_command() FROM t";

        var error = async
            ? await Should.ThrowAsync<Microsoft.Data.Sqlite.SqliteException>(() => command.ExecuteReaderAsync())
            : Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => command.ExecuteReader());

        error.SqliteErrorCode.ShouldBe(SQLitePCL.raw.SQLITE_INTERRUPT);
        ConnectionTests.Scalar(connection, "SELECT 5").ShouldBe(5L);
    }

    private async Task<SaverDbConnection> Open(string? fill = null)
    {
        var connection = new SaverDbConnection(Folder.ConnectionString());
        await connection.OpenAsync();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x)" + (fill is null ? "" : "; " + fill));
        return connection;
    }

    /// <summary>A token source that the function <paramref name="name"/>, called in a statement, cancels.</summary>
    private static CancellationTokenSource CancelledBy(SaverDbConnection connection, string name)
    {
        var cancellation = new CancellationTokenSource();
        connection.InnerConnection.CreateFunction(name, () =>
        {
            cancellation.Cancel();
            return 0L;
        });
        return cancellation;
    }
}
