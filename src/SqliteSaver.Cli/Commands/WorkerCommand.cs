using System.CommandLine;
using SqliteSaver.Cli.Workload;

namespace SqliteSaver.Cli.Commands;

/// <summary>The hidden <c>worker</c> command: one writer in a child process of <c>demo</c> or <c>stress</c> (see <see cref="ChildWriter"/>).</summary>
internal static class WorkerCommand
{
    public static Command Create()
    {
        var stack = new Option<Stack>("--stack") { Required = true };
        var connectionString = new Option<string>("--connection-string") { Required = true };
        var run = new Option<string>("--run") { Required = true };
        var writer = new Option<int>("--writer") { Required = true };
        var seconds = CommonOptions.Number("--seconds", "How long the writer runs.", 0, WorkloadOptions.MinSeconds, inclusive: true, WorkloadOptions.MaxSeconds); // read as stress's is, in every culture
        seconds.Required = true;
        seconds.DefaultValueFactory = null; // which would count as given
        var command = new Command("worker", "Runs one writer for demo and stress (used internally).")
        {
            Hidden = true,
            Options = { stack, connectionString, run, writer, seconds },
        };
        command.SetAction(parseResult =>
        {
            // Ctrl-C at a terminal, or SIGTERM to the process group, reaches this process too, from its start: it ends
            // the writes early, as "stop" does (below), and the report follows.
            using var interruption = new Interruption();
            var output = parseResult.InvocationConfiguration.Output;
            var stackValue = parseResult.GetValue(stack);
            var connection = parseResult.GetRequiredValue(connectionString);
            Operations.Read(stackValue, connection); // opens the pool before the clock starts
            output.WriteLine("ready");
            output.Flush();
            if (Console.In.ReadLine() != "go")
            {
                return ExitCodes.Failure;
            }

            // The parent holds this process's standard input: "stop" ends the writes early (the parent was interrupted),
            // and once the parent is gone, however it ended (a second signal, a kill), standard input ends, and so does
            // this writer, which would otherwise write on for its --seconds.
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(interruption.Token);
            stop.CancelAfter(TimeSpan.FromSeconds(parseResult.GetValue(seconds)));
            new Thread(() =>
            {
                while (Console.In.ReadLine() is { } line)
                {
                    try
                    {
                        if (line == "stop")
                        {
                            stop.Cancel();
                        }
                    }
                    catch (ObjectDisposedException)
                    {
                        // The writes ended already.
                    }
                }

                Environment.Exit(ExitCodes.Failure);
            })
            { IsBackground = true }.Start();

            var report = Loops.Write(stackValue, connection, parseResult.GetRequiredValue(run), parseResult.GetValue(writer), new WorkloadCounters(), stop.Token);
            Json.Write(output, report);
            return ExitCodes.Success;
        });
        return command;
    }
}
