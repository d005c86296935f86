using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Configuration;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.HostileInput;

/// <summary>
/// Connection-string values aimed at the PRAGMAs a physical connection runs: each is rejected with an
/// <see cref="ArgumentException"/> before any file is opened, or means exactly what it says. No SQL runs from them.
/// </summary>
public class InjectionTests : DatabaseTest
{
    private static readonly string[] PragmaKeywords =
    [
        "Busy Timeout", "Journal Mode", "Synchronous", "Cache Size", "Mmap Size", "Temp Store", "Journal Size Limit",
        "Wal Autocheckpoint", "Foreign Keys", "Recursive Triggers",
    ];

    private static readonly string[] HostileValues =
    [
        "WAL; DROP TABLE canary", "'WAL; DROP TABLE canary'", "\"1; DROP TABLE canary\"", "'Wal) --'", "\"Normal)--\"",
        "'0); ATTACH ''x.db'' AS y; --'", "'1 -- comment'", "'1/*'", "99999999999999999999", "-99999999999999999999",
        "1e400", "NaN", "-NaN", "Infinity", "-1e3", "0x10", "'١٢٣'", "'１２'", "'ＷＡＬ'", "'Wal\u200b'", "'true\u0000'",
        "'5\u00a0'", "'off; PRAGMA writable_schema = 1'",
    ];

    private static IEnumerable<TestCaseData> HostileCases()
    {
        foreach (var keyword in PragmaKeywords)
        {
            foreach (var value in HostileValues)
            {
                yield return new TestCaseData(keyword, value).SetName($"Hostile {keyword}={System.Text.RegularExpressions.Regex.Escape(value)}");
            }
        }
    }

    [TestCaseSource(nameof(HostileCases))]
    public void A_hostile_value_for_a_PRAGMA_keyword_is_an_ArgumentException_before_any_file_is_opened(string keyword, string value)
    {
        var path = Folder.File("never.db");
        var connectionString = $"Data Source={path};{keyword}={value}";

        var error = Should.Throw<ArgumentException>(() => SaverDataSource.Create(connectionString));
        Should.Throw<ArgumentException>(() => new SaverDbConnection(connectionString));
        Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder { [keyword] = value.Trim('\'', '"') });

        // Either the keyword's own message (names it, the value and what is allowed) or the connection-string syntax error.
        var named = error.Message.Contains($"'{Keywords.Resolve(keyword).Name}'", StringComparison.Ordinal);
        (named || error.Message.Contains("initialization string", StringComparison.Ordinal)).ShouldBeTrue(error.Message);
        File.Exists(path).ShouldBeFalse();
    }

    [Test]
    public void A_keyword_that_smuggles_a_statement_is_unknown_and_named()
    {
        var path = Folder.File("never.db");

        var error = Should.Throw<ArgumentException>(() => SaverDataSource.Create($"Data Source={path};Journal Mode=Wal;PRAGMA writable_schema=1"));

        error.Message.ShouldContain("'PRAGMA writable_schema'");
        File.Exists(path).ShouldBeFalse();
    }

    [Test]
    public void Huge_and_spaced_values_in_range_mean_exactly_what_they_say()
    {
        var connectionString = Folder.ConnectionString(
            "Busy Timeout= 2147483647 ;Journal Mode=' truncate ';Synchronous=EXTRA;Cache Size=-2147483648;"
            + "Journal Size Limit=9223372036854775807;Wal Autocheckpoint=2147483647;Temp Store= memory;Foreign Keys=' YES '");
        using var dataSource = SaverDataSource.Create(connectionString);
        using var connection = dataSource.OpenConnection();

        ConnectionTests.Pragma(connection, "busy_timeout").ShouldBe(2147483647L);
        ConnectionTests.Pragma(connection, "journal_mode").ShouldBe("truncate");
        ConnectionTests.Pragma(connection, "synchronous").ShouldBe(3L);
        ConnectionTests.Pragma(connection, "cache_size").ShouldBe(-2147483648L);
        ConnectionTests.Pragma(connection, "journal_size_limit").ShouldBe(9223372036854775807L);
        ConnectionTests.Pragma(connection, "wal_autocheckpoint").ShouldBe(2147483647L);
        ConnectionTests.Pragma(connection, "temp_store").ShouldBe(2L);
        ConnectionTests.Pragma(connection, "foreign_keys").ShouldBe(1L);
    }

    [TestCase("spaces and ünïcödé 日本.db")]
    [TestCase("semi;colon.db")]
    [TestCase("quote'); DROP TABLE canary; --.db")]
    [TestCase("double\"quote=equals.db")]
    [TestCase(" leading and trailing spaces .db")]
    public void A_Data_Source_path_with_spaces_unicode_semicolons_and_quotes_opens_exactly_that_file(string name)
    {
        var folder = Path.Combine(Folder.Path, "a folder; ü 'x'");
        Directory.CreateDirectory(folder);
        var path = Path.Combine(folder, name);
        var connectionString = new SaverConnectionStringBuilder { DataSource = path, MaxPoolSize = 2 }.ConnectionString;

        PoolTests.Execute(connectionString, "CREATE TABLE canary (x); INSERT INTO canary VALUES (42)");

        new SaverDbConnection(connectionString).DataSource.ShouldBe(path);
        File.Exists(path).ShouldBeTrue();
        Directory.GetFiles(folder).ShouldAllBe(file => file.StartsWith(path, StringComparison.Ordinal)); // the file, its -wal and -shm
        var again = new SaverConnectionStringBuilder(connectionString).ConnectionString;
        PoolTests.Scalar(again, "SELECT x FROM canary").ShouldBe(42L);
        using var plain = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ConnectionString);
        plain.Open();
        using var read = plain.CreateCommand();
        read.CommandText = "SELECT x FROM canary";
        read.ExecuteScalar().ShouldBe(42L);
    }

    [Test]
    public void A_hostile_Password_never_reaches_SQL()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE canary (x); INSERT INTO canary VALUES (42)");
        var hostile = new SaverConnectionStringBuilder(connectionString) { Password = "x'); DROP TABLE canary; --" }.ConnectionString;
        using var dataSource = SaverDataSource.Create(hostile);

        // The bundled e_sqlite3 has no encryption: opening with a password fails, and nothing else happens.
        Should.Throw<InvalidOperationException>(() => dataSource.OpenConnection()).Message.ShouldContain("encryption");

        dataSource.Statistics.Total.ShouldBe(0);
        PoolTests.Scalar(connectionString, "SELECT x FROM canary").ShouldBe(42L);
    }
}
