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
            var journalMode = DatabaseFile.Exists(path) ? ReadJournalMode(path) : null;
            var error = parseResult.InvocationConfiguration.Error;
            try
            {
                Change(path, saverConnectionString, StressTable.Create);
            }
            catch (Exception)
            {
                // Opening switched the database to WAL; a saver_stress table that is not the run's own stays as it is.
                if (RestoreJournalMode(path, journalMode) is { } notRestored)
                {
                    error.WriteLine($"sqlite-saver stress: {notRestored}");
                }

                throw;
            }

            using var interruption = new Interruption();
            StackResult? result = null;
            var childStopped = false;
            try
            {
                result = WorkloadDisplay.Run(Terminal.For(output), json, Stack.Saver, settings, interruption.Token);
            }
            catch (Exception exception) when (interruption.Interrupted || exception is OperationCanceledException)
            {
                // A child writer that the signal reached before it could handle it (still starting up) died of it,
                // perhaps before this process handled its own.
                childStopped = true;
            }
            finally
            {
                if (!parseResult.GetValue(keep))
                {
                    Change(path, saverConnectionString, StressTable.Drop);
                }

                if (RestoreJournalMode(path, journalMode) is { } notRestored)
                {
                    error.WriteLine($"sqlite-saver stress: {notRestored}");
                }
            }

            if (interruption.Interrupted || childStopped)
            {
                error.WriteLine(
                    $"sqlite-saver stress: interrupted; {(parseResult.GetValue(keep) ? $"the table {StressTable.Name} is kept" : $"the table {StressTable.Name} was dropped")}");
                return ExitCodes.Interrupted;
            }

            var report = new WorkloadReport(path, settings, [result!]);
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

    /// <summary>
    /// The database's journal mode as SQLite names it (<c>delete</c>, <c>wal</c> ...). Read-write, as the run writes
    /// anyway: SQLite opens no read-only connection while a hot journal a crashed writer left waits to be rolled back.
    /// </summary>
    private static string ReadJournalMode(string path)
    {
        using var connection = DatabaseFile.OpenPlain(path, SqliteOpenMode.ReadWrite, busyTimeout: 5000);
        using var read = connection.CreateCommand();
        read.CommandText = "PRAGMA journal_mode";
        return (string)read.ExecuteScalar()!;
    }

    /// <summary>
    /// Sets back the journal mode the database had before the run, which switched it to WAL (SqliteSaver's default) or
    /// the Journal Mode the connection string names, once the run's connections are closed.
    /// </summary>
    /// <returns>Null, or why the mode could not be set back (another connection has the database open, say).</returns>
    private static string? RestoreJournalMode(string path, string? journalMode)
    {
        // Only SQLite's own names are written into the PRAGMA, never text read back from the file. A new connection
        // reads one of two: WAL is the only journal mode the file keeps, the others are each connection's own.
        var restore = journalMode switch
        {
            "delete" => "DELETE",
            "wal" => "WAL",
            _ => null, // a new database
        };
        if (restore is null)
        {
            return null;
        }

        SaverDbConnection.ClearAllPools();
        try
        {
            // A second for another connection's read to end; one kept open would hold the mode for good.
            using var connection = DatabaseFile.OpenPlain(path, SqliteOpenMode.ReadWrite, busyTimeout: 1000);
            using var mode = connection.CreateCommand();
            mode.CommandTimeout = 1; // Microsoft.Data.Sqlite would try again for 30 s
            mode.CommandText = "PRAGMA journal_mode";
            if (mode.ExecuteScalar() as string is var now && now == journalMode)
            {
                return null;
            }

            mode.CommandText = "PRAGMA journal_mode = " + restore;
            return mode.ExecuteScalar() as string == journalMode
                ? null
                : $"the database was left in {now} journal mode: another connection has it open. Run PRAGMA journal_mode = {restore} once none has.";
        }
        catch (SqliteException exception)
        {
            return $"the database could not be set back to {journalMode} journal mode ({Program.OneLine(exception.Message).TrimEnd('.')}). Run PRAGMA journal_mode = {restore} once no other connection has it open.";
        }
    }
}
