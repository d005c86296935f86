using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Resilience;

namespace SqliteSaver.Data.Tests.Resilience;

public class CommandClassifierTests
{
    private SqliteConnection _connection = null!;

    [SetUp]
    public void SetUp()
    {
        _connection = new SqliteConnection("Data Source=:memory:");
        _connection.Open();
        using var command = _connection.CreateCommand();
        command.CommandText = "CREATE TABLE t (x)";
        command.ExecuteNonQuery();
    }

    [TearDown]
    public void TearDown() => _connection.Dispose();

    /// <summary>Whether each of <paramref name="results"/> of <paramref name="sql"/> writes, found the same before and after the text is cached.</summary>
    private string ResultsWrite(string sql, params int[] results)
    {
        var classifier = new CommandClassifier();
        var found = string.Join(",", results.Select(result => classifier.ResultWrites(_connection.Handle!, sql, result)));
        classifier.Classify(_connection.Handle!, sql); // the text could now be classified for good
        string.Join(",", results.Select(result => classifier.ResultWrites(_connection.Handle!, sql, result))).ShouldBe(found);
        return found;
    }

    /// <summary>
    /// Which of a command's results (its statements that return columns, in order) come from a statement that writes:
    /// a reader's step in such a result may end a write. Before and after it (cached or not), and a statement not
    /// prepared yet counts as one that writes.
    /// </summary>
    [TestCase("SELECT 1; INSERT INTO t VALUES (1); SELECT 2", "False,False")]
    [TestCase("INSERT INTO t VALUES (1) RETURNING x; SELECT 1", "True,False")]
    [TestCase("SELECT 1; INSERT INTO t VALUES (1) RETURNING x", "False,True")]
    [TestCase("SELECT 1; CREATE TABLE u (y); INSERT INTO u VALUES (1) RETURNING y", "False,True")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1) RETURNING y; SELECT y FROM u", "True,True")]
    [TestCase("INSERT INTO t VALUES (1) RETURNING x; CREATE TABLE u (y); INSERT INTO u VALUES (1) RETURNING y", "True,True")]
    public void The_results_whose_statements_write_are_known(string sql, string expected)
    {
        ResultsWrite(sql, 0, 1).ShouldBe(expected);
    }

    /// <summary>From the 64th result on, one mark stands for them all: a write among them is known at each.</summary>
    [Test]
    public void A_write_past_the_64th_result_is_known()
    {
        var sql = string.Concat(Enumerable.Repeat("SELECT 1; ", 64)) + "INSERT INTO t VALUES (1) RETURNING x";

        ResultsWrite(sql, 0, 63, 64).ShouldBe("False,True,True");
    }

    /// <summary>A statement not prepared yet past the 64th result marks only the last mark, not those before it.</summary>
    [Test]
    public void A_statement_not_prepared_yet_past_the_64th_result_marks_only_the_results_from_the_64th_on()
    {
        var sql = string.Concat(Enumerable.Repeat("SELECT 1; ", 64)) + "CREATE TABLE u (y); INSERT INTO u VALUES (1) RETURNING y";

        ResultsWrite(sql, 0, 62, 63, 64).ShouldBe("False,False,True,True");
    }

    [TestCase("SELECT 1", "Read")]
    [TestCase("SELECT x FROM t; SELECT count(*) FROM t;", "Read")]
    [TestCase("  -- only a comment\n", "Read")]
    [TestCase("INSERT INTO t VALUES (1)", "Write")]
    [TestCase("SELECT 1; UPDATE t SET x = 2", "Write")]
    [TestCase("INSERT INTO t VALUES (1) RETURNING x", "Write")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1)", "Write")]
    [TestCase("CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM t WHERE x < 0; END", "Write")]
    [TestCase("BEGIN", "Standalone")]
    [TestCase("  /* c */ -- d\n commit;", "Standalone")]
    [TestCase("PRAGMA user_version = 3", "Standalone")]
    [TestCase("VACUUM", "Standalone")]
    [TestCase("\tCOMMIT", "Standalone")]
    [TestCase("--comment\nVACUUM", "Standalone")]
    [TestCase("savepoint s", "Standalone")]
    [TestCase("BEGIN; INSERT INTO t VALUES (1); COMMIT;", "Unprotected")]
    // SQLite calls these read-only: after a write they must still keep the batch out of a transaction of the library's.
    [TestCase("INSERT INTO t VALUES (1); END", "Unprotected")]
    [TestCase("INSERT INTO t VALUES (1); ROLLBACK", "Unprotected")]
    [TestCase("INSERT INTO t VALUES (1); RELEASE s", "Unprotected")]
    [TestCase("INSERT INTO t VALUES (1); DETACH d", "Unprotected")]
    [TestCase("INSERT INTO t VALUES (1); SAVEPOINT s", "Unprotected")]
    [TestCase("INSERT INTO t VALUES (1);\r\n\tCOMMIT", "Unprotected")]
    [TestCase("INSERT INTO t VALUES (1); COMMIT--done\n", "Unprotected")]
    // SQLite ends a comment at the first */ after its /*: the star of "/*/" opens it, it does not close it.
    [TestCase("/*/ a comment */ VACUUM", "Standalone")]
    [TestCase("INSERT INTO t VALUES (1); /*/ ; */ COMMIT", "Unprotected")]
    [TestCase("INSERT INTO t VALUES (1); PRAGMA user_version = 4", "Unprotected")]
    // The second statement of each of these cannot be prepared before the first has run.
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1); PRAGMA user_version = 5", "Unprotected")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1);/**/COMMIT; INSERT INTO t VALUES (2)", "Unprotected")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1);\fCOMMIT", "Unprotected")]
    [TestCase("CREATE TABLE u (y); ATTACH (SELECT y FROM u) AS a", "Unprotected")]
    [TestCase("CREATE TABLE u (y); CREATE TRIGGER tr AFTER INSERT ON u BEGIN SELECT 1; END; INSERT INTO u VALUES (1)", "Write")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u SELECT CASE WHEN x > 0 THEN 1 END FROM t", "Write")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES ('; COMMIT; BEGIN'); -- END\n", "Write")]
    [TestCase("PRAGMA user_version = 'a;b'; SELECT 1", "Unprotected")]
    // SQLite ends a -- comment only at a newline, and runs one not ended, or a /* one not closed, to the end of the
    // text: a keyword in them starts no statement.
    [TestCase("SELECT 1; --PRAGMA user_version = 7", "Read")]
    [TestCase("SELECT 1; /*PRAGMA user_version = 7", "Read")]
    [TestCase("SELECT 1; -- a line ended the old way\rPRAGMA user_version = 7\n", "Read")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1); --COMMIT", "Write")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1); /* COMMIT", "Write")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1); -- x\rCOMMIT\n", "Write")]
    [TestCase(";; PRAGMA foreign_keys(0)", "Standalone")]
    // An EXPLAIN runs nothing of the statement it explains (before, one of a write was a write, waiting at the write gate).
    [TestCase("EXPLAIN INSERT INTO t VALUES (1)", "Read")]
    [TestCase(" explain query plan DELETE FROM t; SELECT 1", "Read")]
    public void Commands_are_classified_by_what_their_statements_do(string sql, string expected)
    {
        new CommandClassifier().Classify(_connection.Handle!, sql).ToString().ShouldBe(expected);
    }

    // The first statement cannot be prepared: the command fails with SQLite's error before it runs anything.
    [TestCase("SELECT * FROM itme", "Write", "no such table: itme")]
    [TestCase("SELEC x FROM t; INSERT INTO t VALUES (1)", "Write", "near \"SELEC\": syntax error")]
    [TestCase("CREATE TABLE t (y)", "Write", "table t already exists")]
    [TestCase(" -- c\n INSERT INTO nowhere VALUES (1); COMMIT", "Unprotected", "no such table: nowhere")]
    // A later one may depend on an earlier statement: no error.
    [TestCase("PRAGMA user_version = 6; SELEC 1", "Unprotected", null)]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1)", "Write", null)]
    public void A_first_statement_that_cannot_be_prepared_gives_SQLites_error(string sql, string expected, string? error)
    {
        new CommandClassifier().Classify(_connection.Handle!, sql, out var invalid, out var final).ToString().ShouldBe(expected);

        invalid?.Message.ShouldBe($"SQLite Error 1: '{error}'.");
        (invalid is null).ShouldBe(error is null);
        final.ShouldBeFalse(); // classified again next time, against the schema of then
    }

    [TestCase("CREATE TEMP TABLE u (y)", "TempWrite")]
    [TestCase("INSERT INTO temp.tt SELECT x FROM t", "TempWrite")]
    [TestCase("SELECT count(*) FROM t; DELETE FROM tt; INSERT INTO tt VALUES (1) RETURNING y", "TempWrite")]
    [TestCase("DROP TABLE tt", "TempWrite")]
    [TestCase("CREATE TEMP TRIGGER tr AFTER INSERT ON tt BEGIN INSERT INTO main.t VALUES (new.y); END", "TempWrite")]
    [TestCase("INSERT INTO tt VALUES (1); INSERT INTO t VALUES (1)", "Write")]
    [TestCase("INSERT INTO t SELECT y FROM tt", "Write")]
    // The INSERT cannot be prepared before the table exists: the batch counts as a write.
    [TestCase("CREATE TEMP TABLE u (y); INSERT INTO u VALUES (1)", "Write")]
    // A write after a statement that changes the temp schema may write the database once that has run (here the
    // trigger makes the INSERT write it; see also the next test): prepared before, it looks temp-only. A read after
    // one cannot write.
    [TestCase("CREATE TEMP TRIGGER tr AFTER INSERT ON tt BEGIN INSERT INTO main.t VALUES (new.y); END; INSERT INTO tt VALUES (1)", "Write")]
    [TestCase("CREATE TEMP TABLE u (y); SELECT count(*) FROM tt", "TempWrite")]
    public void Commands_writing_only_temporary_tables_are_told_apart(string sql, string expected)
    {
        using (var command = _connection.CreateCommand())
        {
            command.CommandText = "CREATE TEMP TABLE tt (y)";
            command.ExecuteNonQuery();
        }

        new CommandClassifier().Classify(_connection.Handle!, sql).ToString().ShouldBe(expected);
    }

    /// <summary>
    /// As above: dropping (or renaming) a temporary table that hides a table of the database uncovers it for the
    /// statements after it, so the batch writes the database (a review's finding: it ran as temp-only, without
    /// the write gate).
    /// </summary>
    [TestCase("DROP TABLE t; INSERT INTO t VALUES (1)")]
    [TestCase("ALTER TABLE temp.t RENAME TO u; INSERT INTO t VALUES (1)")]
    public void A_write_after_dropping_the_temporary_table_that_hid_the_databases_is_a_write(string sql)
    {
        using (var command = _connection.CreateCommand())
        {
            command.CommandText = "CREATE TEMP TABLE t (x)";
            command.ExecuteNonQuery();
        }

        new CommandClassifier().Classify(_connection.Handle!, sql).ShouldBe(CommandKind.Write);
    }

    /// <summary>
    /// Only a batch that writes the temp database and nothing else (no write to the database, no statement that must
    /// run outside a transaction) depends on the connection's temp schema: any other is kept.
    /// </summary>
    [TestCase("INSERT INTO tt VALUES (1); INSERT INTO t VALUES (1)", "Write", true)]
    [TestCase("INSERT INTO tt VALUES (1); SAVEPOINT s", "Unprotected", true)]
    [TestCase("INSERT INTO tt VALUES (1)", "TempWrite", false)]
    public void A_batch_that_also_writes_a_temporary_table_is_kept_unless_it_writes_only_that(string sql, string expected, bool kept)
    {
        using (var command = _connection.CreateCommand())
        {
            command.CommandText = "CREATE TEMP TABLE tt (y)";
            command.ExecuteNonQuery();
        }

        var classifier = new CommandClassifier();
        classifier.Classify(_connection.Handle!, sql, out _, out var final).ToString().ShouldBe(expected);

        final.ShouldBe(kept);
        classifier.Keeps(sql).ShouldBe(kept);
    }

    /// <summary>
    /// A CREATE, DROP or ANALYZE is looked at on a connection with no temporary table or trigger (a temporary view
    /// alone): a temporary table (in any case) writes only the temp database, as does dropping that view or analyzing
    /// temp, and a table of an attached database writes that database.
    /// </summary>
    [TestCase("create temp table u (y)", "TempWrite")]
    [TestCase("CREATE TABLE a.u (y)", "Write")]
    [TestCase("DROP VIEW v", "TempWrite")]
    [TestCase("analyze temp", "TempWrite")]
    public void A_CREATE_writes_only_the_temp_database_when_it_creates_a_temporary_table(string sql, string expected)
    {
        using (var command = _connection.CreateCommand())
        {
            command.CommandText = "ATTACH ':memory:' AS a; CREATE TEMP VIEW v AS SELECT 1";
            command.ExecuteNonQuery();
        }

        new CommandClassifier().Classify(_connection.Handle!, sql).ToString().ShouldBe(expected);
    }

    [Test]
    public void A_write_to_a_temporary_table_whose_trigger_writes_the_database_is_a_write()
    {
        using (var command = _connection.CreateCommand())
        {
            command.CommandText = "CREATE TEMP TABLE tt (y); CREATE TEMP TRIGGER tr AFTER INSERT ON tt BEGIN INSERT INTO main.t VALUES (new.y); END";
            command.ExecuteNonQuery();
        }

        new CommandClassifier().Classify(_connection.Handle!, "INSERT INTO tt VALUES (1)").ShouldBe(CommandKind.Write);
    }

    [Test]
    public void Classifying_a_PRAGMA_or_its_EXPLAIN_does_not_apply_it()
    {
        using (var on = _connection.CreateCommand())
        {
            on.CommandText = "PRAGMA foreign_keys = ON";
            on.ExecuteNonQuery();
        }

        var classifier = new CommandClassifier();
        classifier.Classify(_connection.Handle!, "INSERT INTO t VALUES (1); PRAGMA foreign_keys = OFF").ShouldBe(CommandKind.Unprotected);
        classifier.Classify(_connection.Handle!, "PRAGMA foreign_keys(0)").ShouldBe(CommandKind.Standalone);
        classifier.Classify(_connection.Handle!, "INSERT INTO t VALUES (1); EXPLAIN PRAGMA foreign_keys = OFF").ShouldBe(CommandKind.Unprotected);
        classifier.Classify(_connection.Handle!, "/* c */ explain query  plan pragma foreign_keys = OFF").ShouldBe(CommandKind.Standalone);

        using var read = _connection.CreateCommand();
        read.CommandText = "PRAGMA foreign_keys";
        read.ExecuteScalar().ShouldBe(1L); // SQLite applies such a setting as it compiles it
    }

    /// <summary>Statements that set a savepoint, or attach a database, are found wherever they are in a batch, in any case.</summary>
    [TestCase("SAVEPOINT s", true, false)]
    [TestCase("INSERT INTO t VALUES (1); savepoint s", true, false)]
    [TestCase("SELECT 'SAVEPOINT s; ATTACH'; RELEASE s", false, false)]
    [TestCase("SELECT 1; attach ':memory:' AS a", false, true)]
    [TestCase("DETACH a; /* ; */ ATTACH ':memory:' AS a", false, true)]
    [TestCase("SELECT 1;\nATTACH\n':memory:' AS a", false, true)]
    public void Savepoints_and_attachments_are_found_in_any_statement(string sql, bool setsSavepoint, bool attaches)
    {
        CommandClassifier.SetsSavepoint(sql).ShouldBe(setsSavepoint);
        CommandClassifier.Attaches(sql).ShouldBe(attaches);
    }

    [TestCase("DROP TRIGGER IF EXISTS tr; SELECT 1", "SELECT 1", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END")]
    [TestCase("CREATE TRIGGER IF NOT EXISTS tr AFTER INSERT ON t BEGIN SELECT 1; END", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END", "DROP TRIGGER tr")]
    [TestCase("REINDEX", "SELECT 1", "CREATE INDEX i ON t (x)")]
    [TestCase("drop trigger if exists tr", "SELECT 1", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END")]
    [TestCase("SELECT 1; DROP TRIGGER IF EXISTS tr", "SELECT 1", "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END")]
    public void A_statement_the_schema_of_the_moment_makes_read_only_is_classified_afresh_once_the_schema_changes(string sql, string before, string change)
    {
        using (var command = _connection.CreateCommand())
        {
            command.CommandText = before;
            command.ExecuteNonQuery();
        }

        var classifier = new CommandClassifier();
        classifier.Classify(_connection.Handle!, sql).ShouldBe(CommandKind.Read); // nothing to drop, or already there

        using (var command = _connection.CreateCommand())
        {
            command.CommandText = change;
            command.ExecuteNonQuery();
        }

        classifier.Classify(_connection.Handle!, sql).ShouldBe(CommandKind.Write);
    }

    /// <summary>
    /// The classifications kept per data source stay bounded in texts and characters, and a text that would take a
    /// sixteenth of them is not kept. Before, 4,096 texts of any length were kept for the data source's
    /// life (a bug hunt: 95 MiB for 500 texts of 100,000 characters), and once 4,096 one-off texts (literals spliced
    /// in) had filled it, every new text was prepared to classify it at each of its executions.
    /// </summary>
    [Test]
    public void Kept_classifications_stay_bounded_and_a_new_text_is_kept_once_the_cache_filled_with_one_off_texts()
    {
        var classifier = new CommandClassifier();
        var padding = new string(' ', 10_000);
        for (var i = 0; i < 600; i++)
        {
            classifier.Classify(_connection.Handle!, $"SELECT {i}{padding}");
            classifier.Kept.Characters.ShouldBeLessThanOrEqualTo(4 * 1024 * 1024);
        }

        var longer = "SELECT 1" + new string(' ', 300_000); // past a sixteenth of the 4 Mi characters
        classifier.Classify(_connection.Handle!, longer);
        classifier.Keeps(longer).ShouldBeFalse();

        var most = 0;
        for (var i = 0; i < 5000; i++)
        {
            classifier.Classify(_connection.Handle!, $"SELECT {i}");
            most = Math.Max(most, classifier.Kept.Texts);
        }

        most.ShouldBe(4096);
        const string New = "SELECT 'new'";
        classifier.Classify(_connection.Handle!, New);
        classifier.Keeps(New).ShouldBeTrue(); // its next executions find it
    }

    [Test]
    public void A_text_of_a_sixteenth_of_the_kept_characters_is_kept_and_found_classified_for_good()
    {
        var classifier = new CommandClassifier();
        var sixteenth = "SELECT 1" + new string(' ', (4 * 1024 * 1024 / 16) - 8);

        classifier.Classify(_connection.Handle!, sixteenth);
        classifier.Keeps(sixteenth).ShouldBeTrue();

        classifier.Classify(_connection.Handle!, sixteenth, out _, out var final).ShouldBe(CommandKind.Read);
        final.ShouldBeTrue();
    }

    /// <summary>
    /// The bounds count characters, in any script: sixteen texts of a sixteenth of the kept characters each (a letter
    /// of two UTF-8 bytes in each) are all kept, filling the cache exactly, and the next text starts it over.
    /// </summary>
    [Test]
    public void Texts_filling_the_kept_characters_exactly_are_all_kept()
    {
        var classifier = new CommandClassifier();
        var texts = Enumerable.Range(0, 16).Select(i => $"SELECT 'é{i:D2}'".PadRight(4 * 1024 * 1024 / 16)).ToList();

        foreach (var text in texts)
        {
            classifier.Classify(_connection.Handle!, text);
        }

        texts.ShouldAllBe(text => classifier.Keeps(text));
        classifier.Kept.ShouldBe((16, 4L * 1024 * 1024));

        classifier.Classify(_connection.Handle!, "SELECT 'é'");
        classifier.Kept.Texts.ShouldBe(1);
    }
}
