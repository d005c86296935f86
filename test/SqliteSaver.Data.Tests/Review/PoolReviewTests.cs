using System.Data;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Review;

public class PoolReviewTests : DatabaseTest
{
    /// <summary>
    /// Max Pool Size is "most physical connections open at once". Clear takes the idle connections out of the
    /// pool's count under its lock and closes them afterwards (after the Checkpoint On Close checkpoint of the last
    /// one), so an Open made meanwhile opens a new physical connection while the old one is still open.
    /// </summary>
    [Test]
    public void Clear_never_lets_more_than_Max_Pool_Size_physical_connections_be_open_at_once()
    {
        var opened = new List<SqliteConnection>();
        var mostOthersOpen = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Max Pool Size=1;Checkpoint Interval=0"))
            .UseConnectionInitializer(connection =>
            {
                lock (opened)
                {
                    mostOthersOpen = Math.Max(mostOthersOpen, opened.Count(c => c.State == ConnectionState.Open));
                    opened.Add(connection);
                }
            })
            .Build();

        using (var first = dataSource.OpenConnection())
        {
            ConnectionTests.Scalar(first, "CREATE TABLE t (x)");
            ConnectionTests.Scalar(first, "INSERT INTO t VALUES (1)");
        }

        // Another process reading keeps the TRUNCATE checkpoint of Checkpoint On Close waiting (at most 250 ms).
        using var reader = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        reader.Open();
        using (var begin = reader.CreateCommand())
        {
            begin.CommandText = "BEGIN; SELECT count(*) FROM t;";
            begin.ExecuteScalar();
        }

        var clear = new Thread(dataSource.Clear);
        clear.Start();
        Wait.Until(() => dataSource.Statistics.Total == 0); // the idle connection is out of the count
        using (var next = dataSource.OpenConnection())
        {
            ConnectionTests.Scalar(next, "SELECT count(*) FROM t");
        }

        clear.Join();
        mostOthersOpen.ShouldBe(0, "a new physical connection opened while the one Clear took out was still open, with Max Pool Size=1");
    }
}
