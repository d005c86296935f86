using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Pooling;
using SQLitePCL;
using static SqliteSaver.Data.Tests.ConnectionTests;

namespace SqliteSaver.Data.Tests.Pooling;

/// <summary>
/// Each physical connection keeps its commands prepared by text: a new command with text run before uses the
/// statement SQLite prepared the first time, and nothing about what the command does changes. SQLite's authorizer,
/// which it calls as it compiles a statement, counts the preparations.
/// </summary>
public class StatementCacheTests : DatabaseTest
{
    private const string Select = "SELECT x FROM t WHERE rowid = $x";

    [Test]
    public void A_new_command_with_text_run_before_is_not_prepared_again_in_the_same_rental_or_the_next()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        Setup(connectionString);
        Compiles compiles;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            compiles = new Compiles(connection);
            Query(connection, Select, 1).ShouldBe(1L);
            compiles.Count.ShouldBe(2); // to classify it, and to run it
            compiles.Reset();
            Query(connection, Select, 1).ShouldBe(1L);
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        for (var call = 0; call < 3; call++)
        {
            Query(next, Select, 2).ShouldBe(2L);
        }

        compiles.Count.ShouldBe(0);
        Query(next, "SELECT x FROM t WHERE rowid = $x + 0", 2).ShouldBe(2L);
        compiles.Count.ShouldBe(2); // the counter sees this physical connection: new text is prepared (and classified)
    }

    [Test]
    public void With_a_cache_size_of_zero_every_command_is_prepared_afresh()
    {
        var connectionString = Folder.ConnectionString("Statement Cache Size=0");
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        Query(connection, Select, 1).ShouldBe(1L);
        compiles.Reset();

        Query(connection, Select, 1).ShouldBe(1L);
        Query(connection, Select, 2).ShouldBe(2L);

        compiles.Count.ShouldBe(2);
    }

    [Test]
    public void The_least_recently_used_statement_is_evicted_when_the_cache_is_full()
    {
        var connectionString = Folder.ConnectionString("Statement Cache Size=2");
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        Scalar(connection, "SELECT x FROM t WHERE rowid = 1");
        Scalar(connection, "SELECT x FROM t WHERE rowid = 2");
        Scalar(connection, "SELECT x FROM t WHERE rowid = 1");
        Scalar(connection, "SELECT x FROM t WHERE rowid = 3");
        compiles.Reset();

        Scalar(connection, "SELECT x FROM t WHERE rowid = 1");
        compiles.Count.ShouldBe(0);
        Scalar(connection, "SELECT x FROM t WHERE rowid = 2");
        compiles.Count.ShouldBe(1);
    }

    [Test]
    public void A_kept_PRAGMA_returns_what_was_set_since_it_was_prepared()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();

        Pragma(connection, "busy_timeout").ShouldBe(5000L);
        Exec(connection, "PRAGMA busy_timeout = 77");

        Pragma(connection, "busy_timeout").ShouldBe(77L);
    }

    [Test]
    public void A_kept_statement_sees_a_changed_schema()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        FieldCount(connection).ShouldBe(2);

        Exec(connection, "ALTER TABLE t ADD COLUMN added TEXT");
        compiles.Reset();

        FieldCount(connection).ShouldBe(3);
        compiles.Count.ShouldBe(1); // SQLite prepared the kept statement again
        FieldCount(connection).ShouldBe(3);
        compiles.Count.ShouldBe(1); // and it is still kept

        static int FieldCount(SaverDbConnection connection)
        {
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT * FROM t";
            using var reader = command.ExecuteReader();
            return reader.FieldCount;
        }
    }

    [Test]
    public void Two_readers_of_the_same_text_read_at_once()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        const string select = "SELECT x FROM t ORDER BY x";
        using (var first = connection.CreateCommand())
        using (var second = connection.CreateCommand())
        {
            first.CommandText = second.CommandText = select;
            using var a = first.ExecuteReader();
            using var b = second.ExecuteReader();
            a.Read().ShouldBeTrue();
            b.Read().ShouldBeTrue();
            b.Read().ShouldBeTrue();
            a.GetInt64(0).ShouldBe(1L);
            b.GetInt64(0).ShouldBe(2L);
        }

        compiles.Reset();
        Scalar(connection, select).ShouldBe(1L);
        compiles.Count.ShouldBe(0);
    }

    /// <summary>
    /// A full cache evicts only a statement no one holds: one whose reader is still open stays with it, and the
    /// reader reads on, while a command with new text run meanwhile is not kept. Evicting the least recently used one
    /// held or not disposed the open reader's command under it, which no test caught (a hunt's mutation).
    /// </summary>
    [Test]
    public void A_full_cache_never_evicts_a_statement_whose_reader_is_still_open()
    {
        const string select = "SELECT x FROM t ORDER BY x";
        var connectionString = Folder.ConnectionString("Statement Cache Size=1");
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        Scalar(connection, select).ShouldBe(1L); // kept: the cache is full
        using var command = connection.CreateCommand();
        command.CommandText = select;
        using var reader = command.ExecuteReader(); // holds the kept statement
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(1L);

        Scalar(connection, "SELECT x FROM t WHERE x = 3").ShouldBe(3L); // its return finds the cache full

        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(2L);
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(3L);
        reader.Read().ShouldBeFalse();
        reader.Close();

        using var compiles = new Compiles(connection);
        Scalar(connection, select).ShouldBe(1L);
        compiles.Reset();
        Scalar(connection, select).ShouldBe(1L);
        compiles.Count.ShouldBe(0); // still kept once its reader gave it back
    }

    /// <summary>
    /// A command run again takes back the kept statement it ran on only while no one holds it: when another command
    /// with its text has since taken it for a reader still open, the command gets a statement of its own, and the
    /// reader reads on. Taking it back regardless ran the command on the statement the reader holds, which
    /// Microsoft.Data.Sqlite refused ("An open reader is already associated with this command"), and no test caught
    /// it (a hunt's mutation).
    /// </summary>
    [Test]
    public void A_command_run_again_does_not_take_back_its_kept_statement_from_another_commands_open_reader()
    {
        const string select = "SELECT x FROM t ORDER BY x";
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var again = connection.CreateCommand();
        again.CommandText = select;
        again.ExecuteScalar().ShouldBe(1L); // its statement, kept, given back
        using var other = connection.CreateCommand();
        other.CommandText = select;
        using var reader = other.ExecuteReader(); // takes the kept statement
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(1L);

        again.ExecuteScalar().ShouldBe(1L);

        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(2L);
        reader.Read().ShouldBeTrue();
        reader.GetInt64(0).ShouldBe(3L);
        reader.Read().ShouldBeFalse();
    }

    [Test]
    public void A_command_cannot_run_again_while_its_reader_is_open()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT x FROM t";
        using var reader = command.ExecuteReader();

        Should.Throw<InvalidOperationException>(() => command.ExecuteScalar()).Message.ShouldContain("reader");
        Should.Throw<InvalidOperationException>(() => command.CommandText = "SELECT 2").Message.ShouldBe("CommandText: a reader of this command is still open; close it first.");
        command.CommandText = "SELECT x FROM t"; // the same text changes nothing, so it is allowed (Microsoft.Data.Sqlite refuses any set)
        reader.Read().ShouldBeTrue();

        reader.Close();
        command.ExecuteScalar().ShouldBe(1L);
    }

    /// <summary>Disposing a command closes its open reader, as Microsoft.Data.Sqlite's does, which commits the write left open for it.</summary>
    [Test]
    public void Disposing_a_command_closes_its_open_reader_and_commits_its_write()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t (x) VALUES (4) RETURNING x";
        var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();

        command.Dispose();

        reader.IsClosed.ShouldBeTrue();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(4L);
    }

    [Test]
    public void A_reader_left_open_at_close_gives_its_statement_back_reset_for_the_next_renter()
    {
        const string select = "SELECT x FROM t ORDER BY x";
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        Setup(connectionString);
        Compiles compiles;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            compiles = new Compiles(connection);
            using var command = connection.CreateCommand();
            command.CommandText = select;
            var reader = command.ExecuteReader();
            reader.Read().ShouldBeTrue();
        }

        InsertZeroElsewhere();

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        compiles.Reset();
        Scalar(next, select).ShouldBe(0L); // the first row, and of the database as it is now: no stale snapshot
        compiles.Count.ShouldBe(0);
    }

    [Test]
    public async Task A_reader_closed_with_its_connection_says_it_is_closed_as_Microsoft_Data_Sqlite_does()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT x FROM t ORDER BY x";
        using var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();
        connection.Close();

        reader.IsClosed.ShouldBeTrue();
        Should.Throw<InvalidOperationException>(() => reader.Read()).Message.ShouldContain("reader is closed");
        Should.Throw<InvalidOperationException>(() => reader.NextResult()).Message.ShouldContain("reader is closed");
        (await Should.ThrowAsync<InvalidOperationException>(() => reader.NextResultAsync())).Message.ShouldContain("reader is closed");
    }

    [TestCase("run", 2)]
    [TestCase("prepared first", 2)]
    [TestCase("failed first", 2)]
    [TestCase("run", 12)]
    [TestCase("run", 2, "$")]
    [TestCase("run", 2, ":")]
    [TestCase("run", 12, ":")]
    public void Parameters_that_bind_one_statement_parameter_twice_never_meet_a_value_bound_by_an_earlier_command(string path, int parameters, string prefix = "@")
    {
        var others = string.Concat(Enumerable.Range(0, parameters - 2).Select(i => $", @p{i}"));
        var select = $"SELECT {prefix}a, {prefix}b{others}";
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = select;
            command.Parameters.AddWithValue($"{prefix}a", 1);
            command.Parameters.AddWithValue($"{prefix}b", "secret of the first renter");
            AddOthers(command, parameters);
            command.ExecuteScalar();
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        using var aliased = next.CreateCommand();
        aliased.CommandText = select;
        switch (path)
        {
            case "prepared first":
                aliased.Prepare(); // takes the kept statement before any parameter is added
                break;
            case "failed first":
                Should.Throw<InvalidOperationException>(() => aliased.ExecuteScalar()); // no parameters: takes it, and fails
                break;
        }

        aliased.Parameters.AddWithValue($"{prefix}a", 2);
        aliased.Parameters.AddWithValue("a", 3); // binds @a (or $a, :a) again, and Microsoft.Data.Sqlite counts two bound
        AddOthers(aliased, parameters);
        using var reader = aliased.ExecuteReader();

        reader.Read().ShouldBeTrue();
        reader.IsDBNull(1).ShouldBeTrue();

        static void AddOthers(SaverDbCommand command, int parameters)
        {
            for (var i = 0; i < parameters - 2; i++)
            {
                command.Parameters.AddWithValue($"@p{i}", i);
            }
        }
    }

    [Test]
    public void A_statement_whose_parameters_held_large_values_in_all_is_not_kept()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        var small = new string('s', StatementCache.MaxKeptValueLength / 4);
        Select(connection, small, small).ShouldBe(1L);
        compiles.Reset();

        Select(connection, small, small).ShouldBe(1L);
        compiles.Count.ShouldBe(0);
        Select(connection, small + small, small + small + "!").ShouldBe(1L); // one character over 64 KiB in all
        compiles.Count.ShouldBe(0); // it ran prepared, and was then let go
        Select(connection, small, small).ShouldBe(1L);
        compiles.Count.ShouldBe(1);

        static object? Select(SaverDbConnection connection, string first, string second)
        {
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT x FROM t WHERE rowid = 1 AND length($first) + length($second) > 0";
            command.Parameters.AddWithValue("$first", first);
            command.Parameters.AddWithValue("$second", second);
            return command.ExecuteScalar();
        }
    }

    [TestCase(0, 0)]
    [TestCase(1, 1)]
    public void Text_longer_than_16_KiB_is_not_kept(int beyond, int compiled)
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        const string Query = "SELECT x FROM t WHERE rowid = 1 /*";
        var longText = Query + new string(' ', StatementCache.MaxKeptTextLength - Query.Length - 2 + beyond) + "*/";
        Scalar(connection, longText).ShouldBe(1L);
        compiles.Reset();

        Scalar(connection, longText).ShouldBe(1L);

        compiles.Count.ShouldBe(compiled); // 16 KiB exactly is kept
    }

    [Test]
    public void A_command_run_in_a_loop_is_prepared_once_even_when_it_is_not_kept()
    {
        var connectionString = Folder.ConnectionString("Statement Cache Size=0");
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        using var command = connection.CreateCommand();
        command.CommandText = Select;
        var x = command.Parameters.AddWithValue("$x", 1L);

        for (var row = 1L; row <= 3; row++)
        {
            x.Value = row;
            command.ExecuteScalar().ShouldBe(row);
        }

        compiles.Count.ShouldBe(2); // once to classify it, once to run it
    }

    /// <summary>
    /// A command that holds on to a statement the cache cannot keep runs on the connection it is moved to, not with
    /// the statement of the connection it ran on before.
    /// </summary>
    [Test]
    public void A_command_whose_statement_is_not_kept_runs_on_the_connection_it_is_moved_to()
    {
        using var first = new SaverDbConnection(Folder.ConnectionString("Statement Cache Size=0", "first.db"));
        first.Open();
        using var second = new SaverDbConnection(Folder.ConnectionString("Statement Cache Size=0", "second.db"));
        second.Open();
        Exec(second, "CREATE TABLE t (x)");
        using var command = first.CreateCommand();
        command.CommandText = "SELECT count(*) FROM sqlite_schema";
        command.ExecuteScalar().ShouldBe(0L);

        command.Connection = second;

        command.ExecuteScalar().ShouldBe(1L);
    }

    /// <summary>A command that holds on to a statement the cache cannot keep lets it go when its text changes.</summary>
    [Test]
    public void A_command_whose_statement_is_not_kept_runs_its_new_text_once_the_text_changes()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString("Statement Cache Size=0"));
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1";
        command.ExecuteScalar().ShouldBe(1L);

        command.CommandText = "SELECT 2";

        command.ExecuteScalar().ShouldBe(2L);
    }

    [Test]
    public void A_command_run_again_after_its_kept_statement_was_evicted_or_on_another_connection_gets_a_statement_of_that_connection()
    {
        var connectionString = Folder.ConnectionString("Statement Cache Size=1");
        Setup(connectionString);
        using var first = new SaverDbConnection(connectionString);
        first.Open();
        using var compiles = new Compiles(first);
        using var command = first.CreateCommand();
        command.CommandText = Select;
        var x = command.Parameters.AddWithValue("$x", 1L);
        command.ExecuteScalar().ShouldBe(1L);
        Query(first, "SELECT x FROM t WHERE rowid = $x + 0", 2).ShouldBe(2L); // evicts the command's statement
        compiles.Reset();

        x.Value = 3L;
        command.ExecuteScalar().ShouldBe(3L);
        compiles.Count.ShouldBe(1); // prepared again: the evicted one was disposed

        using var second = new SaverDbConnection(connectionString);
        second.Open(); // another physical connection: the first is still rented
        using var compilesOnSecond = new Compiles(second);
        command.Connection = second;
        x.Value = 2L;
        command.ExecuteScalar().ShouldBe(2L);
        compilesOnSecond.Count.ShouldBe(1); // the second's own statement, not the one the first connection keeps
        compiles.Count.ShouldBe(1);
    }

    [Test]
    public void Commands_never_disposed_on_a_long_lived_connection_are_not_kept_alive_by_it_and_share_the_kept_statement()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);

        var commands = RunWithoutDisposing(connection, 100);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        commands.ShouldAllBe(static command => !command.IsAlive); // as Microsoft.Data.Sqlite's are collected
        compiles.Count.ShouldBe(2); // classified, and prepared once: each command took the kept statement and gave it back
        Query(connection, Select, 3).ShouldBe(3L);
    }

    [Test]
    public void A_prepared_command_is_kept_for_the_next_command_with_its_text()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = Select;
            command.Prepare();
        }

        compiles.Count.ShouldBe(1);
        Query(connection, Select, 3).ShouldBe(3L);
        compiles.Count.ShouldBe(2); // classified on its first execution; not prepared again
    }

    [Test]
    public async Task Asynchronous_commands_and_readers_use_kept_statements()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        using var compiles = new Compiles(connection);
        Query(connection, Select, 1).ShouldBe(1L);
        compiles.Reset();

        await using (var command = connection.CreateCommand())
        {
            command.CommandText = Select;
            command.Parameters.AddWithValue("$x", 2L);
            (await command.ExecuteScalarAsync()).ShouldBe(2L);
        }

        await using (var command = connection.CreateCommand())
        {
            command.CommandText = Select;
            command.Parameters.AddWithValue("$x", 3L);
            await using var reader = await command.ExecuteReaderAsync();
            (await reader.ReadAsync()).ShouldBeTrue();
            reader.GetInt64(0).ShouldBe(3L);
        }

        compiles.Count.ShouldBe(0);
    }

    [Test]
    public void A_CloseConnection_reader_gives_its_statement_back_before_the_connection_goes_to_the_next_renter()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        Setup(connectionString);
        Compiles compiles;
        var connection = new SaverDbConnection(connectionString);
        connection.Open();
        compiles = new Compiles(connection);
        var command = connection.CreateCommand();
        command.CommandText = Select;
        command.Parameters.AddWithValue("$x", 1L);
        using (var reader = command.ExecuteReader(System.Data.CommandBehavior.CloseConnection))
        {
            reader.Read().ShouldBeTrue();
        }

        connection.State.ShouldBe(System.Data.ConnectionState.Closed);
        compiles.Reset();
        using var next = new SaverDbConnection(connectionString);
        next.Open();
        Query(next, Select, 2).ShouldBe(2L);
        compiles.Count.ShouldBe(0);
        command.Dispose(); // after the connection went to the next renter: nothing of the next renter's changes
        Query(next, Select, 3).ShouldBe(3L);
        compiles.Count.ShouldBe(0);
    }

    [Test]
    public void A_reader_closed_by_a_failing_statement_lets_its_command_run_again_and_gives_its_statement_back()
    {
        const string batch = "SELECT x FROM t WHERE rowid = 1; SELECT json($json)";
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        Setup(connectionString);
        Compiles compiles;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            compiles = new Compiles(connection);
            using var command = connection.CreateCommand();
            command.CommandText = batch;
            var json = command.Parameters.AddWithValue("$json", "[1]");
            command.ExecuteScalar().ShouldBe(1L); // every statement prepared
            json.Value = "not json";
            var reader = command.ExecuteReader();
            reader.Read().ShouldBeTrue();
            Should.Throw<SqliteException>(() => reader.NextResult());

            reader.IsClosed.ShouldBeTrue();
            json.Value = "[1]";
            using var rerun = command.ExecuteReader(); // the command runs again
            rerun.Read().ShouldBeTrue();
        }

        compiles.Reset();
        using var next = new SaverDbConnection(connectionString);
        next.Open();
        using var again = next.CreateCommand();
        again.CommandText = batch;
        again.Parameters.AddWithValue("$json", "[2]");
        again.ExecuteScalar().ShouldBe(1L);
        compiles.Count.ShouldBe(0); // the statement was given back to the cache, not left held
    }

    [Test]
    public void A_reader_is_closed_at_Close_even_after_a_Close_that_failed_to_commit_another_of_its_writes()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        Setup(connectionString);
        using (var setup = new SaverDbConnection(connectionString))
        {
            setup.Open();
            Exec(setup, "CREATE TABLE u (y NOT NULL)");
        }

        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t (x) VALUES (9) RETURNING x; INSERT INTO u VALUES (NULL)";
        var write = command.ExecuteReader();
        write.Read().ShouldBeTrue();
        Should.Throw<SqliteException>(connection.Close); // the reader's last statement fails as Close finishes it

        connection.Open();
        command.CommandText = "SELECT x FROM t ORDER BY x";
        var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();
        connection.Close();

        reader.IsClosed.ShouldBeTrue();
        InsertZeroElsewhere();

        connection.Open();
        Scalar(connection, "SELECT count(*) FROM t").ShouldBe(4L); // no snapshot left from the reader: the row is seen
    }

    [TestCase(60_000)]
    [TestCase(StatementCache.MaxKeptValueLength)] // each value, and all of them, at the bound exactly
    public void The_kept_statements_hold_at_most_1_MiB_of_bound_text_and_blobs_in_all(int valueLength)
    {
        const int statements = 20;
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        var large = new string('v', valueLength);
        for (var i = 0; i < statements; i++)
        {
            SelectWithValue(connection, i, large);
        }

        compiles.Reset();
        for (var i = 0; i < statements; i++)
        {
            SelectWithValue(connection, i, "small");
        }

        compiles.Count.ShouldBe(statements - (StatementCache.MaxKeptValueLengthInAll / large.Length)); // 17 were kept, or 16
    }

    [Test]
    public void A_kept_statement_run_again_and_again_with_a_large_value_stays_kept()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        var large = new string('v', 60_000);
        SelectWithValue(connection, 0, large);
        compiles.Reset();

        for (var run = 0; run < 2 * StatementCache.MaxKeptValueLengthInAll / large.Length; run++)
        {
            SelectWithValue(connection, 0, large); // its value counts once towards the 1 MiB, however often it runs
        }

        compiles.Count.ShouldBe(0);
    }

    /// <summary>
    /// A kept statement run again with its large value still counts that value towards the 1 MiB once it is back: a
    /// statement run after the kept ones have filled it, and run again in a second round, finds no room.
    /// </summary>
    [Test]
    public void Kept_statements_run_again_with_their_large_values_still_fill_the_1_MiB()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        var large = new string('v', 60_000);
        var kept = StatementCache.MaxKeptValueLengthInAll / large.Length;
        for (var round = 0; round < 2; round++)
        {
            for (var i = 0; i < kept; i++)
            {
                SelectWithValue(connection, i, large);
            }
        }

        SelectWithValue(connection, kept, large); // no room left: it runs, and is then let go
        compiles.Reset();

        SelectWithValue(connection, kept, "small");

        compiles.Count.ShouldBe(1);
    }

    /// <summary>Blobs count towards the bound on a kept statement's values as text does.</summary>
    [Test]
    public void A_statement_whose_parameter_held_a_blob_over_64_KiB_is_not_kept()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        var blob = new byte[StatementCache.MaxKeptValueLength + 1];
        SelectWithValue(connection, 0, blob);
        compiles.Reset();

        SelectWithValue(connection, 0, "small");

        compiles.Count.ShouldBe(1); // it ran, and was then let go
    }

    [Test]
    public void Evicted_statements_leave_room_for_the_values_of_those_kept_after_them()
    {
        var connectionString = Folder.ConnectionString("Statement Cache Size=1");
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        var large = new string('v', 60_000);
        var last = 2 * StatementCache.MaxKeptValueLengthInAll / large.Length;
        for (var i = 0; i <= last; i++)
        {
            SelectWithValue(connection, i, large); // evicts the one before
        }

        compiles.Reset();

        SelectWithValue(connection, last, large);

        compiles.Count.ShouldBe(0);
    }

    /// <summary>Runs a query, the <paramref name="i"/>th of its kind, whose parameter holds <paramref name="value"/>.</summary>
    private static void SelectWithValue(SaverDbConnection connection, int i, object value)
    {
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT x FROM t WHERE rowid = 1 AND length($value) > 0 AND {i} >= 0";
        command.Parameters.AddWithValue("$value", value);
        command.ExecuteScalar().ShouldBe(1L);
    }

    /// <summary>Inserts a row with x = 0 through a connection of its own, as another process would.</summary>
    /// <summary>
    /// SQLite does not compile a statement again when a table it found by an unqualified name in an attached database
    /// comes to be hidden by one created in main: a kept read went on reading the database the connection initializer
    /// attached, and a kept insert writing it, in every later rental, where Microsoft.Data.Sqlite's fresh statement
    /// finds main's (a statement-cache hunt).
    /// </summary>
    [Test]
    public void A_table_created_in_main_hides_an_attached_ones_from_a_statement_run_before([Values] bool inTheSameRental)
    {
        using var dataSource = AttachingArchive();
        var connection = dataSource.OpenConnection();
        Scalar(connection, "SELECT v FROM u").ShouldBe("archive");
        Exec(connection, "INSERT INTO u VALUES ('first')");
        if (!inTheSameRental)
        {
            connection.Dispose();
            connection = dataSource.OpenConnection();
        }

        CreateUInMainElsewhere(connection);

        Scalar(connection, "SELECT v FROM u").ShouldBe("main");
        Exec(connection, "INSERT INTO u VALUES ('first')");
        Scalar(connection, "SELECT count(*) FROM main.u").ShouldBe(2L);
        connection.Dispose();
    }

    /// <summary>
    /// As above, for a command run again after its connection closed and opened again (on the same physical
    /// connection): its statement, which the cache could not keep, was taken back at Close, and it is prepared afresh,
    /// as Microsoft.Data.Sqlite's is. Also once the connection has pruned its list of the commands holding a statement,
    /// as it does when that list grows: dropping one that still held its statement left it to be run again on the
    /// statement compiled in the earlier rental, which no test caught (a hunt's mutation).
    /// </summary>
    [Test]
    public void A_command_run_again_after_its_connection_closed_and_opened_again_is_prepared_afresh([Values(0, 20)] int othersRunBeside)
    {
        using var dataSource = AttachingArchive(); // every statement is prepared afresh, and held by its command, not kept
        using var connection = dataSource.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT v FROM u";
        command.ExecuteScalar().ShouldBe("archive");
        for (var i = 0; i < othersRunBeside; i++)
        {
            Scalar(connection, "SELECT 1");
        }

        connection.Close();
        connection.Open();
        CreateUInMainElsewhere(connection);

        command.ExecuteScalar().ShouldBe("main");
    }

    /// <summary>
    /// As above, for a database a command attached in the rental, and a table the same connection creates; and a
    /// REINDEX, which SQLite compiles for the databases attached as it prepares it, run before the ATTACH.
    /// </summary>
    /// <remarks>
    /// Also for the REINDEX run again by the command that ran it before the ATTACH, which rents the statement it gave
    /// back without a lookup (a hunt's mutation: it re-rented the statement compiled for main alone).
    /// </remarks>
    [Test]
    public void After_an_ATTACH_no_statement_run_before_is_used([Values] bool reindexRunAgainByItsCommand)
    {
        var aux = Folder.File("aux.db");
        using (var other = new SqliteConnection($"Data Source={aux};Pooling=False"))
        {
            other.Open();
            other.CreateCollation("reverse", string.CompareOrdinal); // another collation of that name builds the index
            using var create = other.CreateCommand();
            create.CommandText = "CREATE TABLE u (v TEXT); CREATE INDEX uv ON u (v COLLATE reverse); INSERT INTO u VALUES ('a'), ('b'), ('c')";
            create.ExecuteNonQuery();
        }

        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1"))
            .UseConnectionInitializer(connection => connection.CreateCollation("reverse", (x, y) => string.CompareOrdinal(y, x)))
            .Build();
        using var connection = dataSource.OpenConnection();
        using var reindex = connection.CreateCommand();
        reindex.CommandText = "REINDEX";
        reindex.ExecuteNonQuery();
        Exec(connection, $"ATTACH '{aux}' AS aux");
        Scalar(connection, "SELECT v FROM u LIMIT 1").ShouldBe("a");

        if (reindexRunAgainByItsCommand)
        {
            reindex.ExecuteNonQuery();
        }
        else
        {
            Exec(connection, "REINDEX");
        }

        Exec(connection, "CREATE TABLE main.u (v TEXT); INSERT INTO main.u VALUES ('main')");

        Scalar(connection, "PRAGMA aux.integrity_check").ShouldBe("ok");
        Scalar(connection, "SELECT v FROM u LIMIT 1").ShouldBe("main");
    }

    /// <summary>
    /// A text that only mentions the word (a table named attachments, a comment) attaches nothing: it was never kept,
    /// and a PRAGMA naming such a table turned keeping off for the rest of the rental (a review of the change above).
    /// </summary>
    [Test]
    public void A_text_that_only_mentions_attach_is_kept_and_keeps_the_rentals_other_statements_kept()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        const string Mentions = Select + " -- attachments";
        Query(connection, Mentions, 1);
        Query(connection, Select, 1);
        Exec(connection, "PRAGMA table_info(attachments)");
        compiles.Reset();

        Query(connection, Mentions, 1).ShouldBe(1L);
        Query(connection, Select, 1).ShouldBe(1L);

        compiles.Count.ShouldBe(0);
    }

    /// <summary>
    /// A rental that attached a database and detached it again hands the connection on, and the next renter's
    /// statements are kept again: the note that an ATTACH may have run ends with the rental (a hunt's mutation that kept
    /// it had every later rental prepare each statement afresh).
    /// </summary>
    [Test]
    public void After_a_rental_that_attached_and_detached_a_database_the_next_renter_keeps_statements_again()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        Setup(connectionString);
        Compiles compiles;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            compiles = new Compiles(connection);
            Exec(connection, "ATTACH ':memory:' AS scratch");
            Exec(connection, "DETACH scratch");
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        Query(next, Select, 1).ShouldBe(1L);
        compiles.Count.ShouldBe(2); // the same physical connection: to classify it, and to run it
        compiles.Reset();
        Query(next, Select, 2).ShouldBe(2L);

        compiles.Count.ShouldBe(0);
    }

    /// <summary>
    /// A text that holds BEGIN only inside a longer word (a column named beginning) begins no transaction: it is kept,
    /// where one with the word BEGIN is not (see StatementCache.BeginsTransaction).
    /// </summary>
    [Test]
    public void A_text_that_holds_begin_only_inside_a_word_is_kept()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        const string Mentions = "SELECT x AS beginning FROM t WHERE rowid = $x";
        Query(connection, Mentions, 1);
        compiles.Reset();

        Query(connection, Mentions, 1).ShouldBe(1L);

        compiles.Count.ShouldBe(0);
    }

    /// <summary>
    /// A data source of one physical connection, whose initializer attaches archive.db, with a table u holding 'archive'
    /// (main has no u yet): with a database attached, no statement is kept (see PhysicalConnection.MayHaveAttachedDatabases).
    /// </summary>
    private SaverDataSource AttachingArchive()
    {
        var archive = Folder.File("archive.db");
        PoolTests.Execute(Folder.ConnectionString("Pooling=False", "archive.db"), "CREATE TABLE u (v TEXT); INSERT INTO u VALUES ('archive')");
        return new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1"))
            .UseConnectionInitializer(connection =>
            {
                using var command = connection.CreateCommand();
                command.CommandText = $"ATTACH '{archive}' AS archive";
                command.ExecuteNonQuery();
            })
            .Build();
    }

    /// <summary>Creates a table u holding 'main' in main, as another process would, and has <paramref name="connection"/> read main's new schema.</summary>
    private void CreateUInMainElsewhere(SaverDbConnection connection)
    {
        PoolTests.Execute(Folder.ConnectionString("Pooling=False"), "CREATE TABLE u (v TEXT); INSERT INTO u VALUES ('main')");
        Scalar(connection, "SELECT count(*) FROM main.sqlite_master"); // a statement on main reads its new schema, for any connection
    }

    private void InsertZeroElsewhere()
    {
        using var other = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        other.Open();
        using var insert = other.CreateCommand();
        insert.CommandText = "INSERT INTO t (x) VALUES (0)";
        insert.ExecuteNonQuery();
    }

    /// <summary>Runs commands on the connection, as code without <c>using</c> does, and never disposes them: weak references to them and their parameters.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static List<WeakReference> RunWithoutDisposing(SaverDbConnection connection, int count)
    {
        var commands = new List<WeakReference>();
        for (var i = 0; i < count; i++)
        {
            var command = connection.CreateCommand();
            command.CommandText = Select;
            var parameter = command.Parameters.AddWithValue("$x", 1L);
            if (i % 2 == 0)
            {
                command.ExecuteScalar().ShouldBe(1L);
            }
            else
            {
                using var reader = command.ExecuteReader();
                reader.Read().ShouldBeTrue();
            }

            commands.Add(new WeakReference(command));
            commands.Add(new WeakReference(parameter)); // not held by the kept statement either
        }

        return commands;
    }

    private static void Setup(string connectionString)
    {
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        Exec(connection, "CREATE TABLE t (x INTEGER, payload BLOB); INSERT INTO t (x) VALUES (1), (2), (3)");
    }

    private static object? Query(SaverDbConnection connection, string sql, long x)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Parameters.AddWithValue("$x", x);
        return command.ExecuteScalar();
    }

    /// <summary>
    /// Counts the statements SQLite compiles on a physical connection that read column x of table t (which the
    /// library's own statements never read), through the authorizer SQLite calls for each column a statement being
    /// compiled reads. It stays on the physical connection across rentals. Setting it expires the statements
    /// prepared before, so it is set before the statements it counts are first run.
    /// </summary>
    private sealed class Compiles : IDisposable
    {
        private const int ReadAction = 20; // SQLITE_READ
        private readonly sqlite3 _handle;

        public Compiles(SaverDbConnection connection)
        {
            _handle = connection.InnerConnection.Handle!;
            raw.sqlite3_set_authorizer(
                _handle,
                (strdelegate_authorizer)((_, action, table, column, _, _) =>
                {
                    if (action == ReadAction && table == "t" && column == "x")
                    {
                        Count++;
                    }

                    return raw.SQLITE_OK;
                }),
                null);
        }

        public int Count { get; private set; }

        public void Reset() => Count = 0;

        public void Dispose() => raw.sqlite3_set_authorizer(_handle, (strdelegate_authorizer?)null, null);
    }
}
