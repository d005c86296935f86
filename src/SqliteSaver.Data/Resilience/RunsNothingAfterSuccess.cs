namespace SqliteSaver.Data.Resilience;

/// <summary>
/// Wraps a retry strategy of the application's (a Polly pipeline, say) so that once an attempt has succeeded, any
/// further attempt the strategy asks for returns that attempt's result without running anything. The built-in policy
/// never asks for one, but a strategy that handles results too (Polly's <c>ShouldHandle</c> true for every outcome)
/// does: it ran a committed write again (applied twice or three times), or a <c>BEGIN IMMEDIATE</c> or the write of a
/// reader again, which failed inside the transaction the first attempt had left open, so that the connection's next
/// writes ran in that transaction and were lost as it closed. The strategy sees each result inside a
/// <see cref="Kept{T}"/>, which it cannot dispose (Polly disposes a result it handles before it retries): the reader
/// the attempt that succeeded returned stays open for the caller.
/// </summary>
internal sealed class RunsNothingAfterSuccess(SaverRetryStrategy strategy) : SaverRetryStrategy
{
    public override TResult Execute<TState, TResult>(Func<TState, CancellationToken, TResult> attempt, TState state, CancellationToken cancellationToken)
        => strategy.Execute(static (s, token) => s.Once.Run(s.Attempt, token), (Once: new Once<TState, TResult>(state), Attempt: attempt), cancellationToken).Value;

    public override async ValueTask<TResult> ExecuteAsync<TState, TResult>(
        Func<TState, CancellationToken, ValueTask<TResult>> attempt,
        TState state,
        CancellationToken cancellationToken)
        => (await strategy.ExecuteAsync(static (s, token) => s.Once.RunAsync(s.Attempt, token), (Once: new Once<TState, TResult>(state), Attempt: attempt), cancellationToken).ConfigureAwait(false)).Value;

    /// <summary>An attempt's result, as the strategy sees it: not disposable.</summary>
    private readonly record struct Kept<T>(T Value);

    /// <summary>Runs an attempt until one has succeeded; then returns what it returned.</summary>
    private sealed class Once<TState, TResult>(TState state)
    {
        private Kept<TResult>? _succeeded;

        public Kept<TResult> Run(Func<TState, CancellationToken, TResult> attempt, CancellationToken cancellationToken)
            => _succeeded ??= new Kept<TResult>(attempt(state, cancellationToken));

        public async ValueTask<Kept<TResult>> RunAsync(Func<TState, CancellationToken, ValueTask<TResult>> attempt, CancellationToken cancellationToken)
            => _succeeded ??= new Kept<TResult>(await attempt(state, cancellationToken).ConfigureAwait(false));
    }
}
