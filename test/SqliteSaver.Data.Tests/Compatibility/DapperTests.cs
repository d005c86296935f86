using Dapper;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

public class DapperTests : DatabaseTest
{
    private string _connectionString = null!;

    [SetUp]
    public void CreateTable()
    {
        _connectionString = Folder.ConnectionString("Max Pool Size=2");
        using var connection = new SaverDbConnection(_connectionString);
        connection.Execute("CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER NOT NULL)");
    }

    [Test]
    public void Query_and_Execute_on_a_closed_connection_open_and_return_it()
    {
        using var connection = new SaverDbConnection(_connectionString);

        connection.Execute("INSERT INTO person (name, age) VALUES (@Name, @Age)", new[] { new Person(0, "Ada", 36), new Person(0, "Alan", 41) })
            .ShouldBe(2);
        var people = connection.Query<Person>("SELECT id, name, age FROM person WHERE age > @min ORDER BY id", new { min = 30 }).ToList();
        var first = connection.QueryFirst<Person>("SELECT id, name, age FROM person WHERE name = @name", new { name = "Alan" });
        var count = connection.ExecuteScalar<long>("SELECT count(*) FROM person");

        people.Select(p => p.Name).ShouldBe(["Ada", "Alan"]);
        first.Age.ShouldBe(41);
        count.ShouldBe(2);
        connection.State.ShouldBe(System.Data.ConnectionState.Closed);
        SaverDataSource.GetShared(_connectionString).Statistics.Idle.ShouldBe(1);
    }

    [Test]
    public void An_unbuffered_query_left_early_inside_an_open_reader_leaves_that_reader_reading()
    {
        using var connection = new SaverDbConnection(_connectionString);
        connection.Open();
        connection.Execute("INSERT INTO person (name, age) VALUES ('Ada', 36), ('Alan', 41), ('Grace', 85)");
        using var outer = connection.CreateCommand();
        outer.CommandText = "SELECT id FROM person ORDER BY id";
        using var reader = outer.ExecuteReader();
        var rows = 0;
        while (reader.Read())
        {
            // Dapper calls Cancel() on the command of an unbuffered query that is left before its end.
            connection.Query<string>("SELECT name FROM person ORDER BY id", buffered: false).First().ShouldBe("Ada");
            rows++;
        }

        rows.ShouldBe(3);
    }

    [Test]
    public async Task Async_query_and_execute_work_with_and_without_a_transaction()
    {
        await using var connection = new SaverDbConnection(_connectionString);

        (await connection.ExecuteAsync("INSERT INTO person (name, age) VALUES (@name, @age)", new { name = "Grace", age = 85 })).ShouldBe(1);
        (await connection.QueryAsync<Person>("SELECT id, name, age FROM person")).Single().Name.ShouldBe("Grace");

        await connection.OpenAsync();
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await connection.ExecuteAsync("INSERT INTO person (name, age) VALUES ('Edsger', 72)", transaction: transaction);
            (await connection.QuerySingleAsync<long>("SELECT count(*) FROM person", transaction: transaction)).ShouldBe(2);
            await transaction.RollbackAsync();
        }

        (await connection.QuerySingleAsync<long>("SELECT count(*) FROM person")).ShouldBe(1);

        using (var transaction = connection.BeginTransaction())
        {
            await connection.ExecuteAsync("INSERT INTO person (name, age) VALUES ('Barbara', 84)", transaction: transaction);
            await transaction.CommitAsync();
        }

        (await connection.QueryAsync<string>("SELECT name FROM person ORDER BY id")).ShouldBe(["Grace", "Barbara"]);
    }

    [Test]
    public void Sync_transaction_through_Dapper_commits_and_rolls_back()
    {
        using var connection = new SaverDbConnection(_connectionString);
        connection.Open();

        using (var transaction = connection.BeginTransaction())
        {
            connection.Execute("INSERT INTO person (name, age) VALUES ('Kept', 1)", transaction: transaction);
            transaction.Commit();
        }

        using (var transaction = connection.BeginTransaction())
        {
            connection.Execute("INSERT INTO person (name, age) VALUES ('Dropped', 2)", transaction: transaction);
            connection.Query<string>("SELECT name FROM person", transaction: transaction).Count().ShouldBe(2);
        }

        connection.Query<string>("SELECT name FROM person").ShouldBe(["Kept"]);
    }

    [Test]
    public void Multiple_result_sets_and_buffered_false_work()
    {
        using var connection = new SaverDbConnection(_connectionString);
        connection.Execute("INSERT INTO person (name, age) VALUES ('A', 1), ('B', 2), ('C', 3)");

        using (var grid = connection.QueryMultiple("SELECT count(*) FROM person; SELECT name FROM person ORDER BY id"))
        {
            grid.ReadSingle<long>().ShouldBe(3);
            grid.Read<string>().ShouldBe(["A", "B", "C"]);
        }

        connection.Query<string>("SELECT name FROM person ORDER BY id", buffered: false).First().ShouldBe("A");
        connection.State.ShouldBe(System.Data.ConnectionState.Closed);
    }

    /// <summary>
    /// Dapper's pipelined multi-exec (<see cref="CommandFlags.Pipelined"/>) starts an ExecuteNonQueryAsync per row on a
    /// command of its own and disposes each command before it awaits its task. Writes waiting at the write gate (held
    /// here by another connection's transaction) run on with their statement and parameters after their command is
    /// disposed: every row is inserted once and ExecuteAsync returns 5, as with Microsoft.Data.Sqlite (whose async
    /// calls complete before they return).
    /// </summary>
    [Test]
    public async Task A_pipelined_multi_exec_that_waits_for_the_write_gate_inserts_every_row_once_as_with_MDS()
    {
        const string sql = "INSERT INTO t (x) VALUES (@x)";
        var rows = Enumerable.Range(1, 5).Select(x => new { x }).ToArray();
        long[] expected = [1, 2, 3, 4, 5];
        await using (var mds = new SqliteConnection($"Data Source={Folder.File("mds.db")};Pooling=False"))
        {
            await mds.OpenAsync();
            await mds.ExecuteAsync("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER NOT NULL)");
            (await mds.ExecuteAsync(new CommandDefinition(sql, rows, flags: CommandFlags.Pipelined))).ShouldBe(5);
            (await mds.QueryAsync<long>("SELECT x FROM t ORDER BY x")).ShouldBe(expected);
        }

        await using var writer = new SaverDbConnection(_connectionString);
        await writer.OpenAsync();
        await writer.ExecuteAsync("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER NOT NULL)");
        var transaction = await writer.BeginTransactionAsync(); // holds the process's write gate
        await using var connection = new SaverDbConnection(_connectionString);
        await connection.OpenAsync();
        var gate = SaverDataSource.GetShared(_connectionString).Executor.Gate!;

        // Returns once the first row's write waits at the gate, the others' for it in turn, and Dapper has disposed
        // the first row's command.
        var execute = connection.ExecuteAsync(new CommandDefinition(sql, rows, flags: CommandFlags.Pipelined));
        gate.WaitingCount.ShouldBe(1);
        await transaction.CommitAsync();
        await transaction.DisposeAsync();

        (await execute.WaitAsync(TimeSpan.FromSeconds(60))).ShouldBe(5);
        (await connection.QueryAsync<long>("SELECT x FROM t ORDER BY x")).ShouldBe(expected);
    }

    private sealed record Person(long Id, string Name, long Age);
}
