using Polly;
using SqliteSaver.Data.Polly;

namespace SqliteSaver.Data;

/// <summary>Hands SqliteSaver.Data's retries to a Polly v8 <see cref="ResiliencePipeline"/>.</summary>
public static class PollyDataSourceBuilderExtensions
{
    /// <summary>
    /// Uses <paramref name="pipeline"/> in place of the built-in backoff: its retry count, delays and predicates
    /// decide when work that failed is run again, and the connection string's Retry, Base Delay, Max Delay and
    /// Jitter are ignored. The library still decides what is safe to run again (whole autocommit writes rolled back,
    /// <c>BEGIN IMMEDIATE</c>, whole units of work), so have the pipeline handle only transient errors:
    /// <c>new PredicateBuilder().Handle&lt;SqliteException&gt;(SaverRetryStrategy.IsTransient)</c>. Leave strategies
    /// that hold a permit while an attempt runs (a concurrency limiter) out of it: writes take the library's write
    /// gate before the pipeline runs and units of work inside it, so the two can wait for each other until a
    /// CommandTimeout runs out.
    /// </summary>
    /// <param name="builder">The data source builder.</param>
    /// <param name="pipeline">The pipeline that runs every retryable piece of work.</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> or <paramref name="pipeline"/> is null.</exception>
    public static SaverDataSourceBuilder UseResiliencePipeline(this SaverDataSourceBuilder builder, ResiliencePipeline pipeline)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(pipeline);
        return builder.UseRetryStrategy(new PipelineRetryStrategy(pipeline));
    }
}
