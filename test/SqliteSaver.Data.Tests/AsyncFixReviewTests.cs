using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests;

/// <summary>Defects found reviewing 67612b0 (synchronous calls without the caller's context, slept backoff, checkpoint tokens).</summary>
public class AsyncFixReviewTests : DatabaseTest
{
    /// <summary>
    /// SaverDataSource.CheckpointAsync's token is documented (README, XML doc) to end the checkpoint's waits, but the
    /// checkpoint connection waits for readers in SQLite's own busy handler (sqlite3_busy_timeout, up to 250 ms),
    /// which no token reaches, and a busy result is returned even though the token was cancelled. The token is cancelled
    /// here as the checkpoint connection opens (by its initializer), so it is cancelled before the TRUNCATE waits for
    /// the reader: the call should end with OperationCanceledException carrying that token, as connection.CheckpointAsync does.
    /// </summary>
    [Test]
    public async Task A_data_source_CheckpointAsync_cancelled_before_its_checkpoint_waits_for_a_reader_ends_with_its_token()
    {
        using var cancellation = new CancellationTokenSource();
        var armed = 0;
        using var dataSource = new SaverDataSourceBuilder(Folder.ConnectionString("Busy Timeout=5;Checkpoint Interval=0"))
            .UseConnectionInitializer(_ =>
            {
                if (Volatile.Read(ref armed) == 1)
                {
                    cancellation.Cancel(); // the checkpoint connection is opening
                }
            })
            .Build();
        using var connection = dataSource.OpenConnection();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x)");
        ConnectionTests.Exec(connection, "INSERT INTO t VALUES (1)");
        using var reader = new SqliteConnection($"Data Source={Folder.File()};Pooling=False");
        reader.Open();
        using (var read = reader.CreateCommand())
        {
            read.CommandText = "BEGIN; SELECT count(*) FROM t;"; // a reader of the WAL: a TRUNCATE waits for it
            read.ExecuteNonQuery();
        }

        Volatile.Write(ref armed, 1);
        var checkpoint = dataSource.CheckpointAsync(CheckpointMode.Truncate, cancellation.Token);
        var finished = await Task.WhenAny(checkpoint, Task.Delay(TimeSpan.FromSeconds(30)));
        finished.ShouldBeSameAs(checkpoint);
        cancellation.IsCancellationRequested.ShouldBeTrue("the checkpoint connection opened during the call");

        var exception = await Should.ThrowAsync<OperationCanceledException>(
            () => checkpoint,
            customMessage: "the cancelled checkpoint waited out its busy timeout for the reader and returned a busy result");
        exception.CancellationToken.ShouldBe(cancellation.Token);
    }
}
