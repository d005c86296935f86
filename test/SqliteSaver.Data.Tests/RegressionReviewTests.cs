using Dapper;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests;

public class RegressionReviewTests : DatabaseTest
{
    /// <summary>
    /// 50824e8/49abee4 mark a connection to be closed on return for any "PRAGMA temp.name(...)" or "= ...", so a
    /// read-only query of the temp schema (table_info, index_list: how apps check a temporary table) now makes the
    /// pool discard and reopen the connection; at 434fb17 it was handed on. Connection reuse for the same statements
    /// on main (PRAGMA table_info(t), foreign_keys, temp_store, main.cache_size, pragma_table_info) is unchanged.
    /// </summary>
    [Test]
    public void A_read_only_temp_schema_PRAGMA_query_does_not_make_the_pool_discard_the_connection([Values(
        "PRAGMA temp.table_info(t)",
        "PRAGMA temp.table_info('t')",
        "PRAGMA temp.index_list(t)",
        "PRAGMA temp.foreign_key_list(t)")] string sql)
    {
        var connectionString = Folder.ConnectionString("Max Pool Size=1");
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        SqliteConnection inner;
        using (var connection = new SaverDbConnection(connectionString))
        {
            connection.Open();
            inner = connection.InnerConnection;
            _ = connection.Query(sql).ToList();
        }

        using var next = new SaverDbConnection(connectionString);
        next.Open();
        next.InnerConnection.ShouldBeSameAs(inner);
    }
}
