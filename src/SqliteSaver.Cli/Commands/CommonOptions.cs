using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace SqliteSaver.Cli.Commands;

/// <summary>Options several commands share, with parsers that turn bad values into one line and exit code 2.</summary>
internal static class CommonOptions
{
    public static Option<bool> Json() => new("--json") { Description = "Print the result as one JSON object instead of text." };

    /// <summary>A whole-number option that must be at least <paramref name="minimum"/>.</summary>
    public static Option<int> Count(string name, string description, int defaultValue, int minimum, int maximum = int.MaxValue) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
        HelpName = "N",
        CustomParser = result =>
        {
            var text = Token(result);
            if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) || value < minimum || value > maximum)
            {
                result.AddError(string.Create(CultureInfo.InvariantCulture, $"{name} must be a whole number from {minimum} to {maximum}, not '{text}'."));
            }

            return value;
        },
    };

    /// <summary>A number option that must be more than <paramref name="minimum"/> (or at least it, when <paramref name="inclusive"/>), and at most <paramref name="maximum"/>.</summary>
    public static Option<double> Number(string name, string description, double defaultValue, double minimum, bool inclusive, double maximum) => new(name)
    {
        Description = description,
        DefaultValueFactory = _ => defaultValue,
        HelpName = "N",
        CustomParser = result =>
        {
            var text = Token(result);
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
                || !double.IsFinite(value) || (inclusive ? value < minimum : value <= minimum) || value > maximum)
            {
                result.AddError(string.Create(CultureInfo.InvariantCulture,
                    $"{name} must be a number {(inclusive ? "of at least" : "more than")} {minimum} and at most {maximum}, not '{text}'."));
            }

            return value;
        },
    };

    private static string Token(ArgumentResult result) => result.Tokens.Count == 1 ? result.Tokens[0].Value : string.Empty;
}
