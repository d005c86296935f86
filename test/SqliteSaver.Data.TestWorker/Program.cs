// Usage: SqliteSaver.Data.TestWorker <connection string> <threads> <transactions per thread> <worker id>
// Each thread runs read-then-insert units of work through RunInTransaction against table "work" and the process
// prints "committed N" when every one has committed. Any exception is printed to stderr and the exit code is 1.
using System.Globalization;
using SqliteSaver.Data;

if (args.Length != 4)
{
    Console.Error.WriteLine("usage: <connection string> <threads> <transactions per thread> <worker id>");
    return 2;
}

var connectionString = args[0];
var threads = int.Parse(args[1], CultureInfo.InvariantCulture);
var transactions = int.Parse(args[2], CultureInfo.InvariantCulture);
var worker = int.Parse(args[3], CultureInfo.InvariantCulture);
var committed = 0;
var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();

var running = Enumerable.Range(0, threads).Select(thread => new Thread(() =>
{
    try
    {
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        for (var n = 0; n < transactions; n++)
        {
            connection.RunInTransaction(transaction =>
            {
                using var read = connection.CreateCommand();
                read.CommandText = "SELECT count(*) FROM work";
                read.ExecuteScalar();

                using var insert = connection.CreateCommand();
                insert.CommandText = "INSERT INTO work (worker, thread, n) VALUES ($worker, $thread, $n)";
                insert.Parameters.AddWithValue("$worker", worker);
                insert.Parameters.AddWithValue("$thread", thread);
                insert.Parameters.AddWithValue("$n", n);
                insert.ExecuteNonQuery();
            });
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
