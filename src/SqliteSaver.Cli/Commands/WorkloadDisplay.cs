using SqliteSaver.Cli.Workload;
using Spectre.Console;

namespace SqliteSaver.Cli.Commands;

/// <summary>Runs the workload with a live progress display, and prints its results as a table.</summary>
internal static class WorkloadDisplay
{
    /// <summary>
    /// Runs one stack: with a progress bar on a terminal, a line on other text output, silently for JSON; until its
    /// duration ends or <paramref name="interrupted"/> is cancelled.
    /// </summary>
    public static StackResult Run(IAnsiConsole console, bool json, Stack stack, WorkloadSettings settings, CancellationToken interrupted)
    {
        var name = Operations.Name(stack);
        if (json)
        {
            return WorkloadRunner.Run(stack, settings, static (_, _) => { }, interrupted);
        }

        if (!console.Profile.Capabilities.Interactive)
        {
            console.WriteLine($"{name}: running for {Format.Number(settings.Duration.TotalSeconds, "0.##")} s ...");
            return WorkloadRunner.Run(stack, settings, static (_, _) => { }, interrupted);
        }

        return console.Progress()
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new ElapsedTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask(Markup.Escape(name), maxValue: settings.Duration.TotalSeconds);
                var result = WorkloadRunner.Run(stack, settings, (counters, elapsed) =>
                {
                    task.Value = Math.Min(elapsed.TotalSeconds, task.MaxValue);
                    task.Description = Markup.Escape($"{name}: {Format.Number(counters.Commits)} commits, {Format.Number(counters.Errors)} errors");
                }, interrupted);
                task.Value = task.MaxValue;
                task.Description = Markup.Escape($"{name}: {Format.Number(result.Commits)} commits, {Format.Number(result.Errors)} errors");
                return result;
            });
    }

    /// <summary>Prints the workload's description line, then the results side by side and the first error of each stack that had one.</summary>
    public static void Print(IAnsiConsole console, WorkloadReport report)
    {
        console.WriteLine();
        console.WriteLine($"{Format.Count(report.Threads, "writer thread", "writer threads")}, {Format.Count(report.Processes, "writer process", "writer processes")} " +
            $"(one writer each) and {Format.Count(report.Readers, "reader", "readers")}, {Format.Number(report.Seconds, "0.##")} s{(report.Stacks.Count > 1 ? " per stack" : string.Empty)}, " +
            $"on {Format.Count(Environment.ProcessorCount, "core", "cores")}.");
        console.WriteLine("A write opens a connection, reads a row, inserts one and commits; latency runs from the open to the commit.");
        var table = new Table().AddColumn(string.Empty);
        foreach (var stack in report.Stacks)
        {
            table.AddColumn(new TableColumn(Markup.Escape(stack.Stack)).RightAligned());
        }

        Row("transactions per second", s => Format.Number(s.TransactionsPerSecond));
        if (report.Processes > 0)
        {
            Row($"commits from the {Format.Count(report.Processes, "child process", "child processes")}", s => Format.Number(s.Commits == 0 ? 0 : 100.0 * s.ChildProcessCommits / s.Commits, "0") + " %");
        }

        Row("p99 latency, ms", s => Format.Milliseconds(s.P99Milliseconds));
        Row("worst latency, ms", s => Format.Milliseconds(s.MaxMilliseconds));
        Row("errors that reached the caller", s => Format.Number(s.Errors));
        Row("rows lost / doubled", s => $"{Format.Number(s.RowsLost)} / {Format.Number(s.RowsDoubled)}");
        Row("WAL file at the end", s => Format.Bytes(s.WalBytes));
        Row("reads per second", s => Format.Number(s.Reads / s.Seconds));
        console.Write(table);
        foreach (var stack in report.Stacks.Where(s => s.FirstError is not null))
        {
            console.WriteLine($"{stack.Stack}, first error: {stack.FirstError}");
        }

        void Row(string label, Func<StackResult, string> value)
            => table.AddRow([label, .. report.Stacks.Select(s => Markup.Escape(value(s)))]);
    }
}
