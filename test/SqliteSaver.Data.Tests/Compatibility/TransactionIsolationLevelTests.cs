using System.Data;
using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// <see cref="DbConnection.BeginTransaction(IsolationLevel)"/> as Microsoft.Data.Sqlite has it: ReadUncommitted begins
/// deferred, every other level IMMEDIATE, and every transaction reports Serializable.
/// </summary>
public class TransactionIsolationLevelTests : DatabaseTest
{
    [Test]
    public async Task A_ReadUncommitted_transaction_begins_deferred_and_does_not_hold_up_writers_as_with_MDS([Values] bool async)
    {
        // Without the fix the writer would wait at the write gate for Default Timeout, then throw.
        var connectionString = Folder.ConnectionString("Default Timeout=1;Retry=0;Busy Timeout=200");
        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;
        using DbConnection reader = new SaverDbConnection(connectionString);
        using DbConnection writer = new SaverDbConnection(connectionString);
        reader.Open();
        writer.Open();
        Execute(writer, null, "CREATE TABLE t (id INTEGER PRIMARY KEY)");

        using var transaction = async
            ? await reader.BeginTransactionAsync(IsolationLevel.ReadUncommitted)
            : reader.BeginTransaction(IsolationLevel.ReadUncommitted);

        gate.IsHeld.ShouldBeFalse();
        Count(reader, transaction).ShouldBe(0L); // the transaction's snapshot starts here
        Execute(writer, null, "INSERT INTO t VALUES (1)");
        Count(reader, transaction).ShouldBe(0L); // still serializable: the snapshot does not see the write
        transaction.Commit();
        Count(reader, null).ShouldBe(1L);
    }

    [Test]
    public async Task Every_other_level_begins_immediate_and_holds_the_write_gate(
        [Values(IsolationLevel.Unspecified, IsolationLevel.ReadCommitted, IsolationLevel.RepeatableRead, IsolationLevel.Serializable)] IsolationLevel level,
        [Values] bool async)
    {
        var connectionString = Folder.ConnectionString();
        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;
        using DbConnection connection = new SaverDbConnection(connectionString);
        connection.Open();

        using (var transaction = async ? await connection.BeginTransactionAsync(level) : connection.BeginTransaction(level))
        {
            gate.IsHeld.ShouldBeTrue();
            transaction.IsolationLevel.ShouldBe(IsolationLevel.Serializable);
        }

        gate.IsHeld.ShouldBeFalse();
    }

    /// <summary>BeginTransactionAsync takes deferred as BeginTransaction does (a user's trial of the README missed it).</summary>
    [Test]
    public async Task BeginTransactionAsync_with_deferred_begins_as_BeginTransaction_with_deferred_does([Values] bool deferred)
    {
        var connectionString = Folder.ConnectionString();
        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;
        await using var connection = new SaverDbConnection(connectionString);
        await connection.OpenAsync();
        Execute(connection, null, "CREATE TABLE t (id INTEGER PRIMARY KEY)");

        bool heldAsync, heldSync;
        await using (var transaction = await connection.BeginTransactionAsync(deferred))
        {
            heldAsync = gate.IsHeld;
        }

        using (connection.BeginTransaction(deferred))
        {
            heldSync = gate.IsHeld;
        }

        $"async {heldAsync}, sync {heldSync}".ShouldBe(deferred ? "async False, sync False" : "async True, sync True");
    }

    [Test]
    public void Every_level_reports_Serializable_as_with_MDS(
        [Values(IsolationLevel.Unspecified, IsolationLevel.ReadUncommitted, IsolationLevel.ReadCommitted, IsolationLevel.RepeatableRead, IsolationLevel.Serializable)] IsolationLevel level)
    {
        IsolationLevel reported;
        using (var mds = new SqliteConnection($"Data Source={Folder.File("mds.db")};Pooling=False"))
        {
            mds.Open();
            using var transaction = mds.BeginTransaction(level);
            reported = transaction.IsolationLevel;
        }

        using DbConnection saver = new SaverDbConnection(Folder.ConnectionString());
        saver.Open();
        using (var transaction = saver.BeginTransaction(level))
        {
            transaction.IsolationLevel.ShouldBe(reported);
        }

        reported.ShouldBe(IsolationLevel.Serializable);
    }

    [Test]
    public void ReadUncommitted_leaves_PRAGMA_read_uncommitted_alone_and_the_pool_sets_back_a_renters_own()
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            using var transaction = connection.BeginTransaction(IsolationLevel.ReadUncommitted);
            ConnectionTests.Pragma(connection, "read_uncommitted").ShouldBe(0L);
            ConnectionTests.Exec(connection, "PRAGMA read_uncommitted = 1");
            ConnectionTests.Pragma(connection, "read_uncommitted").ShouldBe(1L);
            transaction.Commit();
        }

        using var next = new SaverDbConnection(connectionString); // the same physical connection: the pool holds one
        next.Open();
        ConnectionTests.Pragma(next, "read_uncommitted").ShouldBe(0L);
    }

    /// <summary>Microsoft.Data.Sqlite's <c>BeginTransaction(IsolationLevel, bool deferred)</c>: the flag decides, the level is only checked.</summary>
    [TestCase(IsolationLevel.ReadCommitted, true)]
    [TestCase(IsolationLevel.ReadUncommitted, false)]
    public void The_level_and_deferred_overload_begins_as_the_flag_says(IsolationLevel level, bool deferred)
    {
        var connectionString = Folder.ConnectionString();
        var gate = SaverDataSource.GetShared(connectionString).Executor.Gate!;
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();

        using var transaction = connection.BeginTransaction(level, deferred);

        gate.IsHeld.ShouldBe(!deferred);
        transaction.IsolationLevel.ShouldBe(IsolationLevel.Serializable);
        Should.Throw<ArgumentOutOfRangeException>(() => new SaverDbConnection(connectionString).BeginTransaction(IsolationLevel.Snapshot, deferred))
            .ParamName.ShouldBe("isolationLevel");
    }

    private static void Execute(DbConnection connection, DbTransaction? transaction, string sql)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static object? Count(DbConnection connection, DbTransaction? transaction)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT count(*) FROM t";
        return command.ExecuteScalar();
    }
}
