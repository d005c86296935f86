using Shouldly;
using SqliteSaver.Data.Tests.Wal;

namespace SqliteSaver.Data.Tests.Pooling;

/// <summary>What a review of the pool's lifecycle and of WAL checkpoints found: a PRAGMA of the temp schema, the final checkpoint of a shared cache.</summary>
public class LifecycleReviewTests : DatabaseTest
{
    private string Wal => Folder.File() + "-wal";

    [Test]
    public void A_temp_schema_PRAGMA_a_renter_set_does_not_reach_the_next_renter()
    {
        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Max Pool Size=1"));
        object? journalMode, cacheSize;
        using (var connection = dataSource.OpenConnection())
        {
            journalMode = ConnectionTests.Pragma(connection, "temp.journal_mode");
            cacheSize = ConnectionTests.Pragma(connection, "temp.cache_size");
            // PRAGMAs a renter sets, as the README's migration example does with foreign_keys, on the temp schema.
            ConnectionTests.Exec(connection, "PRAGMA temp.max_page_count = 2");
            ConnectionTests.Exec(connection, "PRAGMA temp.journal_mode = OFF");
            ConnectionTests.Exec(connection, "PRAGMA temp.cache_size = 1");
        }

        using (var connection = dataSource.OpenConnection())
        {
            // The next renter's temporary table may hold no more than the earlier renter's two pages: SQLITE_FULL.
            Should.NotThrow(() => ConnectionTests.Exec(
                connection,
                "CREATE TEMP TABLE ids AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT i, randomblob(100) AS b FROM n"));
            ConnectionTests.Pragma(connection, "temp.journal_mode").ShouldBe(journalMode);
            ConnectionTests.Pragma(connection, "temp.cache_size").ShouldBe(cacheSize);
        }
    }

    [Test]
    public void Checkpoint_On_Close_of_a_shared_cache_pool_truncates_the_wal_while_a_reader_data_source_shares_the_cache()
    {
        // The README's advice: readers get a data source of their own. With Cache=Shared both share SQLite's cache.
        using var writers = SaverDataSource.Create(Folder.ConnectionString("Cache=Shared;Wal Autocheckpoint=0;Checkpoint Interval=0"));
        using var readers = SaverDataSource.Create(Folder.ConnectionString("Cache=Shared;Checkpoint Interval=0;Checkpoint On Close=false"));
        using (var writer = writers.OpenConnection())
        {
            CheckpointerTests.Fill(writer, 20);
        }

        var copied = writers.Checkpoint(CheckpointMode.Passive); // every frame copied back: a reader from now on needs none
        copied.CheckpointedFrames.ShouldBe(copied.LogFrames);
        using var reader = readers.OpenConnection();
        using var snapshot = reader.BeginTransaction(deferred: true);
        ConnectionTests.Scalar(reader, "SELECT count(*) FROM t").ShouldBe(20L);

        writers.Clear(); // the pool's last connection closes: the final TRUNCATE of Checkpoint On Close

        // With Cache=Private in both data sources this TRUNCATE succeeds (the reader reads from the database file
        // only); on the pool's shared-cache connection SQLite refuses it with SQLITE_LOCKED, as the README says it
        // does for the checkpointer's own connection, which therefore always opens with a private cache.
        writers.LastCheckpointError.ShouldBeNull();
        writers.LastCheckpointResult.ShouldBe(new CheckpointResult(false, 0, 0));
        new FileInfo(Wal).Length.ShouldBe(0);
    }
}
