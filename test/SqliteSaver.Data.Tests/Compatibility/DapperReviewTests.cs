using Dapper;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// Dapper on a <see cref="SaverDbConnection"/> where it behaves differently from Dapper on a plain
/// <see cref="SqliteConnection"/>. Each test states what it observed and what Microsoft.Data.Sqlite does.
/// </summary>
public class DapperReviewTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    private string _connectionString = null!;

    [SetUp]
    public void CreateTables()
    {
        _connectionString = Folder.ConnectionString("Max Pool Size=4");
        using var connection = new SaverDbConnection(_connectionString);
        connection.Execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER NOT NULL)");
        using var mds = Mds();
        mds.Execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER NOT NULL)");
    }

    /// <summary>
    /// Dapper's pipelined multi-exec (<see cref="CommandFlags.Pipelined"/>) starts an ExecuteNonQueryAsync per row on
    /// a command of its own, then, for each in turn, disposes the command and only then awaits its task.
    /// Microsoft.Data.Sqlite runs each ExecuteNonQueryAsync synchronously, so every row is inserted once and
    /// ExecuteAsync returns 5. On a SaverDbConnection the writes wait for the write gate (held here by another
    /// connection's transaction in the process) and are still pending when Dapper disposes their commands: disposing
    /// a command gives the prepared statement its pending execution uses back to the statement cache, which clears its
    /// parameters. Observed: when the gate comes free, ExecuteAsync throws InvalidOperationException "Must add values
    /// for the following parameters: @x" and row 1 is never inserted, while the other rows may still be written after
    /// the call has failed. Expected: 5, and rows 1 to 5 once each, as with Microsoft.Data.Sqlite.
    /// </summary>
    [Test]
    public async Task A_pipelined_multi_exec_that_waits_for_the_write_gate_inserts_every_row_once_as_with_MDS()
    {
        const string sql = "INSERT INTO t (x) VALUES (@x)";
        var rows = Enumerable.Range(1, 5).Select(x => new { x }).ToArray();
        long[] expected = [1, 2, 3, 4, 5];
        await using (var mds = Mds())
        {
            await mds.OpenAsync();
            (await mds.ExecuteAsync(new CommandDefinition(sql, rows, flags: CommandFlags.Pipelined))).ShouldBe(5);
            (await mds.QueryAsync<long>("SELECT x FROM t ORDER BY x")).ShouldBe(expected);
        }

        await using var writer = new SaverDbConnection(_connectionString);
        await writer.OpenAsync();
        var transaction = await writer.BeginTransactionAsync(); // holds the process's write gate
        await using var connection = new SaverDbConnection(_connectionString);
        await connection.OpenAsync();
        var gate = SaverDataSource.GetShared(_connectionString).Executor.Gate!;

        // Returns once every row's write waits at the gate and Dapper has disposed the first row's command.
        var execute = connection.ExecuteAsync(new CommandDefinition(sql, rows, flags: CommandFlags.Pipelined));
        gate.WaitingCount.ShouldBe(5);
        await transaction.CommitAsync();
        await transaction.DisposeAsync();

        Exception? failure = null;
        var result = 0;
        try
        {
            result = await execute.WaitAsync(Bound);
        }
        catch (Exception exception) when (exception is not TimeoutException)
        {
            failure = exception;
        }

        Wait.Until(() => gate.WaitingCount == 0 && !gate.IsHeld); // writes left pending by a failed call have run
        failure.ShouldBeNull();
        result.ShouldBe(5);
        (await connection.QueryAsync<long>("SELECT x FROM t ORDER BY x")).ShouldBe(expected);
    }

    private SqliteConnection Mds() => new($"Data Source={Folder.File("mds.db")};Pooling=False");
}
