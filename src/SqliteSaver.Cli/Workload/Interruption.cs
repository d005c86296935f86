using System.Runtime.InteropServices;

namespace SqliteSaver.Cli.Workload;

/// <summary>
/// Turns the first SIGINT (Ctrl-C) or SIGTERM while a workload runs into a cancellation, so that the workload stops
/// early and the command still cleans up (drops its table, deletes its temporary folder). A second signal ends the
/// process as usual.
/// </summary>
internal sealed class Interruption : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly PosixSignalRegistration[] _registrations;

    public Interruption()
        => _registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal), PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal)];

    /// <summary>Cancelled by the first signal.</summary>
    public CancellationToken Token => _source.Token;

    public bool Interrupted => _source.IsCancellationRequested;

    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }

        _source.Dispose();
    }

    private void OnSignal(PosixSignalContext context)
    {
        if (_source.IsCancellationRequested)
        {
            return; // the second one: the process ends
        }

        context.Cancel = true;
        try
        {
            _source.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The workload ended and disposed this as the signal came.
        }
    }
}
