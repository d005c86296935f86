using System.Globalization;

namespace SqliteSaver.Data.Configuration;

/// <summary>
/// One connection-string keyword: its canonical name, aliases, default and the rule its values must follow.
/// Values are stored in canonical invariant text, so that equal settings compare equal whatever their spelling.
/// </summary>
internal sealed class KeywordSpec
{
    private KeywordSpec(string name, KeywordKind kind, string? defaultValue)
    {
        Name = name;
        Kind = kind;
        Default = defaultValue;
    }

    public string Name { get; }

    public KeywordKind Kind { get; }

    /// <summary>The canonical default, or <see langword="null"/> where the keyword is unset by default.</summary>
    public string? Default { get; }

    public IReadOnlyList<string> Aliases { get; private init; } = [];

    private double Min { get; init; }

    private double Max { get; init; }

    private long IntegerMin { get; init; }

    private long IntegerMax { get; init; }

    private string[] EnumNames { get; init; } = [];

    /// <summary>An enum keyword's values by number, where numbers are allowed (Microsoft.Data.Sqlite's own enums).</summary>
    private Dictionary<long, string>? EnumNumbers { get; init; }

    /// <summary>What a number of this keyword counts ("seconds", "milliseconds"), for error messages; empty if nothing to say.</summary>
    private string Unit { get; init; } = string.Empty;

    public static KeywordSpec Text(string name, string? defaultValue, params string[] aliases)
        => new(name, KeywordKind.Text, defaultValue) { Aliases = aliases };

    public static KeywordSpec Boolean(string name, bool? defaultValue)
        => new(name, KeywordKind.Boolean, defaultValue is null ? null : FormatBoolean(defaultValue.Value));

    public static KeywordSpec Integer(string name, long? defaultValue, long min, long max, string unit, params string[] aliases)
        => new(name, KeywordKind.Integer, defaultValue?.ToString(CultureInfo.InvariantCulture))
        {
            IntegerMin = min,
            IntegerMax = max,
            Unit = unit,
            Aliases = aliases,
        };

    public static KeywordSpec Number(string name, double defaultValue, double min, double max, string unit)
        => new(name, KeywordKind.Number, defaultValue.ToString("R", CultureInfo.InvariantCulture)) { Min = min, Max = max, Unit = unit };

    /// <param name="name">The keyword.</param>
    /// <param name="defaultValue">Its default, or null for none.</param>
    /// <param name="numbered">Whether a value may also be given by its number, as Microsoft.Data.Sqlite allows for its enums.</param>
    public static KeywordSpec Enum<TEnum>(string name, TEnum? defaultValue, bool numbered = false)
        where TEnum : struct, System.Enum
        => new(name, KeywordKind.Enum, defaultValue?.ToString())
        {
            EnumNames = System.Enum.GetNames<TEnum>(),
            EnumNumbers = numbered ? System.Enum.GetValues<TEnum>().ToDictionary(value => Convert.ToInt64(value, CultureInfo.InvariantCulture), value => value.ToString()) : null,
        };

    /// <summary>What a value of this keyword may be, for error messages.</summary>
    public string Allowed => Kind switch
    {
        KeywordKind.Text => "any text",
        KeywordKind.Boolean => "true or false (also yes/no, 1/0)",
        KeywordKind.Integer when IntegerMax == long.MaxValue => FormattableString.Invariant($"a whole number{Of} of at least {IntegerMin}"),
        KeywordKind.Integer => FormattableString.Invariant($"a whole number{Of} from {IntegerMin} to {IntegerMax}"),
        KeywordKind.Number => $"a number{Of} from {Min.ToString("R", CultureInfo.InvariantCulture)} to {Max.ToString("R", CultureInfo.InvariantCulture)}",
        _ when EnumNumbers is not null => "one of " + string.Join(", ", EnumNumbers.Select(entry => FormattableString.Invariant($"{entry.Value} ({entry.Key})"))),
        _ => "one of " + string.Join(", ", EnumNames),
    };

    private string Of => Unit.Length == 0 ? string.Empty : " of " + Unit;

    /// <summary>
    /// Parses and validates <paramref name="value"/>, set through the keyword as <paramref name="written"/> (an alias,
    /// say), returning its canonical text.
    /// </summary>
    /// <exception cref="ArgumentException">The value is malformed or out of range; the message names the keyword (and
    /// how it was written, when not as its name), the value and what is allowed.</exception>
    public string Normalize(object value, string written)
    {
        var text = value switch
        {
            string s => s,
            TimeSpan span when Unit == "seconds" => span.TotalSeconds.ToString("R", CultureInfo.InvariantCulture), // as the builder's properties take them
            TimeSpan span when Unit == "milliseconds" => (span < TimeSpan.Zero ? span.TotalMilliseconds : Math.Ceiling(span.TotalMilliseconds)).ToString("R", CultureInfo.InvariantCulture), // rounded up, as BusyTimeout does
            IFormattable f => f.ToString(value is double or float ? "R" : null, CultureInfo.InvariantCulture),
            _ => value.ToString() ?? string.Empty,
        };

        try
        {
            return Kind switch
            {
                KeywordKind.Text => text,
                KeywordKind.Boolean => NormalizeBoolean(text),
                KeywordKind.Integer => NormalizeInteger(text),
                KeywordKind.Number => NormalizeNumber(text),
                _ => NormalizeEnum(text),
            };
        }
        catch (ArgumentException) when (AliasWritten(written) is { } alias)
        {
            // The canonical name alone may not be recognized by one who wrote the alias (Command Timeout for Default Timeout).
            throw Invalid(text, $" (written as its alias '{alias}')");
        }
    }

    /// <summary>The alias <paramref name="written"/> is (in any case, with or without spaces), if it is one.</summary>
    private string? AliasWritten(string written)
        => Aliases.FirstOrDefault(alias => string.Equals(
            alias.Replace(" ", "", StringComparison.Ordinal), written.Replace(" ", "", StringComparison.Ordinal), StringComparison.OrdinalIgnoreCase));

    private static string FormatBoolean(bool value) => value ? "True" : "False";

    private string NormalizeBoolean(string text)
    {
        switch (text.Trim().ToUpperInvariant())
        {
            case "TRUE" or "YES" or "1":
                return FormatBoolean(true);
            case "FALSE" or "NO" or "0":
                return FormatBoolean(false);
            default:
                throw Invalid(text);
        }
    }

    private string NormalizeInteger(string text)
    {
        if (!long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var number)
            || number < IntegerMin
            || number > IntegerMax)
        {
            throw Invalid(text);
        }

        return number.ToString(CultureInfo.InvariantCulture);
    }

    private string NormalizeNumber(string text)
    {
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number)
            || !double.IsFinite(number)
            || number < Min
            || number > Max
            || (number == 0 && Underflows(text)))
        {
            throw Invalid(text);
        }

        // -0 and 0 are one setting (and one pool).
        return (number == 0 ? 0 : number).ToString("R", CultureInfo.InvariantCulture);
    }

    /// <summary>Whether text that parsed to 0 names a number that is not 0 (1e-400): 0 would mean something else, such as no limit.</summary>
    private static bool Underflows(string text)
    {
        var mantissa = text.AsSpan();
        var exponent = mantissa.IndexOfAny('e', 'E');
        return (exponent < 0 ? mantissa : mantissa[..exponent]).IndexOfAnyInRange('1', '9') >= 0;
    }

    private string NormalizeEnum(string text)
    {
        var trimmed = text.Trim();
        foreach (var name in EnumNames)
        {
            if (string.Equals(name, trimmed, StringComparison.OrdinalIgnoreCase))
            {
                return name;
            }
        }

        if (EnumNumbers is not null
            && long.TryParse(trimmed, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number)
            && EnumNumbers.TryGetValue(number, out var numbered))
        {
            return numbered;
        }

        throw Invalid(text);
    }

    private ArgumentException Invalid(string text, string written = "")
        => new($"Invalid value '{text}' for connection-string keyword '{Name}'{written}: expected {Allowed}.", Name);
}
