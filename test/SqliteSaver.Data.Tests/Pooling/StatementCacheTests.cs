using Microsoft.Data.Sqlite;
using Shouldly;
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
    public void A_PRAGMA_is_never_kept_because_SQLite_evaluates_it_as_it_prepares_it()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();

        Pragma(connection, "busy_timeout").ShouldBe(5000L);
        Exec(connection, "PRAGMA busy_timeout = 77");

        Pragma(connection, "busy_timeout").ShouldBe(77L);
    }

    [Test]
    public void A_kept_statement_never_reuses_the_values_bound_by_the_command_before()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        Query(connection, Select, 1).ShouldBe(1L);

        using var unbound = connection.CreateCommand();
        unbound.CommandText = Select;

        Should.Throw<InvalidOperationException>(() => unbound.ExecuteScalar()).Message.ShouldContain("$x");
    }

    [Test]
    public void A_statement_whose_parameters_held_a_large_value_is_not_kept()
    {
        const string insert = "INSERT INTO t (x, payload) SELECT $x + max(x), $payload FROM t";
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        using var compiles = new Compiles(connection);
        Insert(connection, insert, new byte[10]);
        compiles.Reset();

        Insert(connection, insert, new byte[100_000]);
        compiles.Count.ShouldBe(0); // the kept statement ran, and was then let go
        Insert(connection, insert, new byte[10]);
        compiles.Count.ShouldBe(1);

        static void Insert(SaverDbConnection connection, string sql, byte[] payload)
        {
            using var command = connection.CreateCommand();
            command.CommandText = sql;
            command.Parameters.AddWithValue("$x", 1);
            command.Parameters.AddWithValue("$payload", payload);
            command.ExecuteNonQuery().ShouldBe(1);
        }
    }

    [Test]
    public void A_kept_statement_sees_a_changed_schema()
    {
        var connectionString = Folder.ConnectionString();
        Setup(connectionString);
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        FieldCount(connection).ShouldBe(2);

        Exec(connection, "ALTER TABLE t ADD COLUMN added TEXT");

        FieldCount(connection).ShouldBe(3);

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
        using var first = connection.CreateCommand();
        using var second = connection.CreateCommand();
        first.CommandText = second.CommandText = "SELECT x FROM t ORDER BY x";

        using (var a = first.ExecuteReader())
        using (var b = second.ExecuteReader())
        {
            a.Read().ShouldBeTrue();
            b.Read().ShouldBeTrue();
            b.Read().ShouldBeTrue();
            a.GetInt64(0).ShouldBe(1L);
            b.GetInt64(0).ShouldBe(2L);
        }

        compiles.Reset();
        Scalar(connection, first.CommandText).ShouldBe(1L);
        compiles.Count.ShouldBe(0);
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

        reader.Close();
        command.ExecuteScalar().ShouldBe(1L);
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

        using (var other = new SqliteConnection($"Data Source={Folder.File()};Pooling=False"))
        {
            other.Open();
            using var insert = other.CreateCommand();
            insert.CommandText = "INSERT INTO t (x) VALUES (0)";
            insert.ExecuteNonQuery();
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        compiles.Reset();
        Scalar(next, select).ShouldBe(0L); // the first row, and of the database as it is now: no stale snapshot
        compiles.Count.ShouldBe(0);
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
