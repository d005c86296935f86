namespace SqliteSaver.Data.Pooling;

/// <summary>
/// No pooled connection came free within Pool Timeout: a <see cref="TimeoutException"/> of the pool's own, so that
/// the health check can tell it from one a connection initializer throws.
/// </summary>
/// <param name="message">What timed out, naming Max Pool Size and Pool Timeout.</param>
internal sealed class PoolTimeoutException(string message) : TimeoutException(message);
