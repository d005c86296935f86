using System.Data.Common;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// GetBytes, GetChars, GetStream and GetFieldValue&lt;Stream&gt; on a column that is an expression, in a result with
/// another such column (<c>SELECT x'0102', 1</c>, parameters, a CASE): Microsoft.Data.Sqlite 10.0.15 ends the process
/// there with SIGSEGV (a differential trial against it found it with a NULL; reproduced with it alone, outside the
/// repository, for any value: exit code 139). Through SqliteSaver they read the value, as Microsoft.Data.Sqlite does
/// for a column it finds no rowid for, and a NULL throws its InvalidOperationException. Without that, this test ends
/// the test run.
/// </summary>
public class ExpressionBlobReadTests : DatabaseTest
{
    [TestCase("GetBytes")]
    [TestCase("GetBytes into a buffer")]
    [TestCase("GetBytes from offset 1")]
    [TestCase("GetChars")]
    [TestCase("GetChars into a buffer")]
    [TestCase("GetStream")]
    [TestCase("GetFieldValue<Stream>")]
    public void An_expression_column_reads_its_value_instead_of_ending_the_process(string read)
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (b BLOB); INSERT INTO t VALUES (NULL), (CAST('xyz' AS BLOB))");

        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT CAST('abc' AS BLOB), 1"; // no table at all
            using var reader = command.ExecuteReader();
            reader.Read().ShouldBeTrue();
            Read(reader, read).ShouldBe(Expected(read, "abc"));
        }

        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT CASE WHEN b IS NULL THEN NULL ELSE b END, 1 FROM t ORDER BY rowid";
            using var reader = command.ExecuteReader();
            reader.Read().ShouldBeTrue();
            Should.Throw<InvalidOperationException>(() => Read(reader, read)).Message.ShouldContain("NULL");
            reader.Read().ShouldBeTrue();
            Read(reader, read).ShouldBe(Expected(read, "xyz"));
        }

        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT rowid, b FROM t WHERE b IS NOT NULL"; // a table's column, read as before
            using var reader = command.ExecuteReader();
            reader.Read().ShouldBeTrue();
            using var stream = reader.GetStream(1);
            stream.ShouldBeOfType<Microsoft.Data.Sqlite.SqliteBlob>(); // through SQLite's blob handle, not read whole
            new StreamReader(stream).ReadToEnd().ShouldBe("xyz");
        }
    }

    private static string Expected(string read, string value)
        => read switch
        {
            "GetBytes into a buffer" or "GetChars into a buffer" => value,
            "GetBytes from offset 1" => value[1..],
            _ => $"{value.Length}",
        };

    private static string Read(DbDataReader reader, string read)
    {
        var bytes = new byte[8];
        var chars = new char[8];
        return read switch
        {
            "GetBytes" => $"{reader.GetBytes(0, 0, null, 0, 0)}",
            "GetBytes into a buffer" => System.Text.Encoding.UTF8.GetString(bytes, 0, (int)reader.GetBytes(0, 0, bytes, 0, 8)),
            "GetBytes from offset 1" => System.Text.Encoding.UTF8.GetString(bytes, 0, (int)reader.GetBytes(0, 1, bytes, 0, 8)),
            "GetChars" => $"{reader.GetChars(0, 0, null, 0, 0)}",
            "GetChars into a buffer" => new string(chars, 0, (int)reader.GetChars(0, 0, chars, 0, 8)),
            "GetStream" => $"{reader.GetStream(0).Length}",
            _ => $"{reader.GetFieldValue<Stream>(0).Length}",
        };
    }
}
