namespace SqliteSaver.Cli.Workload;

/// <summary>What one writer did: its transactions are numbered 0 to <see cref="Attempts"/> - 1, and every one either committed or failed.</summary>
/// <param name="Writer">The writer's number, unique in the run.</param>
/// <param name="Attempts">Transactions started.</param>
/// <param name="FailedSeqs">The numbers of the transactions whose error reached the caller; every other one was acknowledged.</param>
/// <param name="LatenciesMicroseconds">How long each acknowledged transaction took, from opening the connection to the commit.</param>
/// <param name="FirstError">The first error's message, if any.</param>
internal sealed record WriterReport(int Writer, long Attempts, long[] FailedSeqs, int[] LatenciesMicroseconds, string? FirstError);
