using System.Data.Common;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using SqliteSaver.Data.Configuration;

namespace SqliteSaver.Data;

/// <summary>Registers SqliteSaver.Data with an <see cref="IServiceCollection"/>.</summary>
public static class SqliteSaverServiceCollectionExtensions
{
    /// <summary>
    /// Registers a <see cref="SaverDataSource"/> built from <paramref name="connectionString"/> as a singleton, both as
    /// itself and as <see cref="DbDataSource"/>, and connections from it as transient <see cref="SaverDbConnection"/>
    /// and <see cref="DbConnection"/> services. The container disposes the data source, closing its connections, when
    /// it is disposed itself. The container's <see cref="ILoggerFactory"/>, if it has one, is used for logging. Resolve
    /// connections from a scope (as ASP.NET Core does for each request): the container keeps each transient connection
    /// it creates until its scope ends. Calling this again does not replace an earlier registration.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="connectionString">The connection string; see <see cref="SaverConnectionStringBuilder"/> for its keywords.</param>
    /// <param name="configure">Sets what a connection string cannot carry: a name, an initializer, a retry strategy.</param>
    /// <returns>The service collection.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="services"/> or <paramref name="connectionString"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// A keyword is unknown or a value is invalid. Without <paramref name="configure"/>, also a string the data source
    /// would refuse as a whole: no Data Source, a <c>file:</c> URI with a relative path, Min Pool Size above Max Pool
    /// Size. With it, which may still change the string, those are reported when the data source is first resolved.
    /// </exception>
    public static IServiceCollection AddSqliteSaverDataSource(
        this IServiceCollection services,
        string connectionString,
        Action<SaverDataSourceBuilder>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (connectionString is null)
        {
            // Most often configuration.GetConnectionString(name) with no such name.
            throw new ArgumentNullException(
                nameof(connectionString),
                "The connection string is null. IConfiguration.GetConnectionString returns null when the configuration has no entry of that name under ConnectionStrings.");
        }

        // A bad string fails here, not at first use; configure may still complete or change it.
        if (configure is null)
        {
            _ = SaverOptions.Parse(connectionString);
        }
        else
        {
            _ = new SaverConnectionStringBuilder(connectionString);
        }

        services.TryAddSingleton(provider =>
        {
            var builder = new SaverDataSourceBuilder(connectionString);
            if (provider.GetService<ILoggerFactory>() is { } loggerFactory)
            {
                builder.UseLoggerFactory(loggerFactory);
            }

            configure?.Invoke(builder);
            return builder.Build();
        });
        services.TryAddSingleton<DbDataSource>(static provider => provider.GetRequiredService<SaverDataSource>());
        services.TryAddTransient(static provider => provider.GetRequiredService<SaverDataSource>().CreateConnection());
        services.TryAddTransient<DbConnection>(static provider => provider.GetRequiredService<SaverDbConnection>());
        return services;
    }
}
