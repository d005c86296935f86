// Usage: SqliteSaver.Data.TestWorker <connection string> <threads> <transactions per thread> <worker id> [deferred]
// Each thread runs read-then-insert units of work through RunInTransaction (with "deferred", in DEFERRED
// transactions) against table "work"; each thread prints "opened" once its connection is open, and the process prints
// "committed N" when every one has committed. Any exception is printed to stderr and the exit code is 1.
//
// Usage: SqliteSaver.Data.TestWorker hold <connection string> <commits> <worker id>
// Commits <commits> rows (thread 0, n = 0, 1, ...) one transaction each, printing "acknowledged n" after each commit
// returns, then begins a write transaction, inserts ten rows with thread -1, prints "holding" and waits for ever with
// the write lock held, for the test to kill it.
//
// Usage: SqliteSaver.Data.TestWorker copied-sqlite <folder>
// Gives SQLitePCLRaw a copy of e_sqlite3 in <folder> through a DllImportResolver, as an app loading its own SQLite
// build does, then creates a table with a cancellable ExecuteNonQueryAsync and prints "async ok".
//
// Usage: SqliteSaver.Data.TestWorker sql <database file>
// Another process without this library: one plain Microsoft.Data.Sqlite connection (no pooling, no busy timeout of
// its own, each command's CommandTimeout 1 s) that runs each line read from stdin as one command and prints "ok <first
// value or rows changed>" or "error <code> <extended code>"; it exits at the end of stdin.
using System.Globalization;
using System.Runtime.InteropServices;
using SqliteSaver.Data;

if (args.Length == 4 && args[0] == "hold")
{
    return HoldWriteTransaction(args[1], int.Parse(args[2], CultureInfo.InvariantCulture), int.Parse(args[3], CultureInfo.InvariantCulture));
}

if (args.Length == 2 && args[0] == "sql")
{
    return RunSqlFromStdin(args[1]);
}

if (args.Length == 2 && args[0] == "copied-sqlite")
{
    return WriteWithCopiedSqlite(args[1]);
}

if (args.Length is not (4 or 5) || (args.Length == 5 && args[4] != "deferred"))
{
    Console.Error.WriteLine("usage: <connection string> <threads> <transactions per thread> <worker id> [deferred]");
    return 2;
}

var connectionString = args[0];
var threads = int.Parse(args[1], CultureInfo.InvariantCulture);
var transactions = int.Parse(args[2], CultureInfo.InvariantCulture);
var worker = int.Parse(args[3], CultureInfo.InvariantCulture);
var deferred = args.Length == 5;
var committed = 0;
var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();

var running = Enumerable.Range(0, threads).Select(thread => new Thread(() =>
{
    try
    {
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        Console.WriteLine("opened");
        for (var n = 0; n < transactions; n++)
        {
            connection.RunInTransaction(transaction =>
            {
                using var read = connection.CreateCommand();
                read.CommandText = "SELECT count(*) FROM work";
                read.ExecuteScalar();
                Insert(connection, worker, thread, n);
            },
            deferred);
            Interlocked.Increment(ref committed);
        }
    }
    catch (Exception exception)
    {
        errors.Enqueue(exception);
    }
})).ToList();

running.ForEach(t => t.Start());
running.ForEach(t => t.Join());

foreach (var error in errors)
{
    Console.Error.WriteLine(error);
}

Console.WriteLine($"committed {committed}");
return errors.IsEmpty ? 0 : 1;

static int HoldWriteTransaction(string connectionString, int commits, int worker)
{
    using var connection = new SaverDbConnection(connectionString);
    connection.Open();
    for (var n = 0; n < commits; n++)
    {
        connection.RunInTransaction(_ => Insert(connection, worker, thread: 0, n));
        Console.WriteLine($"acknowledged {n}");
    }

    var transaction = connection.BeginTransaction();
    for (var n = 0; n < 10; n++)
    {
        Insert(connection, worker, thread: -1, n);
    }

    Console.WriteLine("holding");
    Thread.Sleep(Timeout.Infinite);
    GC.KeepAlive(transaction);
    return 0;
}

static void Insert(SaverDbConnection connection, int worker, int thread, int n)
{
    using var insert = connection.CreateCommand();
    insert.CommandText = "INSERT INTO work (worker, thread, n) VALUES ($worker, $thread, $n)";
    insert.Parameters.AddWithValue("$worker", worker);
    insert.Parameters.AddWithValue("$thread", thread);
    insert.Parameters.AddWithValue("$n", n);
    insert.ExecuteNonQuery();
}

static int WriteWithCopiedSqlite(string folder)
{
    var native = Path.Combine(AppContext.BaseDirectory, "runtimes", RuntimeInformation.RuntimeIdentifier, "native", "libe_sqlite3.so");
    var copy = Path.Combine(folder, "libcopied_sqlite3.so");
    File.Copy(native, copy);
    NativeLibrary.SetDllImportResolver(
        typeof(SQLitePCL.SQLite3Provider_e_sqlite3).Assembly,
        (name, _, _) => name == "e_sqlite3" ? NativeLibrary.Load(copy) : IntPtr.Zero);
    using var connection = new SaverDbConnection($"Data Source={Path.Combine(folder, "copied.db")}");
    connection.Open();
    using var command = connection.CreateCommand();
    command.CommandText = "CREATE TABLE t (x)";
    using var cancellation = new CancellationTokenSource();
    command.ExecuteNonQueryAsync(cancellation.Token).GetAwaiter().GetResult();
    Console.WriteLine("async ok");
    return 0;
}

static int RunSqlFromStdin(string path)
{
    using var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path};Pooling=False");
    connection.Open();
    Console.WriteLine("ready");
    while (Console.ReadLine() is { } line)
    {
        try
        {
            using var command = connection.CreateCommand();
            command.CommandText = line;
            command.CommandTimeout = 1;
            var value = line.StartsWith("SELECT", StringComparison.OrdinalIgnoreCase) || line.StartsWith("PRAGMA", StringComparison.OrdinalIgnoreCase)
                ? command.ExecuteScalar()
                : command.ExecuteNonQuery();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ok {value}"));
        }
        catch (Microsoft.Data.Sqlite.SqliteException error)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"error {error.SqliteErrorCode} {error.SqliteExtendedErrorCode}"));
        }
    }

    return 0;
}
