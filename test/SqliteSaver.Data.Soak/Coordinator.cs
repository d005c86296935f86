using System.Diagnostics;
using System.Globalization;
using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Soak;

/// <summary>Runs the worker processes, kills and restarts them at random, samples the WAL, then checks the database.</summary>
internal sealed class Coordinator(SoakSettings settings)
{
    public const string DatabaseName = "soak.db";
    public const string StopFileName = "stop";

    private readonly Random _random = new();
    private readonly List<string> _violations = [];
    private long _maxWalBytes;
    private long _windowMaxWalBytes;
    private int _starts;
    private int _kills;
    private int _unexpectedExits;

    public int Run()
    {
        var folder = settings.Folder ?? Directory.CreateTempSubdirectory("saver-soak-").FullName;
        Directory.CreateDirectory(folder);
        var database = Path.Combine(folder, DatabaseName);
        Console.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"Soak: {settings.Duration.TotalSeconds:0} s, {settings.Processes} worker processes x {settings.Threads} threads, a random worker SIGKILLed every 0.2-1.5 s and restarted; folder {folder}"));
        CreateDatabase(database);

        var workers = Enumerable.Range(0, settings.Processes).Select(id => Start(folder, id, incarnation: 0)).ToArray();
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(() => SampleWal(database + "-wal", sampling.Token));
        var deadline = Stopwatch.StartNew();
        var nextProgress = TimeSpan.FromSeconds(10);
        while (deadline.Elapsed < settings.Duration)
        {
            if (deadline.Elapsed >= nextProgress)
            {
                Console.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"[{deadline.Elapsed.TotalSeconds,4:0} s] kills {_kills}, -wal at most {Mib(Interlocked.Exchange(ref _windowMaxWalBytes, 0))} in the last 10 s"));
                nextProgress += TimeSpan.FromSeconds(10);
            }

            Thread.Sleep(_random.Next(200, 1500));
            for (var id = 0; id < workers.Length; id++)
            {
                if (workers[id].Process.HasExited)
                {
                    _unexpectedExits++;
                    _violations.Add($"worker {workers[id].Name} exited by itself with code {workers[id].Process.ExitCode}");
                    workers[id] = Start(folder, id, workers[id].Incarnation + 1);
                }
            }

            if (deadline.Elapsed < settings.Duration)
            {
                var victim = _random.Next(workers.Length);
                workers[victim].Process.Kill(); // SIGKILL on Linux
                workers[victim].Process.WaitForExit();
                _kills++;
                workers[victim] = Start(folder, victim, workers[victim].Incarnation + 1);
            }
        }

        File.WriteAllText(Path.Combine(folder, StopFileName), "stop");
        foreach (var worker in workers)
        {
            if (!worker.Process.WaitForExit(TimeSpan.FromSeconds(60)))
            {
                _violations.Add($"worker {worker.Name} did not stop within 60 s of the stop file");
                worker.Process.Kill();
            }
            else if (worker.Process.ExitCode != 0)
            {
                _violations.Add($"worker {worker.Name} exited with code {worker.Process.ExitCode}");
            }

            worker.Process.WaitForExit();
        }

        sampling.Cancel();
        sampler.Wait();

        var passed = Check(folder, database);
        if (passed && settings.Folder is null)
        {
            Directory.Delete(folder, recursive: true);
        }

        return passed ? 0 : 1;
    }

    /// <summary>Only the final checks, of the folder of a soak run earlier (its -wal file was not sampled): 0 when they pass, else 1.</summary>
    public int Check(string folder) => Check(folder, Path.Combine(folder, DatabaseName)) ? 0 : 1;

    private static void CreateDatabase(string database)
    {
        using (var connection = new SaverDbConnection(SoakSettings.ConnectionString(database)))
        {
            connection.Open();
            using var create = connection.CreateCommand();
            create.CommandText = "CREATE TABLE IF NOT EXISTS item (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, tx TEXT NOT NULL, size INTEGER NOT NULL, payload BLOB)";
            create.ExecuteNonQuery();
        }

        SaverDbConnection.ClearAllPools(); // the coordinator holds no connection while the workers run
    }

    private Worker Start(string folder, int id, int incarnation)
    {
        var self = typeof(Coordinator).Assembly.Location;
        var start = new ProcessStartInfo("dotnet", [self, "worker", folder, Invariant(id), Invariant(incarnation), Invariant(settings.Threads)])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { }; // errors are in the worker's error log, which survives a kill
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _starts++;
        return new Worker(process, id, incarnation);
    }

    private void SampleWal(string wal, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var bytes = new FileInfo(wal).Length;
                if (bytes > _maxWalBytes)
                {
                    Interlocked.Exchange(ref _maxWalBytes, bytes);
                }

                if (bytes > Interlocked.Read(ref _windowMaxWalBytes))
                {
                    Interlocked.Exchange(ref _windowMaxWalBytes, bytes);
                }
            }
            catch (FileNotFoundException)
            {
                // No -wal file at this moment (all connections closed).
            }

            cancellationToken.WaitHandle.WaitOne(20);
        }
    }

    private bool Check(string folder, string database)
    {
        var acknowledged = new List<string>();
        foreach (var log in Directory.GetFiles(folder, "worker-*.log"))
        {
            // Only whole lines: a line cut short by a kill was never an acknowledgement.
            var lines = File.ReadAllText(log).Split('\n');
            acknowledged.AddRange(lines[..^1]);
        }

        var errors = Directory.GetFiles(folder, "worker-*.errors").Where(file => new FileInfo(file).Length > 0).ToList();
        foreach (var file in errors)
        {
            _violations.Add($"errors escaped in {Path.GetFileName(file)}:\n{File.ReadAllText(file).Trim()}");
        }

        using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = database, Pooling = false }.ConnectionString);
        connection.Open();
        var integrity = Scalar(connection, "PRAGMA integrity_check")?.ToString() ?? "(nothing)";
        if (integrity != "ok")
        {
            _violations.Add($"integrity_check: {integrity}");
        }

        var rows = new Dictionary<string, int>(StringComparer.Ordinal);
        using (var select = connection.CreateCommand())
        {
            select.CommandText = "SELECT id FROM item";
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                var id = reader.GetString(0);
                rows[id] = rows.GetValueOrDefault(id) + 1;
            }
        }

        var twice = rows.Where(row => row.Value > 1).Select(row => row.Key).ToList();
        var lost = acknowledged.Where(id => !rows.ContainsKey(id)).ToList();
        var partial = Count(connection, "SELECT count(*) FROM (SELECT tx FROM item GROUP BY tx HAVING count(*) <> max(size))");
        Report(twice, "rows applied twice");
        Report(lost, "acknowledged rows lost");
        if (partial > 0)
        {
            _violations.Add($"{partial} transactions only partly in the database");
        }

        var walLimit = SoakSettings.JournalSizeLimit + SoakSettings.WalMarginBytes;
        if (_maxWalBytes > walLimit)
        {
            _violations.Add($"the -wal file reached {Mib(_maxWalBytes)}, over {Mib(walLimit)}");
        }

        var rowsAcknowledged = acknowledged.Count;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"worker starts: {_starts}; kills (SIGKILL): {_kills}; unexpected exits: {_unexpectedExits}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"acknowledged rows: {rowsAcknowledged}; rows in the database: {rows.Values.Sum()} ({rows.Count - acknowledged.Distinct().Count(rows.ContainsKey)} committed but not yet acknowledged when their worker was killed)"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"acknowledged rows lost: {lost.Count}; rows applied twice: {twice.Count}; transactions partly applied: {partial}"));
        Console.WriteLine($"integrity_check: {integrity}");
        Console.WriteLine($"-wal file: at most {Mib(_maxWalBytes)} (sampled every 20 ms); bound Journal Size Limit {Mib(SoakSettings.JournalSizeLimit)} + margin {Mib(SoakSettings.WalMarginBytes)} = {Mib(walLimit)}");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"worker error logs with escaped errors: {errors.Count}"));
        foreach (var violation in _violations)
        {
            Console.WriteLine($"VIOLATION: {violation}");
        }

        Console.WriteLine(_violations.Count == 0 ? "RESULT: PASS (0 violations)" : string.Create(CultureInfo.InvariantCulture, $"RESULT: FAIL ({_violations.Count} violations; files kept in {folder})"));
        return _violations.Count == 0;
    }

    private void Report(List<string> ids, string what)
    {
        if (ids.Count > 0)
        {
            _violations.Add(string.Create(CultureInfo.InvariantCulture, $"{ids.Count} {what}, e.g. {string.Join(", ", ids.Take(5))}"));
        }
    }

    private static object? Scalar(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

    private static long Count(SqliteConnection connection, string sql) => (long)Scalar(connection, sql)!;

    private static string Mib(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:0.00} MiB");

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    private sealed record Worker(Process Process, int Id, int Incarnation)
    {
        public string Name => string.Create(CultureInfo.InvariantCulture, $"{Id}.{Incarnation}");
    }
}
