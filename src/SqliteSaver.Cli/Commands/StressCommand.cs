using System.CommandLine;
using Microsoft.Data.Sqlite;
using SqliteSaver.Cli.Database;
using SqliteSaver.Cli.Workload;
using SqliteSaver.Data;

namespace SqliteSaver.Cli.Commands;

/// <summary><c>stress</c>: the demo's workload through SqliteSaver against the user's database, in a table of its own.</summary>
internal static class StressCommand
{
    public static Command Create()
    {
        var database = new Option<string>("--db") { Description = "The database file; created if it does not exist.", Required = true, HelpName = "PATH" };
        var connectionString = new Option<string>("--connection-string")
        {
            Description = "SqliteSaver connection-string keywords to run with, such as \"Busy Timeout=1000;Max Pool Size=8\" (Data Source is --db).",
            DefaultValueFactory = _ => string.Empty,
            HelpName = "KEYWORDS",
        };
        var keep = new Option<bool>("--keep") { Description = $"Keep the table {StressTable.Name} and its rows instead of dropping it at the end." };
        var options = new WorkloadOptions(defaultSeconds: 10);
        var command = new Command(
            "stress",
            "Runs the demo's write-contention workload through SqliteSaver against your database, in a table of its own " +
            $"({StressTable.Name}, dropped at the end unless --keep), in WAL mode unless the keywords name another Journal Mode, setting back " +
            "the journal mode the database had, and prints transactions per second, p99 and worst latency, " +
            "errors that reached the caller, rows lost or doubled and the WAL size at the end. " +
            "Exit code 1 if there were errors or lost or doubled rows.")
        {
            Options = { database, connectionString, keep },
        };
        options.AddTo(command);
        command.SetAction(parseResult =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var json = parseResult.GetValue(options.Json);
            var path = DatabaseFile.RequireCreatable(parseResult.GetRequiredValue(database));
            var settings = options.Settings(parseResult, path, parseResult.GetValue(connectionString) ?? string.Empty);
            var saverConnectionString = Operations.ConnectionString(Stack.Saver, path, settings.SaverKeywords);
            var journalMode = File.Exists(path) ? ReadJournalMode(path) : null;
            Change(path, saverConnectionString, StressTable.Create);
            using var interruption = new Interruption();
            StackResult result;
            try
            {
                result = WorkloadDisplay.Run(Terminal.For(output), json, Stack.Saver, settings, interruption.Token);
            }
            finally
            {
                if (!parseResult.GetValue(keep))
                {
                    Change(path, saverConnectionString, StressTable.Drop);
                }

                RestoreJournalMode(path, journalMode);
            }

            if (interruption.Interrupted)
            {
                parseResult.InvocationConfiguration.Error.WriteLine(
                    $"sqlite-saver stress: interrupted; {(parseResult.GetValue(keep) ? $"the table {StressTable.Name} is kept" : $"the table {StressTable.Name} was dropped")}");
                return ExitCodes.Interrupted;
            }

            var report = new WorkloadReport(path, settings, [result]);
            if (json)
            {
                Json.Write(output, report);
            }
            else
            {
                WorkloadDisplay.Print(Terminal.For(output), report);
            }

            return report.SaverClean ? ExitCodes.Success : ExitCodes.Failure;
        });
        return command;
    }

    private static void Change(string path, string connectionString, Action<SaverDbConnection> change)
    {
        using var connection = DatabaseFile.Open(path, () => new SaverDbConnection(connectionString));
        change(connection);
    }

    /// <summary>The database's journal mode as SQLite names it (<c>delete</c>, <c>wal</c> ...).</summary>
    private static string ReadJournalMode(string path)
    {
        using var connection = DatabaseFile.OpenPlain(path, SqliteOpenMode.ReadOnly, busyTimeout: 5000);
        using var read = connection.CreateCommand();
        read.CommandText = "PRAGMA journal_mode";
        return (string)read.ExecuteScalar()!;
    }

    /// <summary>
    /// Sets back the journal mode the database had before the run, which switched it to WAL (SqliteSaver's default,
    /// unless the connection string names another), once the run's connections are closed.
    /// </summary>
    /// <exception cref="SqliteException">Another connection kept the database open, or another error.</exception>
    private static void RestoreJournalMode(string path, string? journalMode)
    {
        // Only SQLite's own names are written into the PRAGMA, never text read back from the file.
        var restore = journalMode switch
        {
            "delete" => "DELETE",
            "truncate" => "TRUNCATE",
            "persist" => "PERSIST",
            "memory" => "MEMORY",
            "off" => "OFF",
            _ => null, // wal already, or a new database
        };
        if (restore is null)
        {
            return;
        }

        SaverDbConnection.ClearAllPools();
        using var connection = DatabaseFile.OpenPlain(path, SqliteOpenMode.ReadWrite, busyTimeout: 5000);
        using var set = connection.CreateCommand();
        set.CommandText = "PRAGMA journal_mode = " + restore;
        if (set.ExecuteScalar() as string != journalMode)
        {
            throw new InvalidOperationException(
                $"{path}: the run switched the database to WAL, and it could not be set back to {journalMode} journal mode while another connection has it open; run PRAGMA journal_mode = {restore} once none has.");
        }
    }
}
