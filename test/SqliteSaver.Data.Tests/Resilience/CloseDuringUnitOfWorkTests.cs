using System.Data;
using System.Diagnostics.Metrics;
using Shouldly;
using SqliteSaver.Data.Diagnostics;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.Resilience;

/// <summary>
/// Close from another thread while a unit of work's BEGIN runs: Close ends the call and waits for it, and the unit of
/// work reports the close as the documented <see cref="InvalidOperationException"/>.
/// </summary>
public class CloseDuringUnitOfWorkTests : DatabaseTest
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>
    /// RunInTransaction's BEGIN has taken the write gate (the write-gate wait metric is recorded synchronously right
    /// after, on the unit of work's thread) when another thread closes the connection. Close detaches the physical
    /// connection at once and waits for the running BEGIN, which then succeeds (SQLite drops the interrupt made while
    /// no statement ran); Close rolls it back. RunInTransaction must then fail with the InvalidOperationException the
    /// README promises for a call ended by Close (or for a unit of work whose connection was closed). Instead it reads
    /// the connection's physical connection, now null, and throws a NullReferenceException.
    /// </summary>
    [Test]
    public void Close_from_another_thread_during_RunInTransactions_BEGIN_fails_it_with_InvalidOperationException_not_NullReferenceException()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        var builder = new SaverDataSourceBuilder(connectionString) { Name = "close-during-unit-of-work-begin" };
        using var dataSource = builder.Build();
        using var connection = dataSource.OpenConnection();
        Task? closing = null;
        var hooked = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, meterListener) =>
        {
            if (instrument.Meter.Name == SaverMetrics.MeterName && instrument.Name == SaverMetrics.WriteGateWaitTime.Name)
            {
                meterListener.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == SaverMetrics.PoolNameTag && (string?)tag.Value == builder.Name && Interlocked.Exchange(ref hooked, 1) == 0)
                {
                    // The gate is entered; the BEGIN IMMEDIATE has not run. Close on another thread, as a timeout
                    // handler would, and let the BEGIN go on once Close has detached the connection.
                    closing = Task.Factory.StartNew(connection.Close, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
                    Wait.Until(() => connection.State == ConnectionState.Closed);
                }
            }
        });
        listener.Start();
        var ran = false;

        Exception? error = null;
        try
        {
            connection.RunInTransaction(transaction =>
            {
                ran = true;
                connection.CreateCommand().ExecuteNonQuery();
            });
        }
        catch (Exception exception)
        {
            error = exception;
        }

        closing.ShouldNotBeNull().Wait(Bound).ShouldBeTrue();
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
        dataSource.Statistics.InUse.ShouldBe(0);
        dataSource.Executor.Gate!.IsHeld.ShouldBeFalse();
        ran.ShouldBeFalse();
        error.ShouldBeOfType<InvalidOperationException>($"RunInTransaction ended by Close threw {error}");
    }
}
