using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Configuration;

namespace SqliteSaver.Data.Tests.Configuration;

public class ConnectionStringBuilderTests
{
    [Test]
    public void Defaults_are_the_documented_ones()
    {
        var builder = new SaverConnectionStringBuilder();

        builder.DataSource.ShouldBe(string.Empty);
        builder.Mode.ShouldBe(SqliteOpenMode.ReadWriteCreate);
        builder.Cache.ShouldBe(SqliteCacheMode.Default);
        builder.ForeignKeys.ShouldBeNull();
        builder.RecursiveTriggers.ShouldBeFalse();
        builder.DefaultTimeout.ShouldBe(30);
        builder.Vfs.ShouldBeNull();
        builder.Pooling.ShouldBeTrue();
        builder.MaxPoolSize.ShouldBe(16);
        builder.MinPoolSize.ShouldBe(0);
        builder.PoolTimeout.ShouldBe(TimeSpan.FromSeconds(30));
        builder.ConnectionIdleLifetime.ShouldBe(TimeSpan.FromSeconds(300));
        builder.BusyTimeout.ShouldBe(TimeSpan.FromMilliseconds(5000));
        builder.JournalMode.ShouldBe(JournalMode.Wal);
        builder.Synchronous.ShouldBe(SynchronousMode.Normal);
        builder.CacheSize.ShouldBeNull();
        builder.MmapSize.ShouldBeNull();
        builder.TempStore.ShouldBeNull();
        builder.JournalSizeLimit.ShouldBe(64L * 1024 * 1024);
        builder.WalAutocheckpoint.ShouldBe(1000);
        builder.Retry.ShouldBe(5);
        builder.BaseDelay.ShouldBe(TimeSpan.FromSeconds(0.05));
        builder.MaxDelay.ShouldBe(TimeSpan.FromSeconds(2));
        builder.Jitter.ShouldBe(0.25);
        builder.WriteGate.ShouldBeTrue();
        builder.CheckpointInterval.ShouldBe(TimeSpan.FromSeconds(60));
        builder.CheckpointMode.ShouldBe(CheckpointMode.Passive);
        builder.CheckpointOnClose.ShouldBeTrue();
        builder.ConnectionString.ShouldBe(string.Empty);
    }

    [Test]
    public void Keywords_are_case_insensitive_and_accept_aliases_and_missing_spaces()
    {
        var builder = new SaverConnectionStringBuilder(
            "filename=a.db;MAXPOOLSIZE=3;min pool size=1;PoolTimeout=0.5;journal mode=delete;SYNCHRONOUS=full;"
            + "Command Timeout=7;busytimeout=250;Retry=8;BaseDelay=0.5;MaxDelay=4;jitter=0;foreignkeys=yes;TempStore=memory");

        builder.DataSource.ShouldBe("a.db");
        builder.MaxPoolSize.ShouldBe(3);
        builder.MinPoolSize.ShouldBe(1);
        builder.PoolTimeout.ShouldBe(TimeSpan.FromSeconds(0.5));
        builder.JournalMode.ShouldBe(JournalMode.Delete);
        builder.Synchronous.ShouldBe(SynchronousMode.Full);
        builder.DefaultTimeout.ShouldBe(7);
        builder.BusyTimeout.ShouldBe(TimeSpan.FromMilliseconds(250));
        builder["Busy Timeout"] = TimeSpan.FromMicroseconds(1500); // rounded up, as the property does (a review: it was refused)
        builder.BusyTimeout.ShouldBe(TimeSpan.FromMilliseconds(2));
        builder.Retry.ShouldBe(8);
        builder.BaseDelay.ShouldBe(TimeSpan.FromSeconds(0.5));
        builder.MaxDelay.ShouldBe(TimeSpan.FromSeconds(4));
        builder.Jitter.ShouldBe(0);
        builder.ForeignKeys.ShouldBe(true);
        builder.TempStore.ShouldBe(TempStoreMode.Memory);
        new SaverConnectionStringBuilder("checkpointmode=TRUNCATE").CheckpointMode.ShouldBe(CheckpointMode.Truncate);
        builder["DataSource"].ShouldBe("a.db");
        builder.ContainsKey("Max Pool Size").ShouldBeTrue();
        builder.ContainsKey("maxpoolsize").ShouldBeTrue();
        builder.ShouldSerialize("maxpoolsize").ShouldBeTrue();
        builder.Remove("filename").ShouldBeTrue();
        builder.ContainsKey("Data Source").ShouldBeFalse();
    }

    [Test]
    public void Typed_properties_write_canonical_values_that_round_trip()
    {
        var builder = new SaverConnectionStringBuilder
        {
            DataSource = "x.db",
            MaxPoolSize = 4,
            PoolTimeout = TimeSpan.FromMilliseconds(1500),
            BusyTimeout = TimeSpan.FromSeconds(2),
            JournalMode = JournalMode.Truncate,
            CacheSize = -2000,
            MmapSize = 268435456,
            Jitter = 0.1,
            ForeignKeys = false,
        };

        builder.ConnectionString.ShouldBe(
            "Data Source=x.db;Max Pool Size=4;Pool Timeout=1.5;Busy Timeout=2000;Journal Mode=Truncate;Cache Size=-2000;Mmap Size=268435456;Jitter=0.1;Foreign Keys=False");

        var copy = new SaverConnectionStringBuilder(builder.ConnectionString);
        copy.ConnectionString.ShouldBe(builder.ConnectionString);
        copy.PoolTimeout.ShouldBe(TimeSpan.FromMilliseconds(1500));
    }

    [Test]
    public void Every_other_typed_property_writes_its_own_keyword_in_its_own_unit()
    {
        var builder = new SaverConnectionStringBuilder
        {
            Mode = SqliteOpenMode.ReadWrite,
            Cache = SqliteCacheMode.Shared,
            Password = "pw",
            RecursiveTriggers = true,
            DefaultTimeout = 12,
            Vfs = "unix",
            Pooling = false,
            MinPoolSize = 2,
            ConnectionIdleLifetime = TimeSpan.FromMinutes(2),
            StatementCacheSize = 7,
            Synchronous = SynchronousMode.Full,
            TempStore = TempStoreMode.Memory,
            JournalSizeLimit = -1,
            WalAutocheckpoint = 9,
            Retry = 3,
            BaseDelay = TimeSpan.FromMilliseconds(250),
            MaxDelay = TimeSpan.FromSeconds(3),
            WriteGate = false,
            CheckpointInterval = TimeSpan.FromSeconds(90),
            CheckpointMode = CheckpointMode.Truncate,
            CheckpointOnClose = false,
        };

        builder.ConnectionString.ShouldBe(
            "Mode=ReadWrite;Cache=Shared;Password=pw;Recursive Triggers=True;Default Timeout=12;Vfs=unix;Pooling=False;Min Pool Size=2;"
            + "Connection Idle Lifetime=120;Statement Cache Size=7;Synchronous=Full;Temp Store=Memory;Journal Size Limit=-1;Wal Autocheckpoint=9;"
            + "Retry=3;Base Delay=0.25;Max Delay=3;Write Gate=False;Checkpoint Interval=90;Checkpoint Mode=Truncate;Checkpoint On Close=False");
    }

    /// <summary>Values are written in invariant text whatever the thread's culture: "1,5" is no number in a connection string.</summary>
    [Test]
    [SetCulture("de-DE")]
    public void Typed_values_are_written_in_invariant_text_under_a_culture_with_a_decimal_comma()
        => new SaverConnectionStringBuilder { PoolTimeout = TimeSpan.FromSeconds(1.5), Jitter = 0.5, ["Base Delay"] = 0.25 }
            .ConnectionString.ShouldBe("Pool Timeout=1.5;Jitter=0.5;Base Delay=0.25");

    [TestCase("true", true)]
    [TestCase(" YES ", true)]
    [TestCase("1", true)]
    [TestCase("False", false)]
    [TestCase("no", false)]
    [TestCase("0", false)]
    public void A_boolean_is_true_or_false_also_yes_no_1_0_in_any_case(string value, bool expected)
        => new SaverConnectionStringBuilder { ["Write Gate"] = value }.WriteGate.ShouldBe(expected);

    /// <summary>A quoted value keeps its spaces; a number is read as the number within them, as an enum or a boolean is.</summary>
    [Test]
    public void A_quoted_number_with_spaces_around_it_is_that_number()
        => new SaverConnectionStringBuilder("Busy Timeout=' 250 ';Pool Timeout=\" 1.5 \";Mode=' +1 '")
            .ConnectionString.ShouldBe("Busy Timeout=250;Pool Timeout=1.5;Mode=ReadWrite");

    [Test]
    public void The_indexer_speaks_connection_string_values()
    {
        var builder = new SaverConnectionStringBuilder("Max Pool Size=4;Pool Timeout=1.5;Pooling=no;Journal Mode=truncate");

        builder["maxpoolsize"].ShouldBe(4L);
        builder["Pool Timeout"].ShouldBe(1.5);
        builder["Pooling"].ShouldBe(false);
        builder["Journal Mode"].ShouldBe("Truncate");
        builder["Busy Timeout"].ShouldBe(5000L);
        builder["Foreign Keys"].ShouldBeNull();
        builder.TryGetValue("Filename", out var dataSource).ShouldBeTrue();
        dataSource.ShouldBe(string.Empty);
        builder.TryGetValue("Nope", out _).ShouldBeFalse();
        builder.ConnectionString.ShouldBe("Max Pool Size=4;Pool Timeout=1.5;Pooling=False;Journal Mode=Truncate");
    }

    [Test]
    public void Mode_and_Cache_take_Microsoft_Data_Sqlites_numbers_and_the_indexer_takes_times_as_the_properties_do()
    {
        // Microsoft.Data.Sqlite's builder parses its enums by name or number; these were refused.
        var builder = new SaverConnectionStringBuilder("Mode=1") { ["Cache"] = 2 };
        builder.Mode.ShouldBe(SqliteOpenMode.ReadWrite);
        builder.Cache.ShouldBe(SqliteCacheMode.Shared);
        builder.ConnectionString.ShouldBe("Mode=ReadWrite;Cache=Shared");
        new SqliteConnectionStringBuilder("Mode=1;Cache=2").ConnectionString.ShouldBe("Mode=ReadWrite;Cache=Shared");
        new SaverConnectionStringBuilder("Mode=+1").Mode.ShouldBe(new SqliteConnectionStringBuilder("Mode=+1").Mode);
        Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder("Mode=4")).Message
            .ShouldBe("Invalid value '4' for connection-string keyword 'Mode': expected one of ReadWriteCreate (0), ReadWrite (1), ReadOnly (2), Memory (3). (Parameter 'Mode')");
        Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder("Journal Mode=1")); // the library's own: names only

        // The typed properties are TimeSpans: the indexer takes one too, in the keyword's unit ("00:00:03" was refused).
        builder["Pool Timeout"] = TimeSpan.FromSeconds(3);
        builder["Busy Timeout"] = TimeSpan.FromMilliseconds(250);
        builder.PoolTimeout.ShouldBe(TimeSpan.FromSeconds(3));
        builder.BusyTimeout.ShouldBe(TimeSpan.FromMilliseconds(250));
        Should.Throw<ArgumentException>(() => builder["Default Timeout"] = TimeSpan.FromSeconds(1.5)).ParamName.ShouldBe("Default Timeout");
    }

    [Test]
    public void Negative_zero_is_zero_and_a_tiny_positive_time_stays_positive()
    {
        new SaverConnectionStringBuilder("Pool Timeout=-0").ConnectionString.ShouldBe("Pool Timeout=0");
        new SaverConnectionStringBuilder("Pool Timeout=0.0e5").ConnectionString.ShouldBe("Pool Timeout=0"); // a 0 spelt otherwise
        new SaverConnectionStringBuilder("Pool Timeout=0.00000001").PoolTimeout.ShouldBeGreaterThan(TimeSpan.Zero);
    }

    [Test]
    public void The_BusyTimeout_property_refuses_a_negative_time_and_keeps_a_tiny_positive_one_positive()
    {
        // As the properties in seconds do: Pool Timeout refuses -0.5 ms, and a tiny positive time stays positive.
        Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder { PoolTimeout = TimeSpan.FromMilliseconds(-0.5) });

        Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder { BusyTimeout = TimeSpan.FromMilliseconds(-0.5) })
            .ParamName.ShouldBe("Busy Timeout");
        Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder { ["Busy Timeout"] = TimeSpan.FromMilliseconds(-0.5) })
            .ParamName.ShouldBe("Busy Timeout"); // the indexer too: rounded up, it was 0
        new SaverConnectionStringBuilder { BusyTimeout = TimeSpan.FromMilliseconds(0.5) }.BusyTimeout.ShouldBeGreaterThan(TimeSpan.Zero); // 0 is no wait at all
        new SaverConnectionStringBuilder { ["Busy Timeout"] = TimeSpan.FromMilliseconds(0.4) }.BusyTimeout.ShouldBe(TimeSpan.FromMilliseconds(1)); // rounded up, not to the nearest
    }

    [Test]
    public void Setting_null_removes_a_keyword()
    {
        var builder = new SaverConnectionStringBuilder("Max Pool Size=4") { ["MaxPoolSize"] = null };

        builder.ContainsKey("Max Pool Size").ShouldBeFalse();
        builder.MaxPoolSize.ShouldBe(16);
    }

    [Test]
    public void An_empty_text_value_is_no_setting_so_it_round_trips()
    {
        var builder = new SaverConnectionStringBuilder("Password=\"\";Vfs='';Data Source=a.db") { DataSource = string.Empty };

        builder.ConnectionString.ShouldBe(string.Empty);
        builder.Password.ShouldBe(string.Empty);
        builder.Vfs.ShouldBeNull();
        Should.Throw<ArgumentException>(() => builder["Retry"] = string.Empty).ParamName.ShouldBe("Retry"); // a number: no removal
    }

    /// <summary>
    /// The error names an unknown keyword as the string spells it; ADO.NET's parser hands keywords over in lower case,
    /// which the error repeated (a new user's trial; Shouldly's ShouldContain ignores case unless told).
    /// </summary>
    [TestCase("Data Source=a.db;Max Pool Sise=3")]
    [TestCase("Data Source=a.db;Max Pool Sise=")]
    [TestCase("Data Source=a.db; Max Pool Sise = 3")]
    [TestCase("Data Source='max pool sise=';Max Pool Sise=3")]
    [TestCase("Data Source=\"a;MAX POOL SISE=b\";Max Pool Sise=3")] // a quoted value is no part (a review)
    [TestCase("Data Source='it''s;MAX POOL SISE=b';Max Pool Sise=3")]
    [TestCase("Data Source= 'a;MAX POOL SISE=b';Max Pool Sise=3")] // a quoted value after a space is no part either
    public void An_unknown_keyword_is_named_in_the_error(string connectionString)
    {
        var error = Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder(connectionString));

        error.Message.ShouldContain("'Max Pool Sise' is not supported. Did you mean 'Max Pool Size'?", Case.Sensitive);
        error.Message.ShouldStartWith("Connection-string keyword"); // an unknown keyword, not a malformed string
        error.Message.ShouldContain("Default Timeout (or Command Timeout)"); // aliases are listed with their keyword
        new SaverConnectionStringBuilder().Remove("Max Pool Sise").ShouldBeFalse(); // removing an unknown one is no error
        new SaverConnectionStringBuilder("Data Source=a.db").Remove("Max Pool Sise").ShouldBeFalse(); // nor once parsing is over
    }

    [TestCase("BusyTimout", "Busy Timeout")]
    [TestCase("passwrod", "Password")]
    [TestCase("Command Timout", "Command Timeout")]
    [TestCase("Data Sorce", "Data Source")]
    [TestCase("M Pool Size", "Max Pool Size' or 'Min Pool Size")] // as near as each other
    [TestCase("Mx Pool Size", "Max Pool Size")] // one edit from Max Pool Size, two from Min Pool Size
    [TestCase("Pwd", null)]
    [TestCase("Vf", null)] // a name of two letters gets none
    [TestCase("Vfx", "Vfs")] // one of three letters gets those one edit from it
    [TestCase("Max Pool Sizing", null)] // three edits from Max Pool Size: two at most, however long the name
    [TestCase("Retyr", "Retry")] // two letters swapped: one edit (a user's trial found none suggested)
    [TestCase("Retries", null)] // three edits from Retry
    [TestCase("Application Name", null)]
    public void An_unknown_keyword_close_to_a_supported_one_gets_a_suggestion(string keyword, string? suggestion)
    {
        var error = Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder { [keyword] = "1" });

        error.Message.ShouldStartWith($"Connection-string keyword '{keyword}' is not supported.{(suggestion is null ? " Supported" : $" Did you mean '{suggestion}'?")}");
    }

    /// <summary>
    /// A string the ADO.NET parser cannot split into keyword=value parts: the error says it is the string's form, and
    /// what the form is, where it gave only the base class's "does not conform to specification" (a user's trial).
    /// </summary>
    [Test]
    public void A_malformed_string_says_what_form_a_connection_string_takes()
    {
        var error = Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder("Data Source=app.db;Max Pool Size"));

        error.ParamName.ShouldBe("connectionString");
        error.Message.ShouldStartWith("The connection string is malformed: Format of the initialization string does not conform to specification starting at index 19. It is a list of keyword=value parts");
        Should.Throw<ArgumentException>(() => new SaverDbConnection("Data Source=app.db;Max Pool Size")).Message.ShouldStartWith("The connection string is malformed");
    }

    [TestCase("Busy Timeout", "5s", "a whole number of milliseconds from 0 to 2147483647")]
    [TestCase("Default Timeout", "30s", "a whole number of seconds from 0 to 2147483")]
    [TestCase("Base Delay", "50ms", "a number of seconds from 0 to 3600")]
    [TestCase("Checkpoint Interval", "-5", "a number of seconds from 0 to 2147483")]
    [TestCase("Journal Size Limit", "64MB", "a whole number of bytes of at least -1")]
    [TestCase("Jitter", "25%", "a number from 0 to 1")]
    public void A_bad_number_is_told_what_it_counts(string keyword, string value, string allowed)
        => Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder { [keyword] = value })
            .Message.ShouldBe($"Invalid value '{value}' for connection-string keyword '{keyword}': expected {allowed}. (Parameter '{keyword}')");

    /// <summary>
    /// A bad value set through an alias names the alias beside the keyword's name, which the user may not know (an
    /// audit of the messages); a spelling without spaces or in another case is the keyword itself.
    /// </summary>
    [TestCase("Command Timeout", " (written as its alias 'Command Timeout')")]
    [TestCase("commandtimeout", " (written as its alias 'Command Timeout')")]
    [TestCase("DefaultTimeout", "")]
    [TestCase("default timeout", "")]
    public void A_bad_value_set_through_an_alias_names_the_alias_too(string keyword, string written)
    {
        Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder($"Data Source=x.db;{keyword}=-1"))
            .Message.ShouldBe($"Invalid value '-1' for connection-string keyword 'Default Timeout'{written}: expected a whole number of seconds from 0 to 2147483. (Parameter 'Default Timeout')");
    }

    [TestCase("Data Source=x.db;Pwd=hunter2")]
    [TestCase("Data Source=x.db;Passwrod=hunter2")]
    public void An_unknown_keywords_error_does_not_repeat_its_value_which_may_be_a_secret(string connectionString)
    {
        Should.Throw<ArgumentException>(() => new SaverDbConnection(connectionString)).Message.ShouldNotContain("hunter2");
        Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder { ["Pwd"] = "hunter2" }).Message.ShouldNotContain("hunter2");
    }

    private static IEnumerable<TestCaseData> BadValues()
    {
        (string Keyword, string Value)[] cases =
        [
            ("Mode", "Writable"), ("Mode", "7"), ("Cache", "Big"), ("Cache", "-1"), ("Foreign Keys", "maybe"), ("Recursive Triggers", "2"),
            ("Default Timeout", "-1"), ("Default Timeout", "ten"), ("Command Timeout", "1.5"),
            ("Pooling", "sometimes"), ("Max Pool Size", "0"), ("Max Pool Size", "1025"), ("Max Pool Size", "99999999999999999999"),
            ("Min Pool Size", "-1"), ("Min Pool Size", "1025"), ("Pool Timeout", "-0.5"), ("Pool Timeout", "NaN"), ("Pool Timeout", "Infinity"), ("Pool Timeout", "1e-400"),
            ("Connection Idle Lifetime", "-1"), ("Connection Idle Lifetime", "5s"),
            ("Statement Cache Size", "-1"), ("Statement Cache Size", "65537"), ("Statement Cache Size", "all"),
            ("Busy Timeout", "-1"), ("Busy Timeout", "2.5"), ("Busy Timeout", "3000000000"),
            ("Journal Mode", "WAL; DROP TABLE x"), ("Journal Mode", "Wal2"), ("Journal Mode", "0"),
            ("Synchronous", "Normal)--"), ("Synchronous", "2"),
            ("Cache Size", "1e3"), ("Cache Size", "3000000000"), ("Cache Size", "-2147483649"), ("Mmap Size", "-1"), ("Temp Store", "Disk"),
            ("Journal Size Limit", "-2"), ("Journal Size Limit", "64MB"), ("Wal Autocheckpoint", "-5"), ("Wal Autocheckpoint", "2147483648"),
            ("Retry", "-1"), ("Retry", "101"), ("Retry", "many"),
            ("Base Delay", "-0.1"), ("Base Delay", "NaN"), ("Base Delay", "3601"),
            ("Max Delay", "-1"), ("Max Delay", "1e400"),
            ("Jitter", "1.5"), ("Jitter", "-0.1"), ("Jitter", "NaN"), ("Write Gate", "on"),
            ("Checkpoint Interval", "-1"), ("Checkpoint Interval", "0.5e-330"), ("Checkpoint Interval", "1m"), ("Checkpoint Mode", "Wal"), ("Checkpoint Mode", "2"),
            ("Checkpoint On Close", "perhaps"),
        ];

        foreach (var (keyword, value) in cases)
        {
            yield return new TestCaseData(keyword, value).SetName($"Bad value for {keyword}: {value}");
        }
    }

    [TestCaseSource(nameof(BadValues))]
    public void A_bad_value_is_rejected_with_the_keyword_the_value_and_what_is_allowed(string keyword, string value)
    {
        var canonical = Keywords.Resolve(keyword).Name;

        var error = Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder { [keyword] = value });

        error.Message.ShouldContain($"'{canonical}'");
        error.Message.ShouldContain($"'{value}'");
        error.Message.ShouldContain("expected ");
        error.ParamName.ShouldBe(canonical);
    }

    [Test]
    public void Every_keyword_has_at_least_one_bad_value_case_unless_it_takes_any_text()
    {
        var covered = BadValues().Select(c => Keywords.Resolve((string)c.Arguments[0]!).Name).ToHashSet();

        var uncovered = Keywords.All.Where(k => k.Kind != KeywordKind.Text && !covered.Contains(k.Name)).Select(k => k.Name);

        uncovered.ShouldBeEmpty();
    }

    [Test]
    public void Contradicting_values_name_both_keywords()
    {
        var pool = Should.Throw<ArgumentException>(() => new SaverDbConnection("Data Source=a.db;Min Pool Size=5;Max Pool Size=2"));
        pool.Message.ShouldContain("'Min Pool Size' (5)");
        pool.Message.ShouldContain("'Max Pool Size' (2)");
        pool.ParamName.ShouldBe("Min Pool Size");

        var delay = Should.Throw<ArgumentException>(() => new SaverDbConnection("Data Source=a.db;Base Delay=3;Max Delay=1"));
        delay.Message.ShouldContain("'Base Delay' (3 s)");
        delay.Message.ShouldContain("'Max Delay' (1 s)");
        delay.ParamName.ShouldBe("Base Delay");

        var defaulted = Should.Throw<ArgumentException>(() => new SaverDbConnection("Data Source=a.db;Max Delay=0.01"));
        defaulted.Message.ShouldContain("'Base Delay' (0.05 s, its default)"); // a keyword the caller never set
        defaulted.Message.ShouldContain("'Max Delay' (0.01 s)");

        var defaultedPool = Should.Throw<ArgumentException>(() => new SaverDbConnection("Data Source=a.db;Min Pool Size=20"));
        defaultedPool.Message.ShouldContain("'Max Pool Size' (16, its default)");
    }

    /// <summary>
    /// Each range's bounds, as the documentation gives them, are allowed (Max Pool Size 1 to 1024, Statement Cache Size
    /// 0 to 65536, Retry 0 to 100, Jitter 0 to 1, Journal Size Limit -1 for no limit ...), and so are the values that
    /// may equal another: Min Pool Size "0 to Max Pool Size" (a pool of fixed size), Max Delay "at least Base Delay".
    /// </summary>
    [TestCase("Max Pool Size=1;Min Pool Size=1")]
    [TestCase("Max Pool Size=1024;Min Pool Size=1024")]
    [TestCase("Min Pool Size=16")] // the default Max Pool Size
    [TestCase("Statement Cache Size=65536")]
    [TestCase("Statement Cache Size=0")]
    [TestCase("Retry=100")]
    [TestCase("Jitter=1")]
    [TestCase("Base Delay=3600;Max Delay=3600")]
    [TestCase("Base Delay=2")] // the default Max Delay
    [TestCase("Default Timeout=2147483;Pool Timeout=2147483;Connection Idle Lifetime=2147483;Checkpoint Interval=2147483")]
    [TestCase("Journal Size Limit=-1;Wal Autocheckpoint=0;Mmap Size=0;Busy Timeout=2147483647")]
    [TestCase("Min Pool Size=0;Base Delay=0;Max Delay=0;Mmap Size=9223372036854775807")] // "of at least 0": no upper bound but long's
    public void The_bounds_of_each_range_are_allowed(string keywords)
        => Should.NotThrow(() => new SaverDbConnection($"Data Source=a.db;{keywords}").Dispose());

    [Test]
    public void A_malformed_connection_string_is_an_argument_exception()
    {
        Should.Throw<ArgumentException>(() => new SaverConnectionStringBuilder("Data Source='unterminated"));
    }

    /// <summary>
    /// The checkpoint connection opens a URI's database with a private cache however the URI spells a shared one:
    /// SQLite refuses a checkpoint on a shared cache while another connection of it has a transaction open. Before,
    /// only the literal "cache=shared" was rewritten, and an escaped one kept the checkpoint connection in the cache
    /// (a review's finding).
    /// </summary>
    [TestCase("file:/p/a.db?cache=%73hared", "file:/p/a.db?cache=%73hared&cache=private")]
    [TestCase("file:/p/a.db?cache=shared#top", "file:/p/a.db?cache=shared&cache=private#top")]
    [TestCase("file:/p/a.db", "file:/p/a.db?cache=private")]
    public void The_checkpoint_connection_has_a_private_cache_however_the_uri_spells_a_shared_one(string uri, string expected)
        => new SqliteConnectionStringBuilder(SaverOptions.Parse($"Data Source={uri}").CheckpointerConnectionString).DataSource.ShouldBe(expected);

    /// <summary>
    /// Seconds are whole ticks as written, and a fraction of a tick is rounded up. Before, 0.07 s was 700,001 ticks
    /// (0.07 times ten million is a hair over 700,000 in binary floating point), shown as "Pool Timeout=0.0700001 s"
    /// (a bug hunt's finding; the large values a review's).
    /// </summary>
    [TestCase("0.07", 700_000L)]
    [TestCase("1.11", 11_100_000L)]
    [TestCase("1000000.000000001", 10_000_000_000_001L)]
    [TestCase("0.00000000001", 1L)]
    [TestCase("1e-300", 1L)]
    [TestCase("0", 0L)]
    public void Seconds_are_whole_ticks_as_written_and_a_fraction_of_a_tick_is_rounded_up(string seconds, long ticks)
        => new SaverConnectionStringBuilder($"Pool Timeout={seconds}").PoolTimeout.Ticks.ShouldBe(ticks);
}
