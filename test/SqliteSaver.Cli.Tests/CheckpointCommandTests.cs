using System.Text.Json;
using Shouldly;

namespace SqliteSaver.Cli.Tests;

/// <summary><c>checkpoint</c>: exit code 0 when it finished, 3 when busy; frames printed; <c>--json</c> prints one object.</summary>
public class CheckpointCommandTests : CliTest
{
    [Test]
    public void A_database_another_connection_holds_exclusively_fails_within_the_busy_timeout()
    {
        var path = PathOf();
        using var writer = CreateWalDatabase(path);
        Execute(writer, "PRAGMA locking_mode = EXCLUSIVE; INSERT INTO item (text) VALUES ('held');");

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var run = CliRun.Of("checkpoint", path, "--busy-timeout", "0");

        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(15)); // not Microsoft.Data.Sqlite's 30 s of retries
        run.ExitCode.ShouldBe(1, run.Error);
        run.Error.ShouldBe($"sqlite-saver checkpoint: SQLite Error 5: 'database is locked': another connection held a lock on {path} for longer than this command waits (0 ms).{Environment.NewLine}");
    }

    /// <summary>
    /// README's exit code 1: an error of the file system is led by the database's path, "a file this user may not
    /// read or write". SQLite opens such a file read-only without a word, and the library then refused the checkpoint
    /// in the terms of a connection string (<c>Mode=ReadOnly</c>), without the path (a bug hunt's finding).
    /// </summary>
    [Test]
    public void A_file_this_user_may_not_write_fails_with_an_error_naming_it()
    {
        var path = PathOf();
        CreateWalDatabase(path).Dispose();
        MayWrite(path, false);
        try
        {
            var run = CliRun.Of("checkpoint", path);

            run.ExitCode.ShouldBe(1, run.Error);
            run.Error.ShouldBe($"sqlite-saver checkpoint: {path}: this user may not write the file, and a checkpoint writes it (SQLite could open it only read-only){Environment.NewLine}");
        }
        finally
        {
            MayWrite(path, true);
        }
    }

    [Test]
    public void A_truncate_checkpoint_copies_every_frame_and_empties_the_wal()
    {
        var path = PathOf();
        using var keepOpen = CreateWalDatabase(path);

        var run = CliRun.Of("checkpoint", path, "--mode", "truncate", "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Error.ShouldBeEmpty();
        var json = run.Json();
        json.GetProperty("database").GetString().ShouldBe(path);
        json.GetProperty("mode").GetString().ShouldBe("truncate");
        json.GetProperty("busy").GetBoolean().ShouldBeFalse();
        json.GetProperty("logFrames").GetInt32().ShouldBe(0); // a TRUNCATE checkpoint reports the emptied WAL
        json.GetProperty("checkpointedFrames").GetInt32().ShouldBe(0);
        json.GetProperty("journalMode").GetString().ShouldBe("wal");
        json.GetProperty("walBytesBefore").GetInt64().ShouldBeGreaterThan(0);
        json.GetProperty("walBytes").GetInt64().ShouldBe(0);
        new FileInfo(path + "-wal").Length.ShouldBe(0);
    }

    /// <summary>
    /// Each mode, written in any case, is the checkpoint run and the mode reported (a mutation hunt: with restart run
    /// as a full checkpoint, no test failed).
    /// </summary>
    [TestCase("passive")]
    [TestCase("Full")]
    [TestCase("RESTART")]
    [TestCase("truncate")]
    public void Each_mode_is_run_and_reported_under_its_own_name(string mode)
    {
        var path = PathOf();
        using var keepOpen = CreateWalDatabase(path);

        var run = CliRun.Of("checkpoint", path, "--mode", mode, "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Json().GetProperty("mode").GetString().ShouldBe(mode.ToLowerInvariant());
        run.Json().GetProperty("busy").GetBoolean().ShouldBeFalse();
    }

    /// <summary>
    /// A database not in WAL mode that this user may not write has nothing to checkpoint, as one that may be written:
    /// only a WAL checkpoint writes the file (a mutation hunt: with every read-only open refused, no test failed).
    /// </summary>
    [Test]
    public void A_database_not_in_wal_mode_that_this_user_may_not_write_has_nothing_to_checkpoint()
    {
        var path = PathOf();
        using (var connection = Open(path))
        {
            Execute(connection, "CREATE TABLE item (id INTEGER PRIMARY KEY)");
        }

        MayWrite(path, false);
        try
        {
            var run = CliRun.Of("checkpoint", path);

            run.ExitCode.ShouldBe(0, run.Error);
            run.Output.ShouldContain("not in WAL mode (journal mode delete), nothing to checkpoint");
        }
        finally
        {
            MayWrite(path, true);
        }
    }

    [Test]
    public void A_passive_checkpoint_prints_the_frames_it_copied()
    {
        var path = PathOf();
        using var keepOpen = CreateWalDatabase(path);

        var run = CliRun.Of("checkpoint", path);

        run.ExitCode.ShouldBe(0, run.Error);
        run.Output.ShouldMatch(@"passive checkpoint done: (\d+) frames in the WAL, \1 checkpointed; -wal file ([\d.]+ KiB) before, \2 after");
    }

    [Test]
    public void A_checkpoint_held_up_by_a_reader_is_busy_and_exits_with_3()
    {
        var path = PathOf();
        using var writer = CreateWalDatabase(path);
        using var reader = Open(path);
        Execute(reader, "BEGIN; SELECT count(*) FROM item;"); // a reader on the current snapshot
        Execute(writer, "INSERT INTO item (text) VALUES ('after the reader started')");

        var json = CliRun.Of("checkpoint", path, "--mode", "restart", "--busy-timeout", "0", "--json");
        var text = CliRun.Of("checkpoint", path, "--mode", "full", "--busy-timeout", "0");

        json.ExitCode.ShouldBe(3, json.Error);
        json.Json().GetProperty("busy").GetBoolean().ShouldBeTrue();
        json.Json().GetProperty("checkpointedFrames").GetInt32().ShouldBeLessThan(json.Json().GetProperty("logFrames").GetInt32());
        text.ExitCode.ShouldBe(3, text.Error);
        text.Output.ShouldContain("full checkpoint BUSY");
    }

    [Test]
    public void A_database_not_in_wal_mode_has_nothing_to_checkpoint()
    {
        var path = PathOf();
        using (var connection = Open(path))
        {
            Execute(connection, "CREATE TABLE item (id INTEGER PRIMARY KEY)");
        }

        var json = CliRun.Of("checkpoint", path, "--mode", "truncate", "--json");
        var text = CliRun.Of("checkpoint", path);

        json.ExitCode.ShouldBe(0, json.Error);
        json.Json().GetProperty("logFrames").GetInt32().ShouldBe(-1);
        json.Json().GetProperty("journalMode").GetString().ShouldBe("delete");
        text.Output.ShouldContain("not in WAL mode (journal mode delete), nothing to checkpoint");
    }

    [Test]
    public void The_json_has_exactly_the_documented_fields()
    {
        var path = PathOf();
        using var keepOpen = CreateWalDatabase(path);

        var json = CliRun.Of("checkpoint", path, "--json").Json();

        json.ValueKind.ShouldBe(JsonValueKind.Object);
        json.EnumerateObject().Select(p => p.Name).ShouldBe(["database", "mode", "busy", "logFrames", "checkpointedFrames", "journalMode", "walBytesBefore", "walBytes"]);
    }

    [Test]
    public void A_checkpoint_held_up_by_another_checkpoint_says_busy_not_that_the_database_is_not_in_WAL_mode()
    {
        // Another connection's FULL checkpoint holds SQLite's checkpoint lock while it waits for a writer: this one
        // comes back busy at once, with -1 for both frame counts, as a database not in WAL mode does.
        var path = PathOf();
        using var writer = CreateWalDatabase(path);
        Execute(writer, "BEGIN IMMEDIATE; INSERT INTO item (text) VALUES ('pending');");
        using var stop = new CancellationTokenSource();
        var otherCheckpoint = Task.Factory.StartNew(
            () =>
            {
                using var other = Open(path);
                Execute(other, "PRAGMA busy_timeout = 60000");
                while (!stop.IsCancellationRequested)
                {
                    Execute(other, "PRAGMA wal_checkpoint(FULL)"); // waits for the writer, holding the checkpoint lock
                }
            },
            TaskCreationOptions.LongRunning);
        CliRun text, json;
        try
        {
            using (var probe = Open(path))
            {
                SpinWait.SpinUntil(() => CheckpointLockHeld(probe), TimeSpan.FromSeconds(30)).ShouldBeTrue("the other checkpoint did not start");
            }

            text = CliRun.Of("checkpoint", path, "--busy-timeout", "0");
            json = CliRun.Of("checkpoint", path, "--busy-timeout", "0", "--json");
        }
        finally
        {
            stop.Cancel();
            Execute(writer, "ROLLBACK");
            otherCheckpoint.Wait(TimeSpan.FromSeconds(60)).ShouldBeTrue("the other checkpoint did not end");
        }

        text.ExitCode.ShouldBe(3, text.Error);
        text.Output.ShouldContain("BUSY");
        text.Output.ShouldNotContain("not in WAL mode"); // it is in WAL mode: "journal mode wal"
        text.Output.ShouldContain("passive checkpoint BUSY: another connection's checkpoint kept running, nothing was checkpointed"); // not "-1 frames in the WAL"
        json.Json().GetProperty("busy").GetBoolean().ShouldBeTrue();
        json.Json().GetProperty("journalMode").GetString().ShouldBe("wal"); // -1 frames with busy: another checkpoint ran
    }

    /// <summary>Whether another connection holds SQLite's checkpoint lock: a passive checkpoint then returns -1 frames at once.</summary>
    private static bool CheckpointLockHeld(Microsoft.Data.Sqlite.SqliteConnection probe)
    {
        using var command = probe.CreateCommand();
        command.CommandText = "PRAGMA wal_checkpoint(PASSIVE)";
        using var reader = command.ExecuteReader();
        reader.Read();
        return reader.GetInt64(0) == 1 && reader.GetInt64(1) == -1;
    }
}
