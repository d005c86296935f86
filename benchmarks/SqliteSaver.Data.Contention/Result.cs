namespace SqliteSaver.Data.Contention;

/// <summary>What one cell measured: commits acknowledged, errors that reached the caller, and each commit's latency in microseconds.</summary>
internal sealed record Result(int Commits, int Errors, double Seconds, int[] LatenciesMicroseconds)
{
    public double PerSecond => Commits / Seconds;

    public static Result Combine(IReadOnlyCollection<Result> parts) => new(
        parts.Sum(p => p.Commits),
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
