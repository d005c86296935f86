using System.Data.Common;
using Microsoft.Data.Sqlite;

namespace SqliteSaver.Cli.Workload;

/// <summary>The workload's own table: one row per write transaction, keyed by run, writer and transaction number.</summary>
internal static class StressTable
{
    public const string Name = "saver_stress";

    private static readonly string[] Columns = ["id", "payload", "run", "seq", "writer"];

    /// <summary>Creates the table if it does not exist; an existing table must have the workload's columns.</summary>
    /// <exception cref="BadInputException">A table of that name exists with other columns.</exception>
    public static void Create(DbConnection connection)
    {
        using var columns = connection.CreateCommand();
        columns.CommandText = $"SELECT name FROM pragma_table_info('{Name}') ORDER BY name";
        var existing = new List<string>();
        using (var reader = columns.ExecuteReader())
        {
            while (reader.Read())
            {
                existing.Add(reader.GetString(0));
            }
        }

        if (existing.Count > 0 && !existing.SequenceEqual(Columns, StringComparer.OrdinalIgnoreCase))
        {
            throw new BadInputException($"the database has a table {Name} that is not this tool's (columns {string.Join(", ", existing)})");
        }

        using var create = connection.CreateCommand();
        create.CommandText = $"CREATE TABLE IF NOT EXISTS {Name} (id INTEGER PRIMARY KEY, run TEXT NOT NULL, writer INTEGER NOT NULL, seq INTEGER NOT NULL, payload TEXT NOT NULL)";
        create.ExecuteNonQuery();
    }

    /// <summary>Drops the table.</summary>
    public static void Drop(DbConnection connection)
    {
        using var drop = connection.CreateCommand();
        drop.CommandText = $"DROP TABLE IF EXISTS {Name}";
        drop.ExecuteNonQuery();
    }

    /// <summary>
    /// Compares the run's rows with the writers' reports: an acknowledged transaction without its row is lost, a
    /// transaction with more than one row is doubled.
    /// </summary>
    public static (long Lost, long Doubled) Verify(string path, string run, IEnumerable<WriterReport> writers)
    {
        var rows = new Dictionary<(long Writer, long Seq), long>();
        using (var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ConnectionString))
        {
            connection.Open();
            using var select = connection.CreateCommand();
            select.CommandText = $"SELECT writer, seq, count(*) FROM {Name} WHERE run = $run GROUP BY writer, seq";
            select.Parameters.AddWithValue("$run", run);
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                rows[(reader.GetInt64(0), reader.GetInt64(1))] = reader.GetInt64(2);
            }
        }

        long lost = 0;
        foreach (var writer in writers)
        {
            var failed = writer.FailedSeqs.ToHashSet();
            for (long seq = 0; seq < writer.Attempts; seq++)
            {
                if (!failed.Contains(seq) && !rows.ContainsKey((writer.Writer, seq)))
                {
                    lost++;
                }
            }
        }

        return (lost, rows.Values.Sum(count => count - 1));
    }
}
