using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Pooling;

/// <summary>
/// A pooled private in-memory database lives in SQLite's memdb VFS, so that the pool's connections share it, and
/// ATTACH opens a file name that names no VFS in the main database's: a file attached to it became another database in
/// memory, and nothing written to it reached the file, where Microsoft.Data.Sqlite's own <c>:memory:</c> connection
/// attaches the file (a review). Such an attachment is refused, and a URI naming the VFS attaches the file.
/// </summary>
public class MemoryAttachmentTests : DatabaseTest
{
    private static readonly string FileVfs = OperatingSystem.IsWindows() ? "win32" : "unix";

    [Test]
    public void A_file_a_command_attaches_to_a_pooled_memory_database_is_refused_and_a_uri_naming_the_vfs_attaches_it()
    {
        var aux = Folder.File("aux.db");
        using var dataSource = SaverDataSource.Create("Data Source=:memory:");
        using var connection = dataSource.OpenConnection();
        using var attach = connection.CreateCommand();
        attach.CommandText = "ATTACH $file AS aux";
        attach.Parameters.AddWithValue("$file", aux);

        var error = Should.Throw<InvalidOperationException>(() => attach.ExecuteNonQuery());

        error.Message.ShouldStartWith("A command attached a database as \"aux\" to the pool's in-memory database (one database in memory that the pool's connections share): there SQLite takes a plain file name given to ATTACH for another database in memory, not the file");
        error.Message.ShouldContain($"ATTACH 'file:/path/to/file.db?vfs={FileVfs}' AS \"aux\"");
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM pragma_database_list WHERE name = 'aux'").ShouldBe(0L); // detached
        attach.Parameters["$file"].Value = $"file:{aux}?vfs={FileVfs}";
        attach.ExecuteNonQuery();
        ConnectionTests.Exec(connection, "CREATE TABLE aux.t (x); INSERT INTO aux.t VALUES (1)");
        using var plain = new SqliteConnection($"Data Source={aux};Pooling=False");
        plain.Open();
        using var count = plain.CreateCommand();
        count.CommandText = "SELECT count(*) FROM t";
        count.ExecuteScalar().ShouldBe(1L); // in the file
    }

    /// <summary>
    /// A reader's later statements run after its execution was looked at: an ATTACH after its first result is refused
    /// at the rental's next command while the reader is open, before that command uses it (a review).
    /// </summary>
    [Test]
    public void A_file_a_readers_later_statement_attaches_is_refused_at_the_next_command()
    {
        var aux = Folder.File("aux.db");
        using var dataSource = SaverDataSource.Create("Data Source=:memory:");
        using var connection = dataSource.OpenConnection();
        using var batch = connection.CreateCommand();
        batch.CommandText = $"SELECT 1; ATTACH '{aux}' AS aux; SELECT 2";
        using (var reader = batch.ExecuteReader())
        {
            reader.NextResult().ShouldBeTrue(); // past the ATTACH

            Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, "CREATE TABLE aux.t (x)")).Message
                .ShouldStartWith("A command run since the connection was opened (a reader's statement after its first result, say) attached a database as \"aux\"");
        }

        ConnectionTests.Scalar(connection, "SELECT count(*) FROM pragma_database_list WHERE name = 'aux'").ShouldBe(0L);
    }

    /// <summary>With no command after it, an ATTACH a reader runs after its first result is refused as the reader closes (a review).</summary>
    [Test]
    public void A_file_a_readers_later_statement_attaches_is_refused_as_the_reader_closes()
    {
        var aux = Folder.File("aux.db");
        using var dataSource = SaverDataSource.Create("Data Source=:memory:");
        using var connection = dataSource.OpenConnection();
        using var batch = connection.CreateCommand();
        batch.CommandText = $"SELECT 1; ATTACH '{aux}' AS aux; CREATE TABLE aux.t (x)";
        var reader = batch.ExecuteReader();

        Should.Throw<InvalidOperationException>(reader.Dispose).Message
            .ShouldStartWith("A statement of the reader's batch after its first result attached a database as \"aux\"");
    }

    /// <summary>A refused database SQLite would not detach (its transaction open) does not refuse every later command, the ROLLBACK that frees it too (a review).</summary>
    [Test]
    public void A_refused_database_that_stays_attached_lets_the_rollback_run()
    {
        var aux = Folder.File("aux.db");
        using var dataSource = SaverDataSource.Create("Data Source=:memory:");
        using var connection = dataSource.OpenConnection();

        Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, $"ATTACH '{aux}' AS aux; BEGIN; CREATE TABLE aux.t (x)")).Message
            .ShouldContain("\"aux\" stays attached, as SQLite detaches none that a statement or transaction uses, until the connection closes");

        ConnectionTests.Exec(connection, "ROLLBACK");
    }

    /// <summary>The connection's Close, which closes a reader left open, detaches what its later statement attached without throwing (a review).</summary>
    [Test]
    public void The_connections_Close_detaches_what_a_reader_left_open_attached_without_throwing()
    {
        var aux = Folder.File("aux.db");
        using var dataSource = SaverDataSource.Create("Data Source=:memory:;Max Pool Size=1");
        var connection = dataSource.OpenConnection();
        using var batch = connection.CreateCommand();
        batch.CommandText = $"SELECT 1; ATTACH '{aux}' AS aux; SELECT 2";
        var reader = batch.ExecuteReader();
        reader.NextResult().ShouldBeTrue(); // past the ATTACH

        connection.Close();

        connection.Open();
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM pragma_database_list WHERE name = 'aux'").ShouldBe(0L);
        connection.Dispose();
    }

    /// <summary>After a refusal SQLite would not detach, the file attached again under that name, once detached, is refused too (a review).</summary>
    [Test]
    public void A_file_attached_again_under_the_name_of_a_refused_database_is_refused()
    {
        var aux = Folder.File("aux.db");
        using var dataSource = SaverDataSource.Create("Data Source=:memory:");
        using var connection = dataSource.OpenConnection();
        Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, $"ATTACH '{aux}' AS aux; BEGIN; CREATE TABLE aux.t (x)"));
        ConnectionTests.Exec(connection, "ROLLBACK");
        ConnectionTests.Exec(connection, "DETACH aux");

        Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, $"ATTACH '{aux}' AS aux"));
    }

    /// <summary>Every file one command attached is detached, not only the first (a review).</summary>
    [Test]
    public void Every_file_a_command_attached_is_detached()
    {
        using var dataSource = SaverDataSource.Create("Data Source=:memory:");
        using var connection = dataSource.OpenConnection();

        Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, $"ATTACH '{Folder.File("a.db")}' AS aux; ATTACH '{Folder.File("b.db")}' AS bux")).Message
            .ShouldStartWith("A command attached databases as \"aux\" and \"bux\" to the pool's in-memory database");

        ConnectionTests.Scalar(connection, "SELECT count(*) FROM pragma_database_list WHERE name IN ('aux', 'bux')").ShouldBe(0L);
    }

    /// <summary>Of two, the one SQLite would not detach (its transaction open) is named, and the other detached (a review).</summary>
    [Test]
    public void The_refusal_names_the_database_SQLite_would_not_detach()
    {
        using var dataSource = SaverDataSource.Create("Data Source=:memory:");
        using var connection = dataSource.OpenConnection();

        Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, $"ATTACH '{Folder.File("a.db")}' AS aux; ATTACH '{Folder.File("b.db")}' AS bux; BEGIN; CREATE TABLE aux.t (x)")).Message
            .ShouldContain("\"aux\" stays attached");

        ConnectionTests.Scalar(connection, "SELECT group_concat(name) FROM pragma_database_list WHERE name IN ('aux', 'bux')").ShouldBe("aux");
        ConnectionTests.Exec(connection, "ROLLBACK");
    }

    /// <summary>A file attached under the name of a database in memory the initializer attached is refused too (a review).</summary>
    [Test]
    public void A_file_attached_under_the_name_of_an_attached_memory_database_is_refused()
    {
        var aux = Folder.File("aux.db");
        using var dataSource = MemoryInitialized("ATTACH ':memory:' AS aux");
        using var connection = dataSource.OpenConnection();

        Should.Throw<InvalidOperationException>(() => ConnectionTests.Exec(connection, $"DETACH aux; ATTACH '{aux}' AS aux"));
    }

    /// <summary>The refused execution's reader is disposed before the database is detached, which SQLite refuses while the reader reads it (a review).</summary>
    [Test]
    public void A_reader_reading_the_file_it_attached_is_disposed_and_the_database_detached()
    {
        var aux = Folder.File("aux.db");
        using var dataSource = SaverDataSource.Create("Data Source=:memory:");
        using var connection = dataSource.OpenConnection();
        using var batch = connection.CreateCommand();
        batch.CommandText = $"ATTACH '{aux}' AS aux; CREATE TABLE aux.t (x); INSERT INTO aux.t VALUES (1), (2); SELECT x FROM aux.t";

        Should.Throw<InvalidOperationException>(batch.ExecuteReader).Message.ShouldContain("It was detached");

        ConnectionTests.Scalar(connection, "SELECT count(*) FROM pragma_database_list WHERE name = 'aux'").ShouldBe(0L);
    }

    /// <summary>As README says, nothing attached through InnerConnection is checked: a later command does not refuse it (a review).</summary>
    [Test]
    public void A_memdb_database_attached_through_InnerConnection_is_left_to_it()
    {
        using var dataSource = SaverDataSource.Create("Data Source=:memory:");
        using var connection = dataSource.OpenConnection();
        using (var attach = connection.InnerConnection.CreateCommand())
        {
            attach.CommandText = $"ATTACH 'file:/saver-inner-{Guid.NewGuid():N}?vfs=memdb' AS m; CREATE TABLE m.t (x)";
            attach.ExecuteNonQuery();
        }

        ConnectionTests.Exec(connection, "PRAGMA cache_size = 10");
        ConnectionTests.Exec(connection, "ATTACH ':memory:' AS other");

        ConnectionTests.Scalar(connection, "SELECT count(*) FROM m.t").ShouldBe(0L);
    }

    [TestCase(":memory:")]
    [TestCase("")] // a temporary database
    public void A_database_in_memory_or_a_temporary_one_attaches_to_a_pooled_memory_database(string name)
    {
        using var dataSource = SaverDataSource.Create("Data Source=:memory:");
        using var connection = dataSource.OpenConnection();

        ConnectionTests.Exec(connection, $"ATTACH '{name}' AS other");
        ConnectionTests.Exec(connection, "CREATE TABLE other.t (x); INSERT INTO other.t VALUES (1)");
        ConnectionTests.Exec(connection, "PRAGMA cache_size = 10"); // a command after which attachments are looked at again

        ConnectionTests.Scalar(connection, "SELECT count(*) FROM other.t").ShouldBe(1L);
    }

    /// <summary>
    /// A batch that ends the caller's transaction runs outside it after its COMMIT, where ATTACH can run: the command
    /// itself is refused, as one outside a transaction is (it passed every test unrefused there, a hunt).
    /// </summary>
    [Test]
    public void A_file_a_batch_attaches_after_committing_the_callers_transaction_is_refused()
    {
        var aux = Folder.File("aux.db");
        using var dataSource = SaverDataSource.Create("Data Source=:memory:");
        using var connection = dataSource.OpenConnection();
        using (var transaction = connection.BeginTransaction())
        {
            using var batch = connection.CreateCommand();
            batch.Transaction = transaction;
            batch.CommandText = $"COMMIT; ATTACH '{aux}' AS aux";

            Should.Throw<InvalidOperationException>(() => batch.ExecuteNonQuery()).Message
                .ShouldStartWith("A command attached a database as \"aux\" to the pool's in-memory database");
        }

        ConnectionTests.Scalar(connection, "SELECT count(*) FROM pragma_database_list WHERE name = 'aux'").ShouldBe(0L);
    }

    [Test]
    public void A_file_the_connection_initializer_attaches_to_a_pooled_memory_database_fails_the_open()
    {
        var aux = Folder.File("aux.db");
        using var dataSource = MemoryInitialized($"ATTACH '{aux}' AS aux");

        Should.Throw<InvalidOperationException>(dataSource.OpenConnection).Message
            .ShouldStartWith("The connection initializer attached a database as \"aux\" to the pool's in-memory database");
        dataSource.Statistics.Total.ShouldBe(0);
    }

    /// <summary>A pooled <c>:memory:</c> data source whose connection initializer runs <paramref name="sql"/>.</summary>
    private static SaverDataSource MemoryInitialized(string sql)
        => new SaverDataSourceBuilder("Data Source=:memory:")
            .UseConnectionInitializer(connection =>
            {
                using var command = connection.CreateCommand();
                command.CommandText = sql;
                command.ExecuteNonQuery();
            })
            .Build();
}
