namespace SqliteSaver.Data.Contention;

/// <summary>
/// What one cell measured: commits acknowledged (all of them, for the row count), those that finished within the
/// window and the fewest of those by any one thread (a starved thread shows there, not in the percentiles, which
/// count each commit), errors that reached the caller, the window's length, and each commit's latency in microseconds.
/// </summary>
internal sealed record Result(int Commits, int CommitsInWindow, int FewestByOneThread, int Errors, double Seconds, int[] LatenciesMicroseconds)
{
    public double PerSecond => CommitsInWindow / Seconds;

    /// <summary>The processes of a cell, each with a window of the same length starting at the same moment.</summary>
    public static Result Combine(IReadOnlyCollection<Result> parts) => new(
        parts.Sum(p => p.Commits),
        parts.Sum(p => p.CommitsInWindow),
        parts.Min(p => p.FewestByOneThread),
        parts.Sum(p => p.Errors),
        parts.Max(p => p.Seconds),
        [.. parts.SelectMany(p => p.LatenciesMicroseconds)]);

    public double Percentile(double fraction)
    {
        if (LatenciesMicroseconds.Length == 0)
        {
            return double.NaN;
        }

        var sorted = LatenciesMicroseconds.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(fraction * sorted.Length) - 1)] / 1000.0;
    }

    public double MaxMilliseconds => LatenciesMicroseconds.Length == 0 ? double.NaN : LatenciesMicroseconds.Max() / 1000.0;
}
