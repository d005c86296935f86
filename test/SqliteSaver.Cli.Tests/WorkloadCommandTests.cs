using System.Globalization;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Cli.Tests;

/// <summary>
/// <c>demo</c> and <c>stress</c> on small inputs: one second, few threads, one child writer process. Nothing here
/// is timed: the checks are the shape of the output, zero errors and no lost or doubled rows through SqliteSaver.
/// </summary>
public class WorkloadCommandTests : CliTest
{
    /// <summary>The p99 and worst latency printed are nearest-rank percentiles of the acknowledged transactions.</summary>
    [TestCase(1, 0.99, 1.0)]
    [TestCase(100, 0.99, 99.0)] // the 99th of 100
    [TestCase(101, 0.99, 100.0)] // rank 99.99, rounded up: the 100th
    [TestCase(150, 0.99, 149.0)] // rank 148.5: the 149th
    [TestCase(200, 0.99, 198.0)]
    [TestCase(200, 1.0, 200.0)]
    public void Latency_percentiles_are_nearest_rank(int count, double fraction, double expectedMilliseconds)
    {
        var microseconds = Enumerable.Range(1, count).Select(n => n * 1000).ToArray();

        Workload.WorkloadRunner.PercentileMilliseconds(microseconds, fraction).ShouldBe(expectedMilliseconds);
    }

    [Test]
    public void No_acknowledged_transaction_has_no_latency_percentile()
        => Workload.WorkloadRunner.PercentileMilliseconds([], 0.99).ShouldBeNull();

    /// <summary>
    /// A stack's p99 and worst latency are taken over all its writers' latencies together, its commits are attempts less
    /// failures, and its errors are the writers' and the readers' (a mutation hunt: with the p99 taken at 0.95, no test
    /// failed, as no run's latencies are known).
    /// </summary>
    [Test]
    public void A_stacks_summary_takes_its_percentiles_over_every_writer_and_counts_every_error()
    {
        int[] slow = [.. Enumerable.Range(51, 50).Select(n => n * 1000)], fast = [.. Enumerable.Range(1, 50).Select(n => n * 1000)];
        Workload.WriterReport[] writers = [new(0, 52, [7, 9], slow, "a write failed"), new(1, 50, [], fast, null)];
        Workload.ReaderReport[] readers = [new(30, 0, null), new(10, 3, "a read failed")];

        var result = Workload.WorkloadRunner.Summarize(Workload.Stack.Saver, 4, [.. writers], 0, readers, 0, 0, 0);

        result.P99Milliseconds.ShouldBe(99.0); // the 99th of 100, not the 95th
        result.MaxMilliseconds.ShouldBe(100.0);
        result.Commits.ShouldBe(100);
        result.TransactionsPerSecond.ShouldBe(25.0);
        result.Errors.ShouldBe(5);
        result.FirstError.ShouldBe("a write failed");
        result.Reads.ShouldBe(40);
    }

    /// <summary>
    /// The exit code is 1 when the SqliteSaver run had an error or lost or doubled a row; Microsoft.Data.Sqlite's
    /// errors, which the demo is there to show, do not count (a mutation hunt: with lost or doubled rows ignored, or
    /// either stack's errors counted, no test failed; no run loses a row to show it).
    /// </summary>
    [TestCase(0, 0, 0, 5, true)]
    [TestCase(1, 0, 0, 0, false)]
    [TestCase(0, 1, 0, 0, false)]
    [TestCase(0, 0, 1, 0, false)]
    public void Only_the_SqliteSaver_runs_errors_and_lost_or_doubled_rows_make_the_workload_fail(long errors, long lost, long doubled, long plainErrors, bool clean)
    {
        var report = new Commands.WorkloadReport(null, 1, 0, 0, 1, [Result("Microsoft.Data.Sqlite", plainErrors, 0, 0), Result("SqliteSaver", errors, lost, doubled)]);

        report.SaverClean.ShouldBe(clean);
    }

    /// <summary>
    /// Each read that fails is counted, in the reader's report and in the running totals the progress display shows,
    /// and its first error is kept (a mutation hunt: no read failed in any test). Here the table is missing.
    /// </summary>
    [Test]
    public void A_reader_counts_each_read_that_fails_and_keeps_the_first_error()
    {
        var path = PathOf();
        using (var connection = Open(path))
        {
            Execute(connection, "CREATE TABLE note (id INTEGER PRIMARY KEY)");
        }

        var connectionString = Workload.Operations.ConnectionString(Workload.Stack.Saver, path, string.Empty);
        var counters = new Workload.WorkloadCounters();
        using var stop = new CancellationTokenSource();
        var reader = Task.Factory.StartNew(() => Workload.Loops.Read(Workload.Stack.Saver, connectionString, counters, stop.Token), TaskCreationOptions.LongRunning);
        try
        {
            SpinWait.SpinUntil(() => counters.Errors >= 3 || reader.IsCompleted, TimeSpan.FromSeconds(30)).ShouldBeTrue("the running totals never counted three failed reads");
        }
        finally
        {
            stop.Cancel();
            reader.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue("the reader did not stop");
        }

        var report = reader.Result;
        report.Reads.ShouldBe(0);
        report.Errors.ShouldBeGreaterThanOrEqualTo(3);
        report.Errors.ShouldBe(counters.Errors);
        report.FirstError.ShouldNotBeNull().ShouldContain("no such table: saver_stress");
    }

    /// <summary>
    /// Each write that commits is counted in the running totals the progress display shows, as in the writer's report
    /// (a mutation hunt: no test looked at the running totals).
    /// </summary>
    [Test]
    public void A_writer_counts_each_commit_in_the_running_totals()
    {
        var path = PathOf();
        using (var connection = Open(path))
        {
            Workload.StressTable.Create(connection);
        }

        var connectionString = Workload.Operations.ConnectionString(Workload.Stack.Saver, path, string.Empty);
        var counters = new Workload.WorkloadCounters();
        using var stop = new CancellationTokenSource();
        var writer = Task.Factory.StartNew(() => Workload.Loops.Write(Workload.Stack.Saver, connectionString, "run", 0, counters, stop.Token), TaskCreationOptions.LongRunning);
        try
        {
            SpinWait.SpinUntil(() => counters.Commits >= 3 || writer.IsCompleted, TimeSpan.FromSeconds(30)).ShouldBeTrue("the running totals never counted three commits");
        }
        finally
        {
            stop.Cancel();
            writer.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue("the writer did not stop");
        }

        var report = writer.Result;
        report.FailedSeqs.ShouldBeEmpty();
        counters.Commits.ShouldBe(report.Attempts);
        counters.Errors.ShouldBe(0);
    }

    /// <summary>
    /// An acknowledged transaction without its row is lost, and each row beyond the first for one transaction is
    /// doubled; a transaction that failed is neither (a mutation hunt: no run doubles a row, and a doubled count of 0
    /// passed every test).
    /// </summary>
    [Test]
    public void The_table_is_checked_for_lost_and_doubled_rows_against_the_writers_reports()
    {
        var path = PathOf();
        using (var connection = Open(path))
        {
            Workload.StressTable.Create(connection);
            Execute(connection, """
                INSERT INTO saver_stress (run, writer, seq, payload) VALUES ('run', 0, 0, 'x'), ('run', 0, 0, 'x'), ('run', 0, 0, 'x'), ('run', 0, 3, 'x');
                INSERT INTO saver_stress (run, writer, seq, payload) VALUES ('other run', 0, 1, 'x'), ('other run', 0, 1, 'x');
                """);
        }

        // Transactions 0 to 3: 0 has three rows, 1 failed, 2 is lost, 3 has its one row.
        var (lost, doubled) = Workload.StressTable.Verify(path, "run", [new Workload.WriterReport(0, 4, [1], [], "an error")]);

        lost.ShouldBe(1);
        doubled.ShouldBe(2);
    }

    /// <summary>
    /// A read that fails reaches the caller as a write does: stress counts it with the errors, reports it first when
    /// it came first, and exits with 1 (a mutation hunt: with the readers' errors left out of the count, no test
    /// failed). The user's saver_stress is a view whose payload cannot be read, over rows numbered past the 1000 that
    /// the writers' own reads look up, so that only the readers fail; --keep, as a view is not dropped as a table.
    /// </summary>
    [Test]
    public void Stress_counts_each_read_that_fails_with_the_errors_and_exits_with_1()
    {
        var path = PathOf("app.db");
        using (var connection = Open(path))
        {
            Execute(connection, """
                CREATE TABLE stored (id INTEGER PRIMARY KEY, run TEXT NOT NULL, writer INTEGER NOT NULL, seq INTEGER NOT NULL, payload TEXT NOT NULL);
                CREATE VIEW saver_stress AS SELECT id, run, writer, seq, json_extract(payload, '$') AS payload FROM stored;
                CREATE TRIGGER saver_stress_insert INSTEAD OF INSERT ON saver_stress BEGIN
                    INSERT INTO stored VALUES ((SELECT max(1000, coalesce(max(id), 0)) + 1 FROM stored), NEW.run, NEW.writer, NEW.seq, NEW.payload);
                END;
                """);
        }

        var run = CliRun.Of("stress", "--db", path, "--seconds", "0.5", "--threads", "1", "--processes", "0", "--read-ratio", "1", "--keep", "--json");

        run.ExitCode.ShouldBe(1, run.Error);
        var saver = run.Json().GetProperty("stacks").EnumerateArray().Single();
        saver.GetProperty("commits").GetInt64().ShouldBeGreaterThan(0);
        saver.GetProperty("errors").GetInt64().ShouldBeGreaterThan(0);
        saver.GetProperty("firstError").ToString().ShouldContain("malformed JSON");
        saver.GetProperty("rowsLost").GetInt64().ShouldBe(0);
    }

    [Test]
    public void A_one_second_demo_runs_both_stacks_with_zero_errors_through_SqliteSaver_and_deletes_its_files()
    {
        var before = DemoFolders();

        var run = CliRun.Of("demo", "--seconds", "1", "--threads", "4", "--processes", "1", "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Error.ShouldBeEmpty();
        var json = run.Json();
        json.GetProperty("database").ValueKind.ShouldBe(System.Text.Json.JsonValueKind.Null);
        json.GetProperty("threads").GetInt32().ShouldBe(4);
        json.GetProperty("processes").GetInt32().ShouldBe(1);
        json.GetProperty("readers").GetInt32().ShouldBe(1);
        json.GetProperty("seconds").GetDouble().ShouldBe(1);
        var stacks = json.GetProperty("stacks").EnumerateArray().ToList();
        stacks.Select(s => s.GetProperty("stack").GetString()).ShouldBe(["Microsoft.Data.Sqlite", "SqliteSaver"]);
        foreach (var stack in stacks)
        {
            stack.EnumerateObject().Select(p => p.Name).ShouldBe([
                "stack", "seconds", "commits", "childProcessCommits", "transactionsPerSecond", "p99Milliseconds", "maxMilliseconds", "errors",
                "firstError", "rowsLost", "rowsDoubled", "walBytes", "reads"]);
            stack.GetProperty("commits").GetInt64().ShouldBeGreaterThan(0);
            stack.GetProperty("transactionsPerSecond").GetDouble().ShouldBe(stack.GetProperty("commits").GetInt64() / stack.GetProperty("seconds").GetDouble(), 1e-6);
            stack.GetProperty("childProcessCommits").GetInt64().ShouldBeInRange(0, stack.GetProperty("commits").GetInt64());
            stack.GetProperty("rowsLost").GetInt64().ShouldBe(0);
            stack.GetProperty("rowsDoubled").GetInt64().ShouldBe(0);
        }

        var saver = stacks[1];
        saver.GetProperty("errors").GetInt64().ShouldBe(0, saver.GetProperty("firstError").ToString());
        saver.GetProperty("maxMilliseconds").GetDouble().ShouldBeGreaterThanOrEqualTo(saver.GetProperty("p99Milliseconds").GetDouble());
        DemoFolders().ShouldBe(before);
    }

    [Test]
    public void The_demo_prints_the_stacks_side_by_side()
    {
        var run = CliRun.Of("demo", "--seconds", "0.5", "--threads", "2", "--processes", "0", "--read-ratio", "0");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Output.ShouldContain("2 writer threads, 0 writer processes (one writer each) and 0 readers, 0.5 s per stack");
        run.Output.ShouldNotContain("child process"); // no row for the share of commits from none
        var header = run.Output.Split('\n').Single(line => line.Contains("Microsoft.Data.Sqlite │", StringComparison.Ordinal));
        header.ShouldContain("SqliteSaver");
        foreach (var row in new[] { "transactions per second", "p99 latency, ms", "worst latency, ms", "errors that reached the caller", "rows lost / doubled", "WAL file at the end", "reads per second" })
        {
            run.Output.ShouldContain($"│ {row}");
        }

        // Latencies in milliseconds with one decimal, as README shows them ("154.0").
        run.Output.ShouldMatch(@"│ p99 latency, ms +│ +\d+\.\d │ +\d+\.\d │");
        run.Output.ShouldMatch(@"│ worst latency, ms +│ +\d+\.\d │ +\d+\.\d │");
    }

    /// <summary>Stress runs one stack: its description line gives the run's length, not a length "per stack".</summary>
    [Test]
    public void Stress_describes_its_one_stack_run()
    {
        var run = CliRun.Of("stress", "--db", PathOf("stress.db"), "--seconds", "0.5", "--threads", "2", "--processes", "0", "--read-ratio", "0");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Output.ShouldContain("2 writer threads, 0 writer processes (one writer each) and 0 readers, 0.5 s, on ");
    }

    /// <summary>
    /// One of a thing is singular ("1 writer thread", "1 reader"), and the readers are the writer threads times
    /// --read-ratio rounded half away from zero: 1 x 0.5 is 1 reader, not 0.
    /// </summary>
    [Test]
    public void Stress_with_one_writer_thread_and_a_read_ratio_of_a_half_runs_one_reader_and_says_so_in_the_singular()
    {
        var run = CliRun.Of("stress", "--db", PathOf("stress.db"), "--seconds", "0.3", "--threads", "1", "--processes", "0", "--read-ratio", "0.5");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Output.ShouldContain("1 writer thread, 0 writer processes (one writer each) and 1 reader, 0.3 s, on ");
    }

    [Test]
    public void Stress_runs_in_a_table_of_its_own_on_the_users_database_and_drops_it()
    {
        var path = PathOf("app.db");
        using (var connection = Open(path))
        {
            Execute(connection, "CREATE TABLE note (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO note (text) VALUES ('mine');");
        }

        var run = CliRun.Of("stress", "--db", path, "--seconds", "1", "--threads", "2", "--processes", "1", "--connection-string", "Busy Timeout=2000", "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        var json = run.Json();
        json.GetProperty("database").GetString().ShouldBe(path);
        var saver = json.GetProperty("stacks").EnumerateArray().Single();
        saver.GetProperty("stack").GetString().ShouldBe("SqliteSaver");
        saver.GetProperty("errors").GetInt64().ShouldBe(0);
        saver.GetProperty("rowsLost").GetInt64().ShouldBe(0);
        saver.GetProperty("rowsDoubled").GetInt64().ShouldBe(0);
        Tables(path).ShouldBe(["note"]);
    }

    [Test]
    public void Stress_leaves_the_journal_mode_of_the_users_database_as_it_found_it()
    {
        var path = PathOf("app.db");
        using (var connection = Open(path))
        {
            Execute(connection, "CREATE TABLE note (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO note (text) VALUES ('mine');");
        }

        var run = CliRun.Of("stress", "--db", path, "--seconds", "0.5", "--threads", "1", "--processes", "0", "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        Tables(path).ShouldBe(["note"]);
        using var after = Open(path);
        using var journalMode = after.CreateCommand();
        journalMode.CommandText = "PRAGMA journal_mode";
        journalMode.ExecuteScalar().ShouldBe("delete"); // "wal": the run switched the user's database to WAL for good
    }

    [Test]
    public void Stress_with_another_Journal_Mode_leaves_a_WAL_database_in_WAL_mode()
    {
        // The README: "It runs in WAL mode (unless your keywords name another Journal Mode) and sets back the journal
        // mode the database had."
        var path = PathOf("app.db");
        using (var connection = Open(path))
        {
            Execute(connection, "PRAGMA journal_mode = WAL; CREATE TABLE note (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO note (text) VALUES ('mine');");
        }

        var run = CliRun.Of("stress", "--db", path, "--seconds", "0.5", "--threads", "1", "--processes", "0", "--json",
            "--connection-string", "Journal Mode=Delete");

        run.ExitCode.ShouldBe(0, run.Error);
        Tables(path).ShouldBe(["note"]);
        using var after = Open(path);
        using var journalMode = after.CreateCommand();
        journalMode.CommandText = "PRAGMA journal_mode";
        journalMode.ExecuteScalar().ShouldBe("wal"); // "delete": the run switched the user's WAL database out of WAL for good
    }

    [Test]
    public void Stress_on_a_database_the_application_reads_meanwhile_still_reports_its_run()
    {
        // The user's application keeps its connection to its rollback-journal database and reads now and then while
        // stress runs: the run itself is clean, and before the journal-mode restore it printed its report and exited 0.
        var path = PathOf("app.db");
        using var application = Open(path);
        Execute(application, "CREATE TABLE note (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO note (text) VALUES ('mine');");
        using var stop = new ManualResetEventSlim();
        var reads = Task.Factory.StartNew(
            () =>
            {
                do
                {
                    using var read = application.CreateCommand();
                    read.CommandText = "SELECT count(*) FROM note";
                    read.ExecuteScalar();
                }
                while (!stop.Wait(20)); // pacing only
            },
            TaskCreationOptions.LongRunning);

        CliRun run;
        try
        {
            run = CliRun.Of("stress", "--db", path, "--seconds", "0.5", "--threads", "1", "--processes", "0", "--json");
        }
        finally
        {
            stop.Set();
            reads.Wait(TimeSpan.FromSeconds(30)).ShouldBeTrue();
        }

        run.ExitCode.ShouldBe(0, run.Error);
        run.Json().GetProperty("stacks").EnumerateArray().Single().GetProperty("errors").GetInt64().ShouldBe(0);
        Tables(path).ShouldBe(["note"]);
        run.Error.ShouldContain("PRAGMA journal_mode = DELETE"); // the application's connection keeps it in WAL mode
    }

    [Test]
    public void Stress_with_keep_leaves_one_row_per_acknowledged_commit()
    {
        var path = PathOf("new.db");

        var run = CliRun.Of("stress", "--db", path, "--seconds", "0.5", "--threads", "2", "--processes", "1", "--read-ratio", "0.5", "--keep", "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        var saver = run.Json().GetProperty("stacks")[0];
        Tables(path).ShouldBe(["saver_stress"]);
        Rows(path).ShouldBe(saver.GetProperty("commits").GetInt64());
        Rows(path, "writer = 2").ShouldBe(saver.GetProperty("childProcessCommits").GetInt64()); // writers 0 and 1 are threads, 2 the child
        saver.GetProperty("reads").GetInt64().ShouldBeGreaterThan(0);
        saver.GetProperty("seconds").GetDouble().ShouldBeGreaterThanOrEqualTo(0.45); // the writers ran their time, less a timer's tick
    }

    /// <summary>
    /// Each write that the user's trigger fails reaches the caller and is counted as an error, not as a lost row; the
    /// first error is the one reported, and the exit code is 1.
    /// </summary>
    [Test]
    public void Stress_counts_each_write_that_fails_and_reports_the_first_error_with_exit_code_1()
    {
        var run = CliRun.Of("stress", "--db", DatabaseWhoseOddWritesFail(), "--seconds", "0.5", "--threads", "1", "--processes", "0", "--read-ratio", "0", "--json");

        run.ExitCode.ShouldBe(1, run.Error);
        var saver = run.Json().GetProperty("stacks").EnumerateArray().Single();
        var commits = saver.GetProperty("commits").GetInt64();
        commits.ShouldBeGreaterThan(1);
        saver.GetProperty("errors").GetInt64().ShouldBeInRange(commits - 1, commits); // the one writer's writes commit and fail by turns
        saver.GetProperty("firstError").ToString().ShouldContain("the first write failed");
        saver.GetProperty("rowsLost").GetInt64().ShouldBe(0);
        saver.GetProperty("rowsDoubled").GetInt64().ShouldBe(0);
    }

    [Test]
    public void Stress_prints_the_child_processes_share_of_the_commits_and_the_first_error()
    {
        var path = DatabaseWhoseOddWritesFail();

        var run = CliRun.Of("stress", "--db", path, "--seconds", "0.5", "--threads", "1", "--processes", "1", "--read-ratio", "0", "--keep");

        run.ExitCode.ShouldBe(1, run.Error);
        run.Output.ShouldContain("SqliteSaver: running for 0.5 s ...");
        var share = (100.0 * Rows(path, "writer = 1") / Rows(path)).ToString("0", CultureInfo.InvariantCulture); // writer 0 is the thread, 1 the child
        run.Output.ShouldMatch($@"│ commits from the 1 child process +│ +{share} % │");
        run.Output.ShouldMatch("SqliteSaver, first error: .*the first write failed");
    }

    [Test]
    public void Stress_refuses_a_table_of_the_same_name_that_is_not_its_own()
    {
        var path = PathOf("app.db");
        using (var connection = Open(path))
        {
            Execute(connection, "CREATE TABLE saver_stress (name TEXT)");
        }

        var run = CliRun.Of("stress", "--db", path, "--seconds", "0.5", "--threads", "1", "--processes", "0");

        run.ExitCode.ShouldBe(2);
        run.Error.ShouldContain("has a table saver_stress that is not this tool's");
        Tables(path).ShouldBe(["saver_stress"]);
    }

    /// <summary>A database with the workload's table whose triggers fail every odd-numbered write: the first one with a message of its own.</summary>
    private string DatabaseWhoseOddWritesFail()
    {
        var path = PathOf("app.db");
        using var connection = Open(path);
        Execute(connection, """
            CREATE TABLE saver_stress (id INTEGER PRIMARY KEY, run TEXT NOT NULL, writer INTEGER NOT NULL, seq INTEGER NOT NULL, payload TEXT NOT NULL);
            CREATE TRIGGER first_fails BEFORE INSERT ON saver_stress WHEN NEW.seq = 1 BEGIN SELECT RAISE(ABORT, 'the first write failed'); END;
            CREATE TRIGGER later_ones_fail BEFORE INSERT ON saver_stress WHEN NEW.seq % 2 = 1 AND NEW.seq > 1 BEGIN SELECT RAISE(ABORT, 'a later write failed'); END;
            """);
        return path;
    }

    /// <summary>The rows of saver_stress that match <paramref name="where"/>.</summary>
    private static long Rows(string path, string where = "true")
    {
        using var connection = Open(path);
        using var count = connection.CreateCommand();
        count.CommandText = $"SELECT count(*) FROM saver_stress WHERE {where}";
        return (long)count.ExecuteScalar()!;
    }

    /// <summary>A stack's result of ten commits in a second, with these errors and lost and doubled rows.</summary>
    private static Workload.StackResult Result(string stack, long errors, long lost, long doubled)
        => new(stack, 1, 10, 0, 10, 1, 1, errors, errors > 0 ? "an error" : null, lost, doubled, 0, 0);

    private static string[] DemoFolders() => [.. Directory.GetDirectories(Path.GetTempPath(), "sqlite-saver-demo-*").Order()];

    private static List<string> Tables(string path)
    {
        using var connection = Open(path);
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name";
        using var reader = select.ExecuteReader();
        var tables = new List<string>();
        while (reader.Read())
        {
            tables.Add(reader.GetString(0));
        }

        return tables;
    }
}
