namespace SqliteSaver.Cli.Workload;

/// <summary>What one reader did.</summary>
/// <param name="Reads">Reads completed.</param>
/// <param name="Errors">Reads whose error reached the caller.</param>
/// <param name="FirstError">The first error's message, if any.</param>
internal sealed record ReaderReport(long Reads, long Errors, string? FirstError);
