namespace SqliteSaver.Cli;

/// <summary>The tool's exit codes.</summary>
internal static class ExitCodes
{
    /// <summary>The command did what it was asked.</summary>
    public const int Success = 0;

    /// <summary>The command ran into an error, or a workload saw errors or lost or doubled rows through SqliteSaver.</summary>
    public const int Failure = 1;

    /// <summary>Bad input: an unknown command or option, an invalid value, or a path that is not a SQLite database.</summary>
    public const int BadInput = 2;

    /// <summary>A checkpoint came back busy: a reader or writer stayed busy past the busy timeout.</summary>
    public const int CheckpointBusy = 3;

    /// <summary>A workload was stopped by Ctrl-C (SIGINT) or SIGTERM, and cleaned up after itself.</summary>
    public const int Interrupted = 130;
}
