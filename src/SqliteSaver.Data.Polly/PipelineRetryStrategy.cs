using Polly;

namespace SqliteSaver.Data.Polly;

/// <summary>Runs the library's retryable work through a Polly resilience pipeline instead of the built-in backoff.</summary>
internal sealed class PipelineRetryStrategy(ResiliencePipeline pipeline) : SaverRetryStrategy
{
    public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        => pipeline.Execute(attempt, state, cancellationToken);

    public override ValueTask<TResult> ExecuteAsync<TState, TResult>(
        Func<TState, CancellationToken, ValueTask<TResult>> attempt,
        TState state,
        CancellationToken cancellationToken)
        => pipeline.ExecuteAsync(attempt, state, cancellationToken);
}
