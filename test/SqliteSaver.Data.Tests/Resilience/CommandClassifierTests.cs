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
    [TestCase("BEGIN; INSERT INTO t VALUES (1); COMMIT;", "Unprotected")]
    [TestCase("INSERT INTO t VALUES (1); PRAGMA user_version = 4", "Unprotected")]
    // The second statement of each of these cannot be prepared before the first has run.
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1); PRAGMA user_version = 5", "Unprotected")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1);/**/COMMIT; INSERT INTO t VALUES (2)", "Unprotected")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES (1);\fCOMMIT", "Unprotected")]
    [TestCase("CREATE TABLE u (y); CREATE TRIGGER tr AFTER INSERT ON u BEGIN SELECT 1; END; INSERT INTO u VALUES (1)", "Write")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u SELECT CASE WHEN x > 0 THEN 1 END FROM t", "Write")]
    [TestCase("CREATE TABLE u (y); INSERT INTO u VALUES ('; COMMIT; BEGIN'); -- END\n", "Write")]
    public void Commands_are_classified_by_what_their_statements_do(string sql, string expected)
    {
        new CommandClassifier().Classify(_connection.Handle!, sql).ToString().ShouldBe(expected);
    }
}
