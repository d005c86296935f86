using System.Globalization;

namespace SqliteSaver.Data.Soak;

/// <summary>What one soak run does, and the connection string every worker uses.</summary>
internal sealed class SoakSettings
{
    /// <summary>
    /// The WAL bound checked: Journal Size Limit plus this margin. Under this soak's load (at most
    /// <see cref="RowsPerSecondPerWorker"/> rows a second from each of three processes, about 2.5 MB/s of writes in
    /// all, readers always running) the -wal file peaked at 6 to 25 MiB, and at 11 to 12.4 MiB since the over-limit
    /// TRUNCATE retries at once, between the moments SQLite can start it over; a WAL that is never started over
    /// (checkpoint starvation) grows past the bound within the 20 s run.
    /// </summary>
    public const long WalMarginBytes = 32L * 1024 * 1024;

    /// <summary>
    /// The most rows a worker process writes a second. The WAL grows with the write rate between the moments SQLite
    /// can start it over, so the load is held at what the bound above was set for rather than at whatever the machine
    /// and the library can do: without it, the statement cache and lock polling doubled the rate here (2,590 rows a
    /// second in all in a 10-minute run, against 1,170 before) and the -wal peaks with it (24.75 MiB).
    /// </summary>
    public const int RowsPerSecondPerWorker = 400;

    public const long JournalSizeLimit = 1024 * 1024;

    public TimeSpan Duration { get; set; } = TimeSpan.FromMinutes(2);

    public int Processes { get; set; } = 3;

    public int Threads { get; set; } = 4;

    public string? Folder { get; set; }

    /// <summary>
    /// A small pool (threads queue for it), a 1 MiB Journal Size Limit with SQLite's automatic checkpoints every 256
    /// pages and the background checkpointer every second, so that WAL maintenance runs all through the soak.
    /// </summary>
    public static string ConnectionString(string database) => new SaverConnectionStringBuilder { DataSource = database }.ConnectionString + string.Create(
        CultureInfo.InvariantCulture,
        $";Max Pool Size=3;Pool Timeout=60;Default Timeout=60;Retry=10;Journal Size Limit={JournalSizeLimit};Wal Autocheckpoint=256;Checkpoint Interval=1");
}
