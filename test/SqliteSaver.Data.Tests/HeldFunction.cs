namespace SqliteSaver.Data.Tests;

/// <summary>
/// An application function, <c>hold()</c>, on an open connection's physical connection: a statement that calls it
/// stays in it, holding SQLite's connection mutex, until <see cref="Release"/> (an interrupt does not stop an
/// application function, and Dispose releases it too); <see cref="Holding"/> is set once a statement is in it.
/// </summary>
internal sealed class HeldFunction : IDisposable
{
    private readonly ManualResetEventSlim _released = new();

    public HeldFunction(SaverDbConnection connection)
        => connection.InnerConnection.CreateFunction("hold", () =>
        {
            Holding.Set();
            _released.Wait(TimeSpan.FromSeconds(30));
            return 1L;
        });

    public ManualResetEventSlim Holding { get; } = new();

    public void Release() => _released.Set();

    public void Dispose() => Release(); // the events stay usable: a held statement on another thread may still be leaving
}
