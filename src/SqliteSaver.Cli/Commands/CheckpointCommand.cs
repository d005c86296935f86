using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using Microsoft.Data.Sqlite;
using SqliteSaver.Cli.Database;
using SqliteSaver.Data;
using SQLitePCL;

namespace SqliteSaver.Cli.Commands;

/// <summary><c>checkpoint</c>: one WAL checkpoint of an existing database, with exit code 3 when it came back busy.</summary>
internal static class CheckpointCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("PATH") { Description = "The database file; it must exist (it is never created)." };
        var mode = new Option<string>("--mode") // not the enum, whose help would show its default as "Passive"
        {
            Description = "passive copies what it can without waiting; full waits for writers and old readers, then copies everything; " +
                "restart also waits until no reader uses the WAL; truncate also empties the -wal file.",
            DefaultValueFactory = _ => "passive",
            CustomParser = ParseMode,
            HelpName = "passive|full|restart|truncate",
        };
        var busyTimeout = CommonOptions.Count("--busy-timeout", "How long full, restart and truncate wait for readers and writers (restart and truncate hold the write lock meanwhile, so the application's writers wait as long), and opening waits for another connection's lock, in milliseconds.", 5000, 0);
        busyTimeout.HelpName = "MS";
        var json = CommonOptions.Json();
        var command = new Command(
            "checkpoint",
            "Runs a WAL checkpoint on a database and prints the frames in the WAL and the frames copied back. " +
            "Exit code 0 when it finished, 3 when it came back busy (a reader or writer stayed busy past the busy timeout). " +
            "A database not in WAL mode has nothing to checkpoint (exit code 0).")
        {
            Arguments = { path },
            Options = { mode, busyTimeout, json },
        };
        command.SetAction(parseResult =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            var file = DatabaseFile.RequireExisting(parseResult.GetRequiredValue(path));
            var checkpointMode = Enum.Parse<CheckpointMode>(parseResult.GetRequiredValue(mode), ignoreCase: true); // ParseMode checked it
            using var connection = DatabaseFile.OpenPlain(file, SqliteOpenMode.ReadWrite, parseResult.GetValue(busyTimeout));

            var before = connection.GetWalStatus();
            if (before.JournalMode == "wal" && raw.sqlite3_db_readonly(connection.Handle, "main") == 1)
            {
                // SQLite opens a file it may not write read-only, without a word; the library would then refuse the
                // checkpoint in terms of connection strings.
                throw new UnauthorizedAccessException($"{file}: this user may not write the file, and a checkpoint writes it (SQLite could open it only read-only)");
            }

            var result = connection.Checkpoint(checkpointMode);
            var after = connection.GetWalStatus();
            var report = new CheckpointReport(
                file, checkpointMode.ToString().ToLowerInvariant(), result.Busy, result.LogFrames, result.CheckpointedFrames, after.JournalMode,
                before.WalFileBytes, after.WalFileBytes);
            if (parseResult.GetValue(json))
            {
                Json.Write(output, report);
            }
            else
            {
                output.WriteLine(Describe(report));
            }

            return result.Busy ? ExitCodes.CheckpointBusy : ExitCodes.Success;
        });
        return command;
    }

    private static string Describe(CheckpointReport report)
    {
        if (report.JournalMode != "wal")
        {
            return $"{report.Database}: not in WAL mode (journal mode {report.JournalMode}), nothing to checkpoint";
        }

        if (report.LogFrames < 0)
        {
            return $"{report.Database}: {report.Mode} checkpoint BUSY: another connection's checkpoint kept running, nothing was checkpointed";
        }

        var frames = string.Create(CultureInfo.InvariantCulture,
            $"{report.LogFrames} frames in the WAL, {report.CheckpointedFrames} checkpointed; -wal file {Format.Bytes(report.WalBytesBefore)} before, {Format.Bytes(report.WalBytes)} after");
        return report.Busy
            ? $"{report.Database}: {report.Mode} checkpoint BUSY (a reader or writer stayed busy): {frames}"
            : $"{report.Database}: {report.Mode} checkpoint done: {frames}";
    }

    private static string ParseMode(ArgumentResult result)
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : string.Empty;
        foreach (var mode in Enum.GetValues<CheckpointMode>())
        {
            if (text.Equals(mode.ToString(), StringComparison.OrdinalIgnoreCase))
            {
                return text;
            }
        }

        result.AddError($"--mode must be passive, full, restart or truncate, not '{text}'.");
        return text;
    }
}
