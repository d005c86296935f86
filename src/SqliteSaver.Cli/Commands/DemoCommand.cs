using System.CommandLine;
using Microsoft.Data.Sqlite;
using SqliteSaver.Cli.Workload;

namespace SqliteSaver.Cli.Commands;

/// <summary>
/// <c>demo</c>: the contention workload on a fresh database in a temporary folder, first through plain
/// Microsoft.Data.Sqlite, then through SqliteSaver, and one table side by side.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var options = new WorkloadOptions(defaultSeconds: 3);
        var command = new Command(
            "demo",
            "Runs a write-contention workload on a new database in a temporary folder, first through plain Microsoft.Data.Sqlite, " +
            "then through SqliteSaver, and prints the results side by side: transactions per second, p99 and worst latency, " +
            "errors that reached the caller, rows lost or doubled (checked against the acknowledged commits) and the WAL size at the end. " +
            "Both stacks run with WAL and synchronous=NORMAL. The temporary files are deleted afterwards. " +
            "Exit code 1 if the SqliteSaver run had errors or lost or doubled rows.");
        options.AddTo(command);
        command.SetAction(parseResult =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var json = parseResult.GetValue(options.Json);
            var console = Terminal.For(output);
            using var interruption = new Interruption();
            var folder = Directory.CreateTempSubdirectory("sqlite-saver-demo-");
            try
            {
                var settings = options.Settings(parseResult, string.Empty, string.Empty);
                var results = new List<StackResult>();
                foreach (var stack in new[] { Stack.Plain, Stack.Saver })
                {
                    var path = Path.Combine(folder.FullName, $"{stack.ToString().ToLowerInvariant()}.db");
                    Prepare(path);
                    var childStopped = false;
                    try
                    {
                        results.Add(WorkloadDisplay.Run(console, json, stack, settings with { DatabasePath = path }, interruption.Token));
                    }
                    catch (Exception exception) when (interruption.Interrupted || exception is OperationCanceledException)
                    {
                        // A child writer that the signal reached before it could handle it (still starting up) died of
                        // it, perhaps before this process handled its own.
                        childStopped = true;
                    }

                    if (interruption.Interrupted || childStopped)
                    {
                        parseResult.InvocationConfiguration.Error.WriteLine("sqlite-saver demo: interrupted");
                        return ExitCodes.Interrupted;
                    }
                }

                var report = new WorkloadReport(null, settings, results);
                if (json)
                {
                    Json.Write(output, report);
                }
                else
                {
                    WorkloadDisplay.Print(console, report);
                }

                return report.SaverClean ? ExitCodes.Success : ExitCodes.Failure;
            }
            finally
            {
                folder.Delete(recursive: true);
            }
        });
        return command;
    }

    /// <summary>Creates the database in WAL mode with the workload's table, the same for both stacks.</summary>
    private static void Prepare(string path)
    {
        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ConnectionString);
        connection.Open();
        using (var wal = connection.CreateCommand())
        {
            wal.CommandText = "PRAGMA journal_mode = WAL";
            wal.ExecuteNonQuery();
        }

        StressTable.Create(connection);
    }
}
