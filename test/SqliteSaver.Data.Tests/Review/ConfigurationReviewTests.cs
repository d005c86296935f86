using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Review;

/// <summary>Defects found by the configuration review: each test fails on the code as it was reviewed.</summary>
public class ConfigurationReviewTests : DatabaseTest
{
    [Test]
    public void Without_pooling_an_explicit_Max_Pool_Size_of_16_and_no_limit_do_not_share_a_pool()
    {
        // README: "With Pooling=false no limit unless given". These two strings differ in meaning, so they must not
        // share a data source, yet both have the pool key "Max Pool Size=16" (the default is written into the key).
        var limited = Folder.ConnectionString("Pooling=False;Max Pool Size=16");
        var unlimited = Folder.ConnectionString("Pooling=False");

        SaverDataSource.GetShared(limited).Statistics.MaxPoolSize.ShouldBe(16);

        SaverDataSource.GetShared(unlimited).Statistics.MaxPoolSize.ShouldBe(int.MaxValue);
    }

    [Test]
    public void Setting_ConnectionString_on_an_existing_builder_refuses_an_unknown_keyword_with_an_empty_value()
    {
        // The constructor refuses "Max Pool Sise=" (ConnectionStringBuilderTests), but the same text set through the
        // ConnectionString property, as code given a builder by SaverProviderFactory.CreateConnectionStringBuilder()
        // or SaverDataSourceBuilder.ConnectionStringBuilder does, is dropped without a word.
        var builder = SaverProviderFactory.Instance.CreateConnectionStringBuilder();

        var error = Should.Throw<ArgumentException>(() => builder.ConnectionString = "Data Source=a.db;Max Pool Sise=");

        error.Message.ShouldContain("'Max Pool Sise' is not supported");
    }

    [Test]
    public void A_file_uri_whose_path_decodes_to_a_NUL_is_refused_with_an_error_that_names_Data_Source_and_the_value()
    {
        // SaverOptions.FileOf percent-decodes the path and hands it to Path.GetFullPath, whose own error
        // ("Null character in path.", parameter 'path') neither names the keyword nor shows the value.
        var uri = $"file:{Folder.Path}/a%00b.db";

        var error = Should.Throw<ArgumentException>(() => new SaverDbConnection($"Data Source={uri}"));

        error.ParamName.ShouldBe("Data Source");
        error.Message.ShouldContain(uri);
    }

    [Test]
    public void Equivalent_spellings_of_a_file_uri_share_one_pool()
    {
        // file:/path and file:///path (an empty authority) name the same file for SQLite and for the write gate, but
        // the pool key holds the URI as given, so each spelling gets a pool of its own: Max Pool Size=1 then allows
        // two connections to the file, and ClearPool through one spelling leaves the other's connections open.
        var path = Folder.File();
        using var first = new SaverDbConnection($"Data Source=file:{path};Max Pool Size=1");
        using var second = new SaverDbConnection($"Data Source=file://{path};Max Pool Size=1");
        first.Open();

        SaverDataSource.GetShared(second.ConnectionString).ShouldBeSameAs(SaverDataSource.GetShared(first.ConnectionString));
    }

    [Test]
    public void Mode_ReadOnly_is_not_silently_dropped_for_a_pooled_in_memory_database()
    {
        // With Pooling=False, as with Microsoft.Data.Sqlite, "Data Source=:memory:;Mode=ReadOnly" opens a read-only
        // database and a write fails with SQLITE_READONLY. Pooled, SaverOptions.InnerConnectionString replaces the
        // data source by a memdb URI and sets Mode=ReadWriteCreate, so the keyword is dropped and the write succeeds.
        // Either honour it or refuse the combination with an ArgumentException naming Mode.
        var error = Should.Throw<Exception>(() =>
        {
            using var connection = new SaverDbConnection("Data Source=:memory:;Mode=ReadOnly");
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "CREATE TABLE t (x)";
            command.ExecuteNonQuery();
        });

        (error is ArgumentException { ParamName: "Mode" } or SqliteException { SqliteErrorCode: 8 }).ShouldBeTrue(error.ToString());
    }
}
