using Microsoft.Extensions.DependencyInjection;
using Shouldly;

namespace SqliteSaver.Data.DependencyInjection.Tests.Review;

/// <summary>Defects found by the configuration review: each test fails on the code as it was reviewed.</summary>
public class ConfigurationReviewTests
{
    [TestCase("Max Pool Size=3")] // no Data Source: "An empty one is refused" (README)
    [TestCase("Data Source=file:relative.db")] // "A file: URI needs a full path"
    public void A_connection_string_the_data_source_refuses_is_refused_at_registration(string connectionString)
    {
        // AddSqliteSaverDataSource documents an ArgumentException for an invalid value, deferring only values that
        // contradict each other to the first resolution; it checks the string with SaverConnectionStringBuilder
        // alone, so these reach the container and fail only when the data source is first resolved.
        var services = new ServiceCollection();

        var error = Should.Throw<ArgumentException>(() => services.AddSqliteSaverDataSource(connectionString));

        error.ParamName.ShouldBe("Data Source");
    }
}
