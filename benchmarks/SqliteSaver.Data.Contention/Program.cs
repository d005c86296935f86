// The contention benchmark: the same workload through SqliteSaver.Data and through Microsoft.Data.Sqlite, with
// 1, 4, 16 and 64 writer threads in one process and with 4 processes of 4 threads, on one WAL database file.
// Usage: dotnet run -c Release --project benchmarks/SqliteSaver.Data.Contention -- [--seconds S] [--json PATH]
//        [--saver-options "Keyword=value;..."] (appended to SqliteSaver's connection string, e.g. "Wal Autocheckpoint=0")
//        [--writers "1x1,1x16,4x4"] (only these processes x threads cells; the targets need 1x1, 1x16, 1x64 and 4x4)
//        [--smoke] (read-then-insert with 2 threads only, no warm-up and no targets: the test suite's smoke run)
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data;
using SqliteSaver.Data.Contention;

if (args.Length > 0 && args[0] == "--child")
{
    return Child(args);
}

var seconds = 2.0;
string? jsonPath = null;
var saverOptions = string.Empty;
var smoke = false;
(int Processes, int Threads)[]? only = null;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--seconds" when i + 1 < args.Length:
            seconds = double.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        case "--json" when i + 1 < args.Length:
            jsonPath = args[++i];
            break;
        case "--saver-options" when i + 1 < args.Length:
            saverOptions = args[++i];
            break;
        case "--writers" when i + 1 < args.Length:
            only = [.. args[++i].Split(',').Select(static cell => cell.Split('x')).Select(static p => (int.Parse(p[0], CultureInfo.InvariantCulture), int.Parse(p[1], CultureInfo.InvariantCulture)))];
            break;
        case "--smoke":
            smoke = true;
            break;
        default:
            Console.Error.WriteLine("usage: [--seconds S] [--json PATH] [--saver-options \"Keyword=value;...\"] [--writers \"1x1,1x16,4x4\"] [--smoke]");
            return 2;
    }
}

var folder = Directory.CreateTempSubdirectory("saver-contention-").FullName;
var cells = new List<Cell>();
try
{
    var machine = $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}, SQLite {new SqliteConnection().ServerVersion}";
    Console.WriteLine($"# Contention benchmark, {DateTime.UtcNow:yyyy-MM-dd}: {machine}; {seconds} s per cell; SqliteSaver options: '{saverOptions}'");
    Console.WriteLine();

    Workload[] workloads = smoke ? [Workload.ReadThenInsert] : Enum.GetValues<Workload>();
    (int Processes, int Threads)[] writers = smoke ? [(1, 2)] : only ?? [(1, 1), (1, 4), (1, 16), (1, 64), (4, 4)];

    // Warm up every stack and workload (JIT, tiering, the file system) before anything is measured.
    foreach (var workload in smoke ? [] : workloads)
    {
        foreach (var stack in Enum.GetValues<Stack>())
        {
            var warmup = Path.Combine(folder, $"warmup-{workload}-{stack}.db");
            Writer.Prepare(warmup);
            Writer.Run(stack, workload, warmup, stack == Stack.Saver ? saverOptions : string.Empty, 4, TimeSpan.FromSeconds(0.5));
        }
    }

    SaverDbConnection.ClearAllPools();
    SqliteConnection.ClearAllPools();
    foreach (var workload in workloads)
    {
        foreach (var (processes, threads) in writers)
        {
            foreach (var stack in Enum.GetValues<Stack>())
            {
                var path = Path.Combine(folder, $"{workload}-{processes}x{threads}-{stack}.db");
                Writer.Prepare(path);
                var options = stack == Stack.Saver ? saverOptions : string.Empty;
                var result = processes == 1
                    ? Writer.Run(stack, workload, path, options, threads, TimeSpan.FromSeconds(seconds))
                    : RunProcesses(stack, workload, path, options, processes, threads, seconds);
                var rows = CountRows(path);
                var cell = new Cell(workload.ToString(), processes, threads, stack.ToString(), result.PerSecond, result.Percentile(0.5),
                    result.Percentile(0.99), result.MaxMilliseconds, result.FewestByOneThread, result.Errors, result.Commits, rows, rows == result.Commits);
                cells.Add(cell);
                Console.Error.WriteLine($"{cell.Workload} {processes}x{threads} {cell.Stack}: {cell.TransactionsPerSecond:0} tx/s, {cell.Errors} errors");
                SaverDbConnection.ClearAllPools();
                SqliteConnection.ClearAllPools();
            }
        }
    }

    PrintTable(cells);
    if (!smoke && only is null)
    {
        PrintTargets(cells);
    }

    if (jsonPath is not null)
    {
        File.WriteAllText(jsonPath, JsonSerializer.Serialize(new { machine, seconds, cells }, new JsonSerializerOptions { WriteIndented = true }));
    }

    return 0;
}
finally
{
    Directory.Delete(folder, recursive: true);
}

static long CountRows(string path)
{
    using var connection = new SqliteConnection($"Data Source={path};Pooling=False");
    connection.Open();
    using var command = connection.CreateCommand();
    command.CommandText = "SELECT count(*) FROM bench WHERE thread >= 0";
    return (long)command.ExecuteScalar()!;
}

static Result RunProcesses(Stack stack, Workload workload, string path, string options, int processes, int threads, double seconds)
{
    var self = typeof(Writer).Assembly.Location;
    var startAt = DateTime.UtcNow.AddSeconds(4).Ticks; // after every child has started and warmed up
    var children = Enumerable.Range(0, processes).Select(_ =>
    {
        var start = new ProcessStartInfo("dotnet", [self, "--child", stack.ToString(), workload.ToString(), path, options,
            threads.ToString(CultureInfo.InvariantCulture), seconds.ToString(CultureInfo.InvariantCulture), startAt.ToString(CultureInfo.InvariantCulture)])
        {
            RedirectStandardOutput = true,
        };
        var process = Process.Start(start)!;
        return (process, output: process.StandardOutput.ReadToEndAsync());
    }).ToList();

    var parts = children.Select(child =>
    {
        child.process.WaitForExit();
        var exitCode = child.process.ExitCode;
        var fields = child.output.Result.Trim().Split(' ');
        child.process.Dispose();
        if (exitCode != 0)
        {
            // A child that started late would count a window of its own: the cell's rate would mean nothing.
            throw new InvalidOperationException($"A child writer process failed (exit code {exitCode}); run the benchmark again on a quieter machine.");
        }

        return new Result(
            int.Parse(fields[0], CultureInfo.InvariantCulture),
            int.Parse(fields[1], CultureInfo.InvariantCulture),
            int.Parse(fields[2], CultureInfo.InvariantCulture),
            int.Parse(fields[3], CultureInfo.InvariantCulture),
            double.Parse(fields[4], CultureInfo.InvariantCulture),
            fields.Length > 5 && fields[5].Length > 0 ? [.. fields[5].Split(',').Select(f => int.Parse(f, CultureInfo.InvariantCulture))] : []);
    }).ToList();
    return Result.Combine(parts);
}

static int Child(string[] args)
{
    var stack = Enum.Parse<Stack>(args[1]);
    var workload = Enum.Parse<Workload>(args[2]);
    var threads = int.Parse(args[5], CultureInfo.InvariantCulture);
    var seconds = double.Parse(args[6], CultureInfo.InvariantCulture);
    var startAt = new DateTime(long.Parse(args[7], CultureInfo.InvariantCulture), DateTimeKind.Utc);

    // Warm up as the parent does (JIT, tiering), on a file of this child's own, so that the timed run measures the
    // stack and not the first calls of a fresh process.
    var warmup = Path.Combine(Path.GetDirectoryName(args[3])!, $"warmup-child-{Environment.ProcessId}.db");
    Writer.Prepare(warmup);
    Writer.Run(stack, workload, warmup, args[4], threads, TimeSpan.FromSeconds(0.5));
    SaverDbConnection.ClearAllPools();
    SqliteConnection.ClearAllPools();

    var wait = startAt - DateTime.UtcNow;
    if (wait > TimeSpan.Zero)
    {
        Thread.Sleep(wait); // all children start their clocks together
    }
    else
    {
        Console.Error.WriteLine($"error: child {Environment.ProcessId} was still warming up {-wait.TotalMilliseconds:0} ms after the common start");
        return 3;
    }

    var result = Writer.Run(stack, workload, args[3], args[4], threads, TimeSpan.FromSeconds(seconds));
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"{result.Commits} {result.CommitsInWindow} {result.FewestByOneThread} {result.Errors} {result.Seconds} {string.Join(',', result.LatenciesMicroseconds)}"));
    return 0;
}

static void PrintTable(List<Cell> cells)
{
    Console.WriteLine("| Workload | Writers | Stack | tx/s | vs Plain | p50 ms | p99 ms | max ms | fewest by a thread | errors | rows = commits |");
    Console.WriteLine("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
    foreach (var cell in cells)
    {
        var plain = cells.Single(c => c.Workload == cell.Workload && c.Processes == cell.Processes && c.Threads == cell.Threads && c.Stack == nameof(Stack.Plain));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {cell.Workload} | {cell.Writers} | {cell.Stack} | {cell.TransactionsPerSecond:0} | {cell.TransactionsPerSecond / plain.TransactionsPerSecond:0.00}x | {cell.P50Milliseconds:0.00} | {cell.P99Milliseconds:0.00} | {cell.MaxMilliseconds:0.0} | {cell.FewestByOneThread} | {cell.Errors} | {(cell.RowsMatch ? "yes" : $"NO ({cell.Rows} rows, {cell.Commits} commits)")} |"));
    }

    Console.WriteLine();
}

static void PrintTargets(List<Cell> cells)
{
    Cell Find(string workload, int processes, int threads, Stack stack)
        => cells.Single(c => c.Workload == workload && c.Processes == processes && c.Threads == threads && c.Stack == stack.ToString());

    const string rw = nameof(Workload.ReadThenInsert);
    var single = Find(rw, 1, 1, Stack.Saver);
    var plainSingle = Find(rw, 1, 1, Stack.Plain);
    Console.WriteLine("Targets (read-then-insert):");
    foreach (var threads in new[] { 16, 64 })
    {
        var saver = Find(rw, 1, threads, Stack.Saver);
        var plain = Find(rw, 1, threads, Stack.Plain);
        Report($"{threads} threads >= 3x plain Microsoft.Data.Sqlite", saver.TransactionsPerSecond / plain.TransactionsPerSecond, 3);
        Report($"{threads} threads >= 1.0x SqliteSaver single thread", saver.TransactionsPerSecond / single.TransactionsPerSecond, 1);
        Report($"{threads} threads >= 1.0x plain single thread", saver.TransactionsPerSecond / plainSingle.TransactionsPerSecond, 1);
    }

    var sixteen = Find(rw, 1, 16, Stack.Saver);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"- 16 threads p99 < 5 ms: {sixteen.P99Milliseconds:0.00} ms, {(sixteen.P99Milliseconds < 5 ? "met" : "MISSED")}"));
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"- 16 threads max < 50 ms: {sixteen.MaxMilliseconds:0.0} ms, {(sixteen.MaxMilliseconds < 50 ? "met" : "MISSED")}"));
    var saverErrors = cells.Where(c => c.Stack == nameof(Stack.Saver)).Sum(c => c.Errors);
    Console.WriteLine($"- zero escaped errors in every SqliteSaver cell: {saverErrors} errors, {(saverErrors == 0 ? "met" : "MISSED")}");
    Report("4 x 4 processes >= 0.5x single-process single thread", Find(rw, 4, 4, Stack.Saver).TransactionsPerSecond / single.TransactionsPerSecond, 0.5);

    static void Report(string target, double ratio, double needed)
        => Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"- {target}: {ratio:0.00}x, {(ratio >= needed ? "met" : "MISSED")}"));
}

/// <summary>One row of the results.</summary>
internal sealed record Cell(
    string Workload, int Processes, int Threads, string Stack, double TransactionsPerSecond, double P50Milliseconds,
    double P99Milliseconds, double MaxMilliseconds, int FewestByOneThread, int Errors, int Commits, long Rows, bool RowsMatch)
{
    public string Writers => Processes == 1 ? $"{Threads} threads" : $"{Processes} x {Threads} processes";
}
