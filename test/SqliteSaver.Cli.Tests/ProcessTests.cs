using System.Diagnostics;
using Shouldly;

namespace SqliteSaver.Cli.Tests;

/// <summary>The tool as a process of its own: its exit code and standard error are the ones <c>Program.Run</c> returns and writes.</summary>
public class ProcessTests : CliTest
{
    [Test]
    public void Bad_input_exits_with_2_and_one_line_on_stderr()
    {
        var (exitCode, output, error) = RunTool("info", PathOf("missing.db"));

        exitCode.ShouldBe(2);
        output.ShouldBeEmpty();
        error.ShouldBe($"sqlite-saver info: {PathOf("missing.db")}: no such file{Environment.NewLine}");
        File.Exists(PathOf("missing.db")).ShouldBeFalse();
    }

    /// <summary>
    /// A file name that starts with '@', as typed in its folder, is that file: System.CommandLine read the file named
    /// after the '@' for arguments (a bug hunt's finding), so the tool ran on the database that file named, or printed a
    /// database's bytes as unrecognized arguments.
    /// </summary>
    [TestCase("info")]
    [TestCase("checkpoint")]
    public void A_file_name_that_starts_with_an_at_sign_names_that_file(string command)
    {
        using (var at = Open(PathOf("@app.db")))
        {
            Execute(at, "CREATE TABLE t (x)");
        }

        File.WriteAllText(PathOf("app.db"), PathOf("other.db") + "\n");
        using (var other = Open(PathOf("other.db")))
        {
            Execute(other, "CREATE TABLE a (x)");
        }

        var (exitCode, output, error) = RunToolIn(Folder, command, "@app.db", "--json");

        exitCode.ShouldBe(0, error);
        output.ShouldContain($"\"{PathOf("@app.db")}\"");
        output.ShouldNotContain("other.db");
    }

    [Test]
    public void A_busy_checkpoint_exits_with_3()
    {
        var path = PathOf();
        using var writer = CreateWalDatabase(path);
        using var reader = Open(path);
        Execute(reader, "BEGIN; SELECT count(*) FROM item;");
        Execute(writer, "INSERT INTO item (text) VALUES ('after the reader started')");

        var (exitCode, output, error) = RunTool("checkpoint", path, "--mode", "truncate", "--busy-timeout", "0");

        exitCode.ShouldBe(3, error);
        output.ShouldContain("truncate checkpoint BUSY");
    }

    [TestCase("TERM")]
    [TestCase("KILL")]
    public void Child_writers_stop_when_the_tool_is_stopped_by_a_signal(string signal)
    {
        var start = new ProcessStartInfo("dotnet", [typeof(Program).Assembly.Location,
            "stress", "--db", PathOf(), "--seconds", "120", "--threads", "1", "--processes", "2", "--read-ratio", "0"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var tool = Process.Start(start)!;
        _ = tool.StandardOutput.ReadToEndAsync();
        _ = tool.StandardError.ReadToEndAsync();
        var children = Array.Empty<int>();
        try
        {
            // The child writers are writers 1 and 2 (writer 0 is the tool's own thread): wait until both have written.
            SpinWait.SpinUntil(() => ChildWritersHaveWritten(PathOf()), TimeSpan.FromSeconds(60)).ShouldBeTrue("the child writers did not start writing");
            children = ChildrenOf(tool.Id);
            children.Length.ShouldBe(2);
            using (var kill = Process.Start("kill", ["-" + signal, tool.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!)
            {
                kill.WaitForExit();
            }

            tool.WaitForExit(TimeSpan.FromSeconds(30)).ShouldBeTrue("the tool did not stop");
            SpinWait.SpinUntil(() => !children.Any(IsAlive), TimeSpan.FromSeconds(30))
                .ShouldBeTrue("child writers still running after the tool was stopped"); // they would write on for 120 s
        }
        finally
        {
            foreach (var child in children.Where(IsAlive))
            {
                using var process = Process.GetProcessById(child);
                process.Kill();
            }

            if (!tool.HasExited)
            {
                tool.Kill(entireProcessTree: true);
            }
        }
    }

    /// <summary>
    /// A child writer that dies (here of SIGKILL) leaves no report: the run ends then, not at its time (a minute here),
    /// fails, says why, and still drops its table.
    /// </summary>
    [Test]
    public void Stress_whose_child_writer_is_killed_fails_with_exit_code_1_and_says_so()
    {
        var path = PathOf();
        var start = new ProcessStartInfo("dotnet", [typeof(Program).Assembly.Location,
            "stress", "--db", path, "--seconds", "60", "--threads", "1", "--processes", "2", "--read-ratio", "0"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var tool = Process.Start(start)!;
        _ = tool.StandardOutput.ReadToEndAsync();
        var error = tool.StandardError.ReadToEndAsync();
        try
        {
            SpinWait.SpinUntil(() => ChildWritersHaveWritten(path), TimeSpan.FromSeconds(60)).ShouldBeTrue("the child writers did not start writing");
            using (var child = Process.GetProcessById(ChildrenOf(tool.Id)[0]))
            {
                child.Kill();
            }

            tool.WaitForExit(TimeSpan.FromSeconds(30)).ShouldBeTrue("the tool did not stop when its child writer died");
        }
        finally
        {
            if (!tool.HasExited)
            {
                tool.Kill(entireProcessTree: true);
            }
        }

        tool.ExitCode.ShouldBe(1, error.Result);
        error.Result.ShouldStartWith("sqlite-saver stress: A child writer process failed");
        StressRows(path).ShouldBe(-1, "the table saver_stress and its rows were left in the user's database");
    }

    [TestCase("TERM")]
    [TestCase("INT")]
    public void Stress_stopped_by_a_signal_still_drops_its_table_and_exits_with_130(string signal)
        => StressStopsCleanly(signal, group: false, processes: 2, (path, _) => ChildWritersHaveWritten(path), "the child writers writing");

    [Test]
    public void Stress_stopped_by_Ctrl_C_at_a_terminal_exits_with_130_although_its_child_writers_get_the_SIGINT_too()
        => StressStopsCleanly("INT", group: true, processes: 2, (path, _) => ChildWritersHaveWritten(path), "the child writers writing");

    [Test]
    public void Stress_stopped_by_Ctrl_C_while_its_child_writers_start_exits_with_130()
        => StressStopsCleanly(
            "INT",
            group: true,
            processes: 4,
            (path, tool) => ChildrenStarted(tool) && !ChildWritersHaveWritten(path), // "go" comes once all are ready
            "a child writer started, none writing yet");

    /// <summary>
    /// Runs stress for up to 120 s on a database with a table of the user's, sends it SIG<paramref name="signal"/> once
    /// <paramref name="ready"/> holds (for the path and the tool's process id), and checks that it stopped, dropped its
    /// table and exited with 130. With <paramref name="group"/> the signal goes to the tool's whole process group, as a
    /// terminal's Ctrl-C does, the child writers included (setsid gives the tool a group of its own, as a shell's job
    /// has).
    /// </summary>
    private void StressStopsCleanly(string signal, bool group, int processes, Func<string, int, bool> ready, string waitingFor)
    {
        var path = PathOf();
        using (var connection = Open(path))
        {
            Execute(connection, "CREATE TABLE note (id INTEGER PRIMARY KEY, text TEXT)");
        }

        string[] stress = [typeof(Program).Assembly.Location, "stress", "--db", path, "--seconds", "120", "--threads", "1",
            "--processes", processes.ToString(System.Globalization.CultureInfo.InvariantCulture), "--read-ratio", "0"];
        var start = group ? new ProcessStartInfo("setsid", ["dotnet", .. stress]) : new ProcessStartInfo("dotnet", stress);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        using var tool = Process.Start(start)!;
        _ = tool.StandardOutput.ReadToEndAsync();
        var error = tool.StandardError.ReadToEndAsync();
        try
        {
            SpinWait.SpinUntil(() => ready(path, tool.Id), TimeSpan.FromSeconds(60)).ShouldBeTrue($"waited in vain for {waitingFor}");
            var id = tool.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
            using (var kill = Process.Start("kill", group ? ["-" + signal, "--", "-" + id] : ["-" + signal, id])!)
            {
                kill.WaitForExit();
                kill.ExitCode.ShouldBe(0, "kill could not signal the tool (or, with group, the tool leads no process group)");
            }

            tool.WaitForExit(TimeSpan.FromSeconds(60)).ShouldBeTrue("the tool did not stop");
        }
        finally
        {
            if (!tool.HasExited)
            {
                tool.Kill(entireProcessTree: true);
            }
        }

        StressRows(path).ShouldBe(-1, "the table saver_stress and its rows were left in the user's database");
        tool.ExitCode.ShouldBe(130, error.Result);
        error.Result.ShouldBe($"sqlite-saver stress: interrupted; the table saver_stress was dropped{Environment.NewLine}");
    }

    private static bool ChildrenStarted(int pid)
    {
        try
        {
            return ChildrenOf(pid).Length > 0;
        }
        catch (IOException)
        {
            return false; // a thread ended while its children were listed
        }
    }

    [Test]
    public void Demo_stopped_by_SIGTERM_still_deletes_its_temporary_folder()
    {
        var before = Directory.GetDirectories(Path.GetTempPath(), "sqlite-saver-demo-*").ToHashSet();
        var start = new ProcessStartInfo("dotnet", [typeof(Program).Assembly.Location,
            "demo", "--seconds", "120", "--threads", "1", "--processes", "0", "--read-ratio", "0"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var tool = Process.Start(start)!;
        _ = tool.StandardOutput.ReadToEndAsync();
        _ = tool.StandardError.ReadToEndAsync();
        string[] Started() => [.. Directory.GetDirectories(Path.GetTempPath(), "sqlite-saver-demo-*")
            .Where(folder => !before.Contains(folder) && File.Exists(Path.Combine(folder, "plain.db-wal")))];
        var started = Array.Empty<string>();
        try
        {
            SpinWait.SpinUntil(() => Started().Length > 0, TimeSpan.FromSeconds(60)).ShouldBeTrue("the demo did not start writing");
            started = Started();
            using (var kill = Process.Start("kill", ["-TERM", tool.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!)
            {
                kill.WaitForExit();
            }

            tool.WaitForExit(TimeSpan.FromSeconds(30)).ShouldBeTrue("the demo did not stop");
            started.Where(Directory.Exists).ShouldBeEmpty("the demo's temporary folder and its database files were left behind");
        }
        finally
        {
            if (!tool.HasExited)
            {
                tool.Kill(entireProcessTree: true);
            }

            foreach (var folder in started.Where(Directory.Exists))
            {
                Directory.Delete(folder, recursive: true);
            }
        }
    }

    /// <summary>The rows in saver_stress; -1 when the table does not exist.</summary>
    private static long StressRows(string path)
    {
        try
        {
            using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT count(*) FROM sqlite_schema WHERE name = 'saver_stress'";
            if ((long)command.ExecuteScalar()! == 0)
            {
                return -1;
            }

            command.CommandText = "SELECT count(*) FROM saver_stress";
            return (long)command.ExecuteScalar()!;
        }
        catch (Microsoft.Data.Sqlite.SqliteException)
        {
            return 0; // locked for a moment
        }
    }

    private static bool ChildWritersHaveWritten(string path)
    {
        try
        {
            using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT count(DISTINCT writer) FROM saver_stress WHERE writer > 0";
            return (long)command.ExecuteScalar()! == 2;
        }
        catch (Microsoft.Data.Sqlite.SqliteException)
        {
            return false; // not created yet, or locked for a moment
        }
    }

    /// <summary>The processes <paramref name="pid"/> started, as Linux lists them.</summary>
    private static int[] ChildrenOf(int pid)
        => [.. Directory.GetDirectories($"/proc/{pid}/task")
            .Select(task => Path.Combine(task, "children"))
            .Where(File.Exists)
            .SelectMany(file => File.ReadAllText(file).Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(int.Parse)];

    private static bool IsAlive(int pid)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/stat").Split(' ')[2] != "Z"; // a zombie has exited
        }
        catch (IOException)
        {
            return false;
        }
    }

    private static (int ExitCode, string Output, string Error) RunTool(params string[] args) => RunToolIn(null, args);

    /// <summary>Runs the tool as a process of its own in <paramref name="folder"/> (this process's current directory when null).</summary>
    private static (int ExitCode, string Output, string Error) RunToolIn(string? folder, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet", [typeof(Program).Assembly.Location, .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = folder ?? string.Empty,
        };
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true); // no orphan holds the test's files
            throw new TimeoutException("The tool did not exit within 60 s.");
        }

        return (process.ExitCode, output.Result, error.Result);
    }
}
