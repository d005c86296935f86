using System.Text;
using System.Text.RegularExpressions;
using FsCheck;
using FsCheck.Fluent;
using Shouldly;
using SqliteSaver.Data.Configuration;

namespace SqliteSaver.Data.Tests.HostileInput;

/// <summary>
/// Property tests over the connection-string parser: whatever text arrives, it either parses or raises an
/// <see cref="ArgumentException"/>; what parses round-trips; and no text ever reaches the PRAGMAs run on a connection.
/// </summary>
public partial class ConnectionStringPropertyTests
{
    private const int Runs = 3000;

    private static readonly Config Checks = Config.QuickThrowOnFailure.WithMaxTest(Runs);

    [Test]
    public void Any_string_parses_or_raises_ArgumentException_and_what_parses_round_trips()
    {
        var outcomes = new int[2];

        Prop.ForAll(ConnectionStrings().ToArbitrary(), text => ParsesOrRejects(text, outcomes)).Check(Checks);

        // The property means something only if the generator reaches both sides.
        outcomes[0].ShouldBeGreaterThan(Runs / 20, "too few generated strings parsed");
        outcomes[1].ShouldBeGreaterThan(Runs / 20, "too few generated strings were rejected");
    }

    [Test]
    public void Arbitrary_strings_parse_or_raise_ArgumentException()
    {
        var outcomes = new int[2];

        Prop.ForAll(ArbMap.Default.ArbFor<string>(), text => ParsesOrRejects(text ?? string.Empty, outcomes)).Check(Checks);
    }

    [Test]
    public void Whatever_parses_runs_only_PRAGMAs_of_known_names_with_numbers_or_keywords()
    {
        var parsed = 0;

        Prop.ForAll(ConnectionStrings().ToArbitrary(), text =>
        {
            SaverOptions options;
            try
            {
                options = SaverOptions.Parse(text);
            }
            catch (ArgumentException)
            {
                return;
            }

            parsed++;
            SafePragmas().IsMatch(options.PragmaSql).ShouldBeTrue(options.PragmaSql);
        }).Check(Checks);

        parsed.ShouldBeGreaterThan(Runs / 20);
    }

    /// <summary>The property: parse, or throw exactly ArgumentException (or a subclass); parsed text round-trips.</summary>
    private static void ParsesOrRejects(string text, int[] outcomes)
    {
        SaverConnectionStringBuilder builder;
        try
        {
            builder = new SaverConnectionStringBuilder(text);
            _ = SaverOptions.Parse(text); // the data source's own parse: paths made full, contradictions checked
        }
        catch (ArgumentException)
        {
            outcomes[1]++;
            return;
        }
        catch (Exception exception)
        {
            throw new ShouldAssertException($"{exception.GetType().Name} for {Show(text)}: {exception.Message}", exception);
        }

        outcomes[0]++;
        var written = builder.ToString();
        var again = new SaverConnectionStringBuilder(written);
        again.ToString().ShouldBe(written, Show(text));
        foreach (var spec in Keywords.All)
        {
            again.GetText(spec).ShouldBe(builder.GetText(spec), $"{spec.Name} of {Show(text)}");
        }
    }

    private static string Show(string text) => Regex.Escape(text);

    /// <summary>One or more <c>PRAGMA name = VALUE;</c> with a lowercase name and a value of letters, digits and a sign.</summary>
    [GeneratedRegex(@"\A(PRAGMA [a-z_]+ = -?[A-Z0-9]+;)+\z")]
    private static partial Regex SafePragmas();

    /// <summary>Strings shaped like connection strings: real keywords and random ones, quoted and hostile values.</summary>
    internal static Gen<string> ConnectionStrings()
    {
        var realNames = Keywords.All
            .SelectMany(spec => spec.Aliases.Prepend(spec.Name))
            .SelectMany(name => new[] { name, name.Replace(" ", string.Empty, StringComparison.Ordinal), name.ToUpperInvariant(), " " + name.ToLowerInvariant() + " " })
            .ToArray();
        var anyString = ArbMap.Default.GeneratorFor<string>().Select(s => s ?? string.Empty);
        var keyword = Gen.Frequency(
            (8, Gen.Elements(realNames)),
            (1, anyString),
            (1, Gen.Elements("Max  Pool Size", "Data", "Source", "Journal_Mode", "=", "==", "Max Pool Size;", "Pool\u00a0Timeout", "'Retry'", "\"Jitter\"")));

        var value = Gen.Frequency(
            (4, Gen.Elements(
                "0", "1", "-1", "5", "16", "1024", "1025", "0.5", "-0", "1e3", "1e400", "NaN", "Infinity", "-Infinity",
                "99999999999999999999", "9223372036854775807", "-9223372036854775808", "2147483648", "0x10", " 7 ",
                "true", "False", "yes", "no", "on", "Wal", "wal", "DELETE", "Full", "Memory", "Truncate", "Passive",
                "ReadOnly", "Shared", "a.db", ":memory:", "file:x.db?mode=memory", "dir with spaces/ü日本 ;x.db", "", " ")),
            (3, Gen.Elements(
                "WAL; DROP TABLE x", "Wal) --", "Normal)--", "1; DROP TABLE x", "1 -- x", "x' OR '1'='1", "0); ATTACH 'x' AS y; --",
                "\"quoted\"", "'quoted'", "it's", "a\"b", "semi;colon", "eq=uals", "new\nline", "nul\0byte", "\u202eevil", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢")),
            (2, anyString),
            (1, Gen.Choose(int.MinValue, int.MaxValue).Select(n => n.ToString(System.Globalization.CultureInfo.InvariantCulture))),
            (1, ArbMap.Default.GeneratorFor<double>().Select(d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture))));

        var quoted = value.SelectMany(v => Gen.Elements(
            v,
            "'" + v.Replace("'", "''", StringComparison.Ordinal) + "'",
            "\"" + v.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"",
            "'" + v,
            v + "\""));

        var pair = keyword.SelectMany(k => quoted.Select(v => k + "=" + v));
        var separator = Gen.Elements(";", ";", ";", "; ", ";;", " ; ", "");
        var pairs = Gen.Choose(0, 6).SelectMany(count => Gen.ListOf(Gen.Zip(pair, separator), count)).Select(list =>
        {
            var text = new StringBuilder();
            foreach (var (p, s) in list)
            {
                text.Append(p).Append(s);
            }

            return text.ToString();
        });

        // Most start with a Data Source, which the pairs may repeat or empty: without one nothing parses.
        return Gen.Frequency((6, pairs.Select(p => "Data Source=generated.db;" + p)), (3, pairs), (1, anyString));
    }
}
