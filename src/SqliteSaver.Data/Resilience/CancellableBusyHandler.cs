using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Interop;
using SQLitePCL;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// SQLite's own busy handler, the one <c>sqlite3_busy_timeout</c> installs (sleeps of 1, 2, 5, 10 ... 100 ms, as
/// long as the timeout allows), except that each sleep is a wait on a <see cref="CancellationToken"/>: cancelling it
/// ends SQLite's wait at once, and the statement fails with SQLITE_BUSY. SQLite keeps the locks it holds while the
/// handler runs (the PENDING lock of a writer in rollback-journal mode, a checkpoint's wait for readers), so nothing
/// but the sleep changes. It is installed only for the length of a call with a token that can be cancelled: while it
/// is, SQLite reports a busy timeout of 0, so no statement that reads or sets <c>busy_timeout</c> may run under it.
/// </summary>
/// <remarks>
/// SQLitePCLRaw does not expose <c>sqlite3_busy_handler</c>, so this calls it in e_sqlite3 (see <see cref="ESqlite3"/>),
/// and is never installed unless <see cref="ESqlite3.Available"/>.
/// </remarks>
internal sealed class CancellableBusyHandler : IDisposable
{
    /// <summary>SQLite's sleeps, in milliseconds, for the first calls; the last one repeats.</summary>
    private static readonly int[] Delays = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];

    /// <summary>SQLite's time slept before each of the first calls, in milliseconds.</summary>
    private static readonly int[] Totals = [0, 1, 3, 8, 18, 33, 53, 78, 103, 128, 178, 228];

    private static readonly Callback OnBusyCallback = OnBusy;
    private static readonly IntPtr OnBusyPointer = Marshal.GetFunctionPointerForDelegate(OnBusyCallback);

    private GCHandle _self;
    private CancellationToken _token;
    private int _timeout;

    public CancellableBusyHandler() => _self = GCHandle.Alloc(this);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int Callback(IntPtr argument, int count);

    /// <summary>
    /// Installs the handler on <paramref name="db"/> in place of SQLite's: its waits for a lock last at most
    /// <paramref name="timeout"/> milliseconds, as SQLite's would, or until <paramref name="cancellationToken"/> is
    /// cancelled. Installs nothing when the token cannot be cancelled or there is no wait to end.
    /// </summary>
    /// <returns>Whether it was installed, and so must be taken out with <see cref="Uninstall"/>.</returns>
    public bool Install(sqlite3 db, int timeout, CancellationToken cancellationToken)
    {
        if (!cancellationToken.CanBeCanceled || timeout <= 0 || !ESqlite3.Available)
        {
            return false;
        }

        (_token, _timeout) = (cancellationToken, timeout);
        Reinstall(db);
        return true;
    }

    /// <summary>Installs the handler again, as it was, after SQLite's busy handler was switched off for a while.</summary>
    /// <exception cref="SqliteException">SQLite refused the handler (SQLITE_MISUSE for a closed handle).</exception>
    public void Reinstall(sqlite3 db)
        => SqliteException.ThrowExceptionForRC(ESqlite3.sqlite3_busy_handler(db.DangerousGetHandle(), OnBusyPointer, GCHandle.ToIntPtr(_self)), db);

    /// <summary>Puts SQLite's own busy handler back, with the timeout the handler was installed with.</summary>
    public void Uninstall(sqlite3 db)
    {
        _token = default;
        if (!db.IsClosed)
        {
            _ = ESqlite3.sqlite3_busy_timeout(db.DangerousGetHandle(), _timeout); // fails only for a closed handle
        }
    }

    /// <summary>Frees the handle SQLite is given to find this object; call it once the handler is taken out.</summary>
    public void Dispose()
    {
        if (_self.IsAllocated)
        {
            _self.Free();
        }
    }

    /// <summary>
    /// Whether SQLite should try again after the <paramref name="count"/>-th wait for the same lock: after sleeping
    /// as SQLite would, unless the token is cancelled first or the timeout is spent.
    /// </summary>
    private bool Wait(int count)
    {
        var last = Delays.Length - 1;
        long delay = Delays[Math.Min(count, last)];
        var prior = count <= last ? Totals[count] : Totals[last] + (long)Delays[last] * (count - last);
        if (prior + delay > _timeout)
        {
            delay = _timeout - prior;
            if (delay <= 0)
            {
                return false;
            }
        }

        return !_token.WaitHandle.WaitOne((int)delay);
    }

    /// <summary>Called by SQLite on the thread running the statement; an exception must not reach SQLite.</summary>
    private static int OnBusy(IntPtr argument, int count)
    {
        try
        {
            return GCHandle.FromIntPtr(argument).Target is CancellableBusyHandler handler && handler.Wait(count) ? 1 : 0;
        }
        catch (ThreadInterruptedException)
        {
            Thread.CurrentThread.Interrupt(); // delivered at the thread's next managed wait, outside SQLite
            return 0;
        }
        catch (Exception)
        {
            return 0; // nothing may unwind through SQLite (an ObjectDisposedException: the token's source was disposed)
        }
    }
}
