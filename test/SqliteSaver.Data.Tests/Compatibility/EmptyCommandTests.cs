using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>A command with no statement in its text runs nothing, as with Microsoft.Data.Sqlite.</summary>
public class EmptyCommandTests : DatabaseTest
{
    [TestCase(null)]
    [TestCase("")]
    [TestCase("   ")]
    [TestCase("-- a comment")]
    [TestCase(";")]
    public void A_command_without_a_statement_runs_nothing_as_with_MDS(string? text)
    {
        using var mds = new SqliteConnection($"Data Source={Folder.File("mds.db")};Pooling=False");
        mds.Open();
        using var saver = new SaverDbConnection(Folder.ConnectionString());
        saver.Open();

        Run(saver, text).ShouldBe(Run(mds, text));
        Run(saver, text).ShouldBe((-1, null, 0, false));
    }

    private static (int Affected, object? Scalar, int FieldCount, bool Read) Run(DbConnection connection, string? text)
    {
        using var command = connection.CreateCommand();
        command.CommandText = text;
        var affected = command.ExecuteNonQuery();
        var scalar = command.ExecuteScalar();
        using var reader = command.ExecuteReader();
        return (affected, scalar, reader.FieldCount, reader.Read());
    }
}
