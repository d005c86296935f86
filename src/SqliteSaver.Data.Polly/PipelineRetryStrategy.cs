using Polly;
using SqliteSaver.Data.Threading;

namespace SqliteSaver.Data.Polly;

/// <summary>Runs the library's retryable work through a Polly resilience pipeline instead of the built-in backoff.</summary>
internal sealed class PipelineRetryStrategy(ResiliencePipeline pipeline) : SaverRetryStrategy
{
    // Polly runs a synchronous execution through its asynchronous strategies and blocks on them: their callbacks
    // (OnRetry and the like) must not continue on the caller's single-threaded context, which the caller holds.
    public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        => Synchronously.WithoutContext(
            static s => s.Pipeline.Execute(s.Attempt, s.State, s.Token),
            (Pipeline: pipeline, Attempt: attempt, State: state, Token: cancellationToken));

    public override ValueTask<TResult> ExecuteAsync<TState, TResult>(
        Func<TState, CancellationToken, ValueTask<TResult>> attempt,
        TState state,
        CancellationToken cancellationToken)
        => pipeline.ExecuteAsync(attempt, state, cancellationToken);
}
