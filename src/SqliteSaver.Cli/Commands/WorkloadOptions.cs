using System.CommandLine;
using SqliteSaver.Cli.Workload;

namespace SqliteSaver.Cli.Commands;

/// <summary>The options of <c>demo</c> and <c>stress</c>, which run the same workload.</summary>
internal sealed class WorkloadOptions
{
    private readonly Option<int> _threads = CommonOptions.Count("--threads", "Writer threads in this process.", 16, 1, maximum: 1024);
    private readonly Option<int> _processes = CommonOptions.Count("--processes", "Writer child processes, one writer thread each.", 2, 0, maximum: 64);
    private readonly Option<double> _readRatio = CommonOptions.Number("--read-ratio", "Reader threads per writer thread (rounded).", 0.25, 0, inclusive: true, maximum: 16);
    private readonly Option<double> _seconds;

    /// <summary>
    /// The most <c>--seconds</c> may be: under what a CancellationTokenSource or a wait for a process can wait
    /// (int.MaxValue milliseconds, about 24.8 days), with room for the minute a child writer's wait adds.
    /// </summary>
    public const double MaxSeconds = 2000000;

    /// <summary>The least <c>--seconds</c> may be: a millisecond, which the child writers are given as written (a shorter time rounds to 0 there).</summary>
    public const double MinSeconds = 0.001;

    public WorkloadOptions(double defaultSeconds)
        => _seconds = CommonOptions.Number("--seconds", "How long the writers and readers run, in seconds (on each stack for demo).", defaultSeconds, MinSeconds, inclusive: true, MaxSeconds);

    public Option<bool> Json { get; } = CommonOptions.Json();

    public void AddTo(Command command)
    {
        command.Options.Add(_threads);
        command.Options.Add(_processes);
        command.Options.Add(_seconds);
        command.Options.Add(_readRatio);
        command.Options.Add(Json);
    }

    public WorkloadSettings Settings(ParseResult parseResult, string databasePath, string saverKeywords)
    {
        var threads = parseResult.GetValue(_threads);
        return new WorkloadSettings(
            databasePath,
            saverKeywords,
            threads,
            parseResult.GetValue(_processes),
            (int)Math.Round(threads * parseResult.GetValue(_readRatio), MidpointRounding.AwayFromZero),
            TimeSpan.FromSeconds(parseResult.GetValue(_seconds)));
    }
}
