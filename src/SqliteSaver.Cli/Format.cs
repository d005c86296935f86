using System.Globalization;

namespace SqliteSaver.Cli;

/// <summary>Numbers as the tool prints them, the same in every culture.</summary>
internal static class Format
{
    public static string Bytes(long bytes) => bytes switch
    {
        < 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
        < 1024 * 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0.0} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024):0.0} MiB"),
    };

    public static string Number(double value, string format = "N0") => value.ToString(format, CultureInfo.InvariantCulture);

    public static string Milliseconds(double? value) => value is { } ms ? ms.ToString("0.0", CultureInfo.InvariantCulture) : "-";

    /// <summary>A count with its noun, in the plural unless it is one: "1 reader", "4 readers".</summary>
    public static string Count(long count, string one, string many) => string.Create(CultureInfo.InvariantCulture, $"{count} {(count == 1 ? one : many)}");
}
