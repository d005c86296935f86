using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// A database attached during a rental is in the transactions begun after it, as with Microsoft.Data.Sqlite: an
/// IMMEDIATE one takes its write lock too. Before, the library's <c>BEGIN IMMEDIATE</c>, prepared once as the physical
/// connection opened, began a transaction on main alone (SQLite does not prepare it again after an ATTACH), so a write
/// to the attached database inside <c>BeginTransaction()</c> met SQLITE_BUSY, and a DETACH in it succeeded (a
/// differential test's findings).
/// </summary>
public class AttachedDatabaseTransactionTests : DatabaseTest
{
    [Test]
    public void BeginTransaction_takes_the_write_lock_of_a_database_attached_after_the_connection_opened()
    {
        var aux = Folder.File("aux.db");
        using var holder = new SqliteConnection($"Data Source={aux};Pooling=False");
        holder.Open();
        Run(holder, "PRAGMA journal_mode = WAL; CREATE TABLE x (y); BEGIN IMMEDIATE;");
        using var connection = new SaverDbConnection(Folder.ConnectionString("Busy Timeout=100;Retry=0;Default Timeout=2"));
        connection.Open();
        Run(connection, $"ATTACH '{aux}' AS aux");

        Should.Throw<SqliteException>(() => connection.BeginTransaction()).SqliteErrorCode.ShouldBe(5); // as Microsoft.Data.Sqlite's

        Run(holder, "COMMIT");
        using var transaction = connection.BeginTransaction();
        Run(connection, "INSERT INTO aux.x VALUES (1)");
        transaction.Commit();
        Run(holder, "SELECT count(*) FROM x").ShouldBe(1L);
    }

    [Test]
    public void A_DETACH_inside_an_IMMEDIATE_transaction_fails_as_with_Microsoft_Data_Sqlite()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        Run(connection, $"CREATE TABLE t (x); ATTACH '{Folder.File("aux.db")}' AS aux; CREATE TABLE aux.x (y);");
        using var transaction = connection.BeginTransaction();
        Run(connection, "INSERT INTO t VALUES (1)");

        Should.Throw<SqliteException>(() => Run(connection, "DETACH aux")).Message.ShouldContain("database aux is locked");

        Run(connection, "INSERT INTO aux.x VALUES (1)").ShouldBe(1);
        transaction.Commit();
        Run(connection, "SELECT (SELECT count(*) FROM t) + (SELECT count(*) FROM aux.x)").ShouldBe(2L);
    }

    /// <summary>
    /// A database the connection initializer attaches: in the IMMEDIATE transaction (before, the kept BEGIN IMMEDIATE
    /// was prepared before the initializer ran), and no reason to replace the connection on return after a rental
    /// that ran a PRAGMA (before, the pool opened and initialized a new one for each such rental) (a review's findings).
    /// Also in a transaction begun before any command of the rental, which alone would not make the BEGIN be prepared
    /// afresh.
    /// </summary>
    [Test]
    public void A_database_the_connection_initializer_attached_is_in_the_transaction_and_keeps_the_connection_pooled()
    {
        var aux = Folder.File("aux.db");
        var initialized = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString())
            .UseConnectionInitializer(connection =>
            {
                Interlocked.Increment(ref initialized);
                Run(connection, $"ATTACH '{aux}' AS aux; CREATE TABLE IF NOT EXISTS aux.x (y)");
            })
            .Build();
        for (var i = 0; i < 3; i++)
        {
            using var rented = dataSource.OpenConnection();
            using (rented.BeginTransaction())
            {
                Should.Throw<SqliteException>(() => Run(rented, "DETACH aux")).Message.ShouldContain("database aux is locked");
            }

            Run(rented, "PRAGMA foreign_keys = ON");
            using var transaction = rented.BeginTransaction();
            Should.Throw<SqliteException>(() => Run(rented, "DETACH aux")).Message.ShouldContain("database aux is locked");
        }

        initialized.ShouldBe(1);
    }

    /// <summary>
    /// <c>BEGIN IMMEDIATE</c> sent as SQL, run before an ATTACH in the same rental or by an earlier renter of the
    /// physical connection, locks the attached database: before, the statement cache kept it as prepared before the
    /// ATTACH (a review's finding).
    /// </summary>
    [TestCase(false, "BEGIN IMMEDIATE")]
    [TestCase(true, "BEGIN IMMEDIATE")]
    [TestCase(false, "/* c */ BEGIN IMMEDIATE")]
    [TestCase(true, "-- c\nBEGIN IMMEDIATE")]
    public void BEGIN_IMMEDIATE_sent_as_SQL_locks_a_database_attached_since_it_last_ran(bool byAnEarlierRenter, string begin)
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1"));
        var connection = dataSource.OpenConnection();
        Run(connection, begin);
        Run(connection, "COMMIT");
        if (byAnEarlierRenter)
        {
            connection.Dispose();
            connection = dataSource.OpenConnection();
        }

        using (connection)
        {
            Run(connection, $"ATTACH '{Folder.File("aux.db")}' AS aux");

            Run(connection, begin);

            Should.Throw<SqliteException>(() => Run(connection, "DETACH aux")).Message.ShouldContain("database aux is locked");
            Run(connection, "ROLLBACK");
        }
    }

    /// <summary>
    /// Likewise for a database attached through InnerConnection, which the statement cache does not see (it still
    /// uses kept statements then): <c>BEGIN IMMEDIATE</c> sent as SQL is never kept, so it is prepared again and
    /// locks the database attached since it last ran. Keeping it passed every test, as an ATTACH sent as SQL stops
    /// the cache's use for the rest of the rental anyway (a hunt's mutation).
    /// </summary>
    [Test]
    public void BEGIN_IMMEDIATE_sent_as_SQL_locks_a_database_attached_through_InnerConnection_since_it_last_ran()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1"));
        using var connection = dataSource.OpenConnection();
        Run(connection, "BEGIN IMMEDIATE");
        Run(connection, "COMMIT");
        Run(connection.InnerConnection, $"ATTACH '{Folder.File("aux.db")}' AS aux");

        Run(connection, "BEGIN IMMEDIATE");

        Should.Throw<SqliteException>(() => Run(connection.InnerConnection, "DETACH aux")).Message.ShouldContain("database aux is locked");
        Run(connection, "ROLLBACK");
    }

    /// <summary>
    /// A write outside a transaction on a connection with an attached database takes that database's write lock too,
    /// as BeginTransaction's IMMEDIATE transaction does, whether the initializer or the rental attached it, and after
    /// SQLite prepared the kept BEGIN again (a DETACH, a PRAGMA that sets a flag): while another connection holds it
    /// the write fails within the policy's bounds, writing nothing, and runs once it is free. (Taking main's lock alone,
    /// with a BEGIN prepared before the ATTACH, did not hold: SQLite prepares it again with every database attached,
    /// and a deferred BEGIN let a batch that reads first fail at once and a write wait past its CommandTimeout, as two
    /// reviews found.)
    /// </summary>
    [TestCase(false, "SELECT 1")]
    [TestCase(true, "SELECT 1")]
    [TestCase(true, "PRAGMA recursive_triggers = 1")]
    [TestCase(false, "DETACH other")]
    public void A_write_outside_a_transaction_takes_the_lock_of_an_attached_database_too(bool attachedByTheInitializer, string before)
    {
        var aux = Folder.File("aux.db");
        using var holder = new SqliteConnection($"Data Source={aux};Pooling=False");
        holder.Open();
        Run(holder, "PRAGMA journal_mode = WAL; CREATE TABLE x (y);");
        var builder = new SaverDataSourceBuilder(Folder.ConnectionString("Busy Timeout=100;Retry=1;Default Timeout=5"));
        if (attachedByTheInitializer)
        {
            builder.UseConnectionInitializer(connection => Run(connection, $"ATTACH '{aux}' AS aux"));
        }

        using var dataSource = builder.Build();
        using var connection = dataSource.OpenConnection();
        Run(connection, $"CREATE TABLE t (x); ATTACH '{Folder.File("other.db")}' AS other");
        if (!attachedByTheInitializer)
        {
            Run(connection, $"ATTACH '{aux}' AS aux");
        }

        Run(connection, before);
        Run(holder, "BEGIN IMMEDIATE");

        Should.Throw<SqliteException>(() => Run(connection, "INSERT INTO t VALUES (1)")).SqliteErrorCode.ShouldBe(5);

        Run(holder, "COMMIT");
        Run(connection, "INSERT INTO t VALUES (2)").ShouldBe(1);
        Run(connection, "SELECT group_concat(x) FROM t").ShouldBe("2");
    }

    /// <summary>
    /// A renter that DETACHes the connection initializer's database does not hand on a connection without it: it is
    /// replaced, as one whose renter took the initializer's temporary views away is (a bug hunt's finding).
    /// </summary>
    [Test]
    public void A_renter_that_detaches_the_initializers_database_does_not_take_it_from_the_next_renter()
    {
        var aux = Folder.File("aux.db");
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1"))
            .UseConnectionInitializer(connection => Run(connection, $"ATTACH '{aux}' AS aux"))
            .Build();
        using (var renter = dataSource.OpenConnection())
        {
            Run(renter, "DETACH aux");
        }

        using var next = dataSource.OpenConnection();
        Run(next, "SELECT count(*) FROM pragma_database_list WHERE name = 'aux'").ShouldBe(1L);
    }

    private static object? Run(System.Data.Common.DbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return sql.StartsWith("SELECT", StringComparison.Ordinal) ? command.ExecuteScalar() : command.ExecuteNonQuery();
    }
}
