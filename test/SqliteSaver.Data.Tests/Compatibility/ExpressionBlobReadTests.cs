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
    [TestCase("GetChars from offset 1")]
    [TestCase("GetStream")]
    [TestCase("GetFieldValue<Stream>")]
    [TestCase("GetTextReader")]
    [TestCase("GetFieldValue<TextReader>")]
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
            if (read.Contains("TextReader", StringComparison.Ordinal))
            {
                Read(reader, read).ShouldBe("0"); // a NULL reads as empty text, as Microsoft.Data.Sqlite has it
            }
            else
            {
                Should.Throw<InvalidOperationException>(() => Read(reader, read)).Message.ShouldContain("NULL");
            }

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

    /// <summary>
    /// A reader with no row (an empty result, or read to its end) while another reader of the connection is on a row
    /// of a table with as many columns: the running statement is the other's, whose columns are a table's. Before,
    /// the reader took them for its own and handed its expression column to Microsoft.Data.Sqlite: the process ended
    /// (a review of this change). It throws Microsoft.Data.Sqlite's error for a read without a row.
    /// </summary>
    [Test]
    public void A_reader_without_a_row_does_not_take_another_readers_columns_for_its_own()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (b BLOB); INSERT INTO t VALUES (x'0102')");
        using var empty = connection.CreateCommand();
        empty.CommandText = "SELECT x'01', 1 WHERE 0";
        using var emptyReader = empty.ExecuteReader();
        emptyReader.Read().ShouldBeFalse();
        using var other = connection.CreateCommand();
        other.CommandText = "SELECT rowid, b FROM t";
        using var otherReader = other.ExecuteReader();
        otherReader.Read().ShouldBeTrue();

        Should.Throw<InvalidOperationException>(() => emptyReader.GetBytes(0, 0, null, 0, 0));
        Should.Throw<InvalidOperationException>(() => emptyReader.GetStream(0));
        otherReader.GetBytes(1, 0, null, 0, 0).ShouldBe(2L);
    }

    /// <summary>
    /// As above, for a reader whose Read failed on its next row: it is on no row, and the running statement is the
    /// other reader's. Its expression column is not handed to Microsoft.Data.Sqlite by the other's table columns.
    /// </summary>
    [Test]
    public void A_reader_whose_read_failed_does_not_take_another_readers_columns_for_its_own()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (b BLOB); INSERT INTO t VALUES (x'0102')");
        using var failing = connection.CreateCommand();
        failing.CommandText = "SELECT CAST('abc' AS BLOB), CASE WHEN n = 2 THEN abs(-9223372036854775808) END FROM (SELECT 1 AS n UNION ALL SELECT 2)";
        using var failingReader = failing.ExecuteReader();
        failingReader.Read().ShouldBeTrue();
        Should.Throw<Microsoft.Data.Sqlite.SqliteException>(() => failingReader.Read()).Message.ShouldContain("integer overflow");
        using var other = connection.CreateCommand();
        other.CommandText = "SELECT rowid, b FROM t";
        using var otherReader = other.ExecuteReader();
        otherReader.Read().ShouldBeTrue();

        Should.Throw<InvalidOperationException>(() => failingReader.GetBytes(0, 0, null, 0, 0));
        otherReader.GetBytes(1, 0, null, 0, 0).ShouldBe(2L);
    }

    /// <summary>
    /// As above, for a reader on a row that moved to an empty next result: it is on no row again, and the running
    /// statement is the other reader's. The row it was on before NextResult is not taken for one of the new result.
    /// </summary>
    [Test]
    public void A_reader_moved_to_an_empty_next_result_does_not_take_another_readers_columns_for_its_own()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (b BLOB); INSERT INTO t VALUES (x'0102')");
        using var other = connection.CreateCommand();
        other.CommandText = "SELECT rowid, b FROM t";
        using var otherReader = other.ExecuteReader();
        otherReader.Read().ShouldBeTrue();
        using var moving = connection.CreateCommand();
        moving.CommandText = "SELECT 1, 2; SELECT x'01', 1 WHERE 0";
        using var movingReader = moving.ExecuteReader();
        movingReader.Read().ShouldBeTrue();

        movingReader.NextResult().ShouldBeTrue();

        Should.Throw<InvalidOperationException>(() => movingReader.GetBytes(0, 0, null, 0, 0));
        otherReader.GetBytes(1, 0, null, 0, 0).ShouldBe(2L);
    }

    /// <summary>
    /// Two readers on rows, with as many columns: which running statement is whose is not known, so an expression
    /// column is read by its value. Taking the newer reader's table columns for its own would hand the expression to
    /// Microsoft.Data.Sqlite, which ends the process.
    /// </summary>
    [Test]
    public void A_reader_beside_another_on_a_row_reads_its_expression_column_by_value()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (b BLOB); INSERT INTO t VALUES (x'0102')");
        using var expressions = connection.CreateCommand();
        expressions.CommandText = "SELECT CAST('abc' AS BLOB), 1";
        using var expressionsReader = expressions.ExecuteReader();
        expressionsReader.Read().ShouldBeTrue();
        using var table = connection.CreateCommand();
        table.CommandText = "SELECT rowid, b FROM t";
        using var tableReader = table.ExecuteReader();
        tableReader.Read().ShouldBeTrue();

        expressionsReader.GetBytes(0, 0, null, 0, 0).ShouldBe(3L);
        tableReader.GetBytes(1, 0, null, 0, 0).ShouldBe(2L);
    }

    /// <summary>
    /// A writing reader on a row when its transaction commits: the commit runs the command's statements not reached
    /// and closes the SQLite reader under it. A read then throws Microsoft.Data.Sqlite's error for a closed reader,
    /// which names the read; before, it named FieldCount, which the caller never called (a review of this change).
    /// </summary>
    [TestCase("GetBytes")]
    [TestCase("GetChars")]
    [TestCase("GetStream")]
    [TestCase("GetTextReader")]
    public void A_read_after_the_transaction_closed_the_reader_under_it_names_the_read(string read)
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (b BLOB)");
        using var transaction = connection.BeginTransaction();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (x'0102'), (x'03') RETURNING b, 1";
        using var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();
        transaction.Commit();

        Should.Throw<InvalidOperationException>(() => Read(reader, read)).Message.ShouldBe($"Invalid attempt to call {read} when reader is closed.");
        ConnectionTests.Scalar(connection, "SELECT count(*) FROM t").ShouldBe(2L);
    }

    [Test]
    public void GetBytes_and_GetChars_of_an_expression_take_offsets_as_Microsoft_Data_Sqlite_does()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT CAST('abc' AS BLOB), 1";
        using var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();
        var bytes = new byte[4];
        var chars = new char[4];

        reader.GetBytes(0, 3, bytes, 0, 4).ShouldBe(0L); // at or past the end: nothing
        reader.GetBytes(0, 9, bytes, 0, 4).ShouldBe(0L);
        reader.GetChars(0, -1, chars, 0, 4).ShouldBe(3L); // a negative offset reads from the start
        Should.Throw<ArgumentOutOfRangeException>(() => reader.GetBytes(0, 0, bytes, 2, 4)); // the buffer is too small
        Should.Throw<ArgumentOutOfRangeException>(() => reader.GetChars(0, 4, chars, 0, 4)); // past the end of the text
        Should.Throw<ArgumentOutOfRangeException>(() => reader.GetBytes(2, 0, null, 0, 0)); // no such column: Microsoft.Data.Sqlite's error
        Should.Throw<ArgumentOutOfRangeException>(() => reader.GetChars(-1, 0, null, 0, 0));
    }

    /// <summary>
    /// A batch's next result set is told expression or table columns of its own: after a result of expressions, read by
    /// value, a table's column of the next is read through SQLite's blob handle, as Microsoft.Data.Sqlite reads it.
    /// </summary>
    [Test]
    public void The_next_result_sets_columns_are_told_by_value_or_not_afresh()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (b BLOB); INSERT INTO t VALUES (CAST('xyz' AS BLOB))");
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT CAST('abc' AS BLOB), 1; SELECT rowid, b FROM t";
        using var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();
        reader.GetStream(0).ShouldBeOfType<MemoryStream>().Dispose(); // an expression: its value

        reader.NextResult().ShouldBeTrue();
        reader.Read().ShouldBeTrue();

        using var stream = reader.GetStream(1);
        stream.ShouldBeOfType<Microsoft.Data.Sqlite.SqliteBlob>();
        new StreamReader(stream).ReadToEnd().ShouldBe("xyz");
    }

    /// <summary>An expression column's stream is read-only, as Microsoft.Data.Sqlite's stream of a value is.</summary>
    [TestCase("GetStream")]
    [TestCase("GetFieldValue<Stream>")]
    public void An_expression_columns_stream_cannot_be_written_as_with_MDS(string read)
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT CAST('abc' AS BLOB), 1";
        using var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();

        using var stream = read == "GetStream" ? reader.GetStream(0) : reader.GetFieldValue<Stream>(0);

        stream.CanWrite.ShouldBeFalse();
        Should.Throw<NotSupportedException>(() => stream.WriteByte(1));
    }

    private static string Expected(string read, string value)
        => read switch
        {
            "GetBytes into a buffer" or "GetChars into a buffer" => value,
            "GetBytes from offset 1" or "GetChars from offset 1" => value[1..],
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
            "GetChars from offset 1" => new string(chars, 0, (int)reader.GetChars(0, 1, chars, 0, 8)),
            "GetStream" => $"{reader.GetStream(0).Length}",
            "GetFieldValue<Stream>" => $"{reader.GetFieldValue<Stream>(0).Length}",
            "GetTextReader" => $"{reader.GetTextReader(0).ReadToEnd().Length}",
            _ => $"{reader.GetFieldValue<TextReader>(0).ReadToEnd().Length}",
        };
    }
}
