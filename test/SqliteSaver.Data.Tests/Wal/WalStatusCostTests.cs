using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Wal;

public class WalStatusCostTests : DatabaseTest
{
    [Test]
    [Platform("Linux")]
    public void Reading_the_wal_status_does_not_read_every_frame_of_a_large_wal()
    {
        // The health check reads the WAL status on every probe, on the checkpointer's connection and under its lock
        // (a background checkpoint tick gives up after 250 ms of waiting for it), so it must cost a stat of the -wal
        // file, not a read of every frame's header (a quarter of a million reads for a gigabyte in 4 KiB pages).
        using (var create = new SqliteConnection($"Data Source={Folder.File()};Pooling=False"))
        {
            create.Open();
            using var command = create.CreateCommand();
            command.CommandText = "PRAGMA page_size = 512; CREATE TABLE t (x)";
            command.ExecuteNonQuery();
        }

        using var dataSource = SaverDataSource.Create(Folder.ConnectionString("Wal Autocheckpoint=0;Checkpoint Interval=0"));
        using var connection = dataSource.OpenConnection();
        ConnectionTests.Exec(connection, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000) INSERT INTO t SELECT randomblob(400) FROM c");
        dataSource.GetWalStatus(); // opens the checkpointer's connection, kept while the pool has one open

        var before = ReadSyscalls();
        var status = dataSource.GetWalStatus();
        var reads = ReadSyscalls() - before;

        status.WalFrames.ShouldBeGreaterThan(20000);
        reads.ShouldBeLessThan(100, $"read calls for one WAL status of {status.WalFrames} frames");
    }

    /// <summary>The read system calls this process has made (Linux).</summary>
    private static long ReadSyscalls()
        => long.Parse(File.ReadLines("/proc/self/io").First(line => line.StartsWith("syscr:", StringComparison.Ordinal))["syscr:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
}
