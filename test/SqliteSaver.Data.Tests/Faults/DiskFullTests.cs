using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Resilience;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Faults;

/// <summary>
/// A full disk, simulated with <c>PRAGMA max_page_count</c> on the pool's only physical connection: SQLITE_FULL reaches
/// the caller at once, nothing of the failed transaction stays, and the connection and pool go on working.
/// </summary>
public class DiskFullTests : DatabaseTest
{
    private const string BigRow = "INSERT INTO t (x) VALUES (randomblob(200000))";
    private const string SmallRow = "INSERT INTO t (x) VALUES (randomblob(10))";
    private const int SqliteFull = 13;

    [Test]
    public async Task SQLITE_FULL_reaches_the_caller_at_once_rolled_back_and_the_pool_stays_usable()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1;Pool Timeout=5");
        PoolTests.Execute(connectionString, "CREATE TABLE t (id INTEGER PRIMARY KEY, x BLOB)");
        using var dataSource = new SaverDataSourceBuilder(connectionString).Build();
        var retries = 0;
        ((RetryPolicy)dataSource.Executor.Strategy).Retrying += (_, _, _) => Interlocked.Increment(ref retries);
        var gate = dataSource.Executor.Gate!;
        using (var connection = dataSource.OpenConnection())
        {
            FillDisk(connection);
            ConnectionTests.Exec(connection, SmallRow).ShouldBe(1);

            // A write outside a transaction: its own transaction is rolled back, the gate left.
            Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, BigRow)).SqliteErrorCode.ShouldBe(SqliteFull);
            (await Should.ThrowAsync<SqliteException>(() => ExecAsync(connection, BigRow))).SqliteErrorCode.ShouldBe(SqliteFull);
            SQLitePCL.raw.sqlite3_get_autocommit(connection.InnerConnection.Handle).ShouldBe(1); // no transaction left open
            gate.IsHeld.ShouldBeFalse();

            // A unit of work: run once, not retried, nothing of it kept.
            var runs = 0;
            Should.Throw<SqliteException>(() => connection.RunInTransaction(_ =>
            {
                runs++;
                ConnectionTests.Exec(connection, SmallRow);
                ConnectionTests.Exec(connection, BigRow);
            })).SqliteErrorCode.ShouldBe(SqliteFull);
            runs.ShouldBe(1);
            gate.IsHeld.ShouldBeFalse();

            // The caller's own transaction: the statement fails, the transaction is rolled back when disposed.
            using (var transaction = connection.BeginTransaction())
            {
                ConnectionTests.Exec(connection, SmallRow);
                Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, BigRow)).SqliteErrorCode.ShouldBe(SqliteFull);
            }

            gate.IsHeld.ShouldBeFalse();
            retries.ShouldBe(0);
            ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(1L); // only the row written before
        }

        // The pool: the same physical connection serves reads, with max_page_count set back as a PRAGMA a command set
        // is; full again, writes work once space frees.
        using (var connection = dataSource.OpenConnection())
        {
            ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(1L);
            ConnectionTests.Pragma(connection, "max_page_count").ShouldNotBe(ConnectionTests.Pragma(connection, "page_count"));
            FillDisk(connection);
            Should.Throw<SqliteException>(() => ConnectionTests.Exec(connection, BigRow)).SqliteErrorCode.ShouldBe(SqliteFull);
            ConnectionTests.Exec(connection, "PRAGMA max_page_count = 1073741823");
            ConnectionTests.Exec(connection, BigRow).ShouldBe(1);
            using var transaction = connection.BeginTransaction();
            ConnectionTests.Exec(connection, BigRow).ShouldBe(1);
            transaction.Commit();
        }

        dataSource.Statistics.Total.ShouldBe(1);
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(3L);
        PoolTests.Scalar(connectionString, "PRAGMA integrity_check").ShouldBe("ok");
        retries.ShouldBe(0);
    }

    /// <summary>Leaves the connection room for a few small rows and no big one.</summary>
    private static void FillDisk(SaverDbConnection connection)
    {
        var pages = (long)ConnectionTests.Pragma(connection, "page_count")!;
        ConnectionTests.Exec(connection, $"PRAGMA max_page_count = {pages + 2}");
    }

    private static async Task<int> ExecAsync(SaverDbConnection connection, string sql)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        return await command.ExecuteNonQueryAsync();
    }
}
