using System.Data.Common;
using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data;

/// <summary>
/// The ADO.NET provider factory: code that knows only <see cref="DbProviderFactory"/> gets pooled SQLite
/// connections by registering <see cref="Instance"/> under <see cref="InvariantName"/>.
/// </summary>
public sealed class SaverProviderFactory : DbProviderFactory
{
    /// <summary>The provider's invariant name for <see cref="DbProviderFactories.RegisterFactory(string, DbProviderFactory)"/>.</summary>
    public const string InvariantName = "SqliteSaver.Data";

    /// <summary>The single instance of the factory.</summary>
    public static readonly SaverProviderFactory Instance = new();

    private SaverProviderFactory()
    {
    }

    /// <summary>Creates a <see cref="SaverDbConnection"/>.</summary>
    /// <returns>A closed connection with no connection string.</returns>
    public override DbConnection CreateConnection() => new SaverDbConnection();

    /// <summary>Creates a <see cref="SaverDbCommand"/>.</summary>
    /// <returns>A command with no connection.</returns>
    public override DbCommand CreateCommand() => new SaverDbCommand();

    /// <summary>Creates a <see cref="SqliteParameter"/>.</summary>
    /// <returns>A new parameter.</returns>
    public override DbParameter CreateParameter() => new SqliteParameter();

    /// <summary>Creates a <see cref="SaverConnectionStringBuilder"/>.</summary>
    /// <returns>An empty builder.</returns>
    public override DbConnectionStringBuilder CreateConnectionStringBuilder() => new SaverConnectionStringBuilder();

    /// <summary>Batches are not supported (<see cref="DbProviderFactory.CanCreateBatch"/> is false).</summary>
    /// <returns>Nothing: it always throws.</returns>
    /// <exception cref="NotSupportedException">Always.</exception>
    public override DbBatch CreateBatch() => throw new NotSupportedException(SaverDbConnection.NoBatches);

    /// <summary>Batches are not supported (<see cref="DbProviderFactory.CanCreateBatch"/> is false).</summary>
    /// <returns>Nothing: it always throws.</returns>
    /// <exception cref="NotSupportedException">Always.</exception>
    public override DbBatchCommand CreateBatchCommand() => throw new NotSupportedException(SaverDbConnection.NoBatches);

    /// <summary>
    /// Creates a <see cref="SaverDataSource"/> whose connections rent from the process-wide pool of the connection
    /// string, as those of <see cref="CreateConnection"/> do (and as Microsoft.Data.Sqlite's data source does from its
    /// pool): disposing it does nothing, and it need not be disposed. For a pooled <c>:memory:</c> database it has a pool,
    /// and so a database, of its own, which disposing it closes. <see cref="SaverDataSource.Create(string)"/> makes one
    /// with a pool of its own.
    /// </summary>
    /// <param name="connectionString">The connection string.</param>
    /// <returns>A new data source on the shared pool.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="connectionString"/> is null.</exception>
    /// <exception cref="ArgumentException">A keyword is unknown or a value is invalid.</exception>
    public override DbDataSource CreateDataSource(string connectionString)
    {
        ArgumentNullException.ThrowIfNull(connectionString);
        return SaverDataSource.ForFactory(connectionString);
    }
}
