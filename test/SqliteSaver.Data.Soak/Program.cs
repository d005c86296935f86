// The soak test: worker processes read and write one database through SqliteSaver.Data's pool (threads, sync and
// async, autocommit writes, batches, units of work, explicit transactions, readers; the background checkpointer on)
// while the coordinator kills random workers with SIGKILL and starts them again. Each worker appends the ids of the
// rows whose commit has returned to its own log, flushed; a kill can lose only commits not yet acknowledged. At the
// end the coordinator checks that every acknowledged row is in the database exactly once, that no transaction is
// partly there, PRAGMA integrity_check, that the -wal file (sampled throughout) stayed under Journal Size Limit plus
// a stated margin, and that no error escaped in any worker. It prints a summary and exits 1 on any violation.
//
// Usage: dotnet run -c Release --project test/SqliteSaver.Data.Soak -- [--minutes M | --seconds S]
//        [--processes N] [--threads T] [--folder PATH] (kept afterwards; by default a temporary folder, kept on failure)
//        or: -- --check PATH (only the final checks, of a soak's folder kept earlier)
using System.Globalization;
using SqliteSaver.Data.Soak;

if (args.Length > 0 && args[0] == "worker")
{
    return SoakWorker.Run(args[1..]);
}

var settings = new SoakSettings();
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--minutes" when i + 1 < args.Length:
            settings.Duration = TimeSpan.FromMinutes(double.Parse(args[++i], CultureInfo.InvariantCulture));
            break;
        case "--seconds" when i + 1 < args.Length:
            settings.Duration = TimeSpan.FromSeconds(double.Parse(args[++i], CultureInfo.InvariantCulture));
            break;
        case "--processes" when i + 1 < args.Length:
            settings.Processes = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        case "--threads" when i + 1 < args.Length:
            settings.Threads = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        case "--folder" when i + 1 < args.Length:
            settings.Folder = Path.GetFullPath(args[++i]);
            break;
        case "--check" when args.Length == 2:
            return new Coordinator(settings).Check(Path.GetFullPath(args[++i]));
        default:
            Console.Error.WriteLine("usage: [--minutes M | --seconds S] [--processes N] [--threads T] [--folder PATH] | --check PATH");
            return 2;
    }
}

return new Coordinator(settings).Run();
