using System.Data.Common;
using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Compatibility;

/// <summary>
/// An async call given a token cancelled before it is made throws what Microsoft.Data.Sqlite's throws: for most, a
/// <see cref="TaskCanceledException"/>, which <c>catch (TaskCanceledException)</c> blocks written against it catch
/// (before, OpenAsync, ExecuteNonQueryAsync, ExecuteScalarAsync and BeginTransactionAsync threw a plain
/// <see cref="OperationCanceledException"/>; a differential trial against Microsoft.Data.Sqlite found it), and leaves the
/// connection, and the reader it was called on, as Microsoft.Data.Sqlite's leaves them.
/// </summary>
public class CancelledTokenTests : DatabaseTest
{
    [TestCase("OpenAsync")]
    [TestCase("ExecuteNonQueryAsync")]
    [TestCase("ExecuteScalarAsync")]
    [TestCase("ExecuteReaderAsync")]
    [TestCase("ExecuteReaderAsync CloseConnection")] // it closed the connection, though nothing ran (a conformance trial)
    [TestCase("BeginTransactionAsync")]
    [TestCase("ReadAsync")]
    [TestCase("NextResultAsync")]
    [TestCase("CommitAsync")]
    [TestCase("SaveAsync")]
    public async Task A_token_cancelled_before_the_call_throws_the_exception_MDS_throws(string call)
    {
        using var mds = new SqliteConnection($"Data Source={Folder.File("mds.db")};Pooling=False");
        using var saver = new SaverDbConnection(Folder.ConnectionString());

        var expected = await Outcome(mds, call);
        var actual = await Outcome(saver, call);

        actual.ShouldBe(expected);
    }

    private static async Task<string> Outcome(DbConnection connection, string call)
    {
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        if (call != "OpenAsync")
        {
            await connection.OpenAsync();
        }

        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1";
        await using var reader = call is "ReadAsync" or "NextResultAsync" ? await command.ExecuteReaderAsync() : null;
        await using var transaction = call is "CommitAsync" or "SaveAsync" ? await connection.BeginTransactionAsync() : null;
        try
        {
            await (call switch
            {
                "OpenAsync" => connection.OpenAsync(cancelled.Token),
                "ExecuteNonQueryAsync" => command.ExecuteNonQueryAsync(cancelled.Token),
                "ExecuteScalarAsync" => command.ExecuteScalarAsync(cancelled.Token),
                "ExecuteReaderAsync" => command.ExecuteReaderAsync(cancelled.Token),
                "ExecuteReaderAsync CloseConnection" => command.ExecuteReaderAsync(System.Data.CommandBehavior.CloseConnection, cancelled.Token),
                "BeginTransactionAsync" => connection.BeginTransactionAsync(cancelled.Token).AsTask(),
                "ReadAsync" => reader!.ReadAsync(cancelled.Token),
                "CommitAsync" => transaction!.CommitAsync(cancelled.Token),
                "SaveAsync" => transaction!.SaveAsync("s", cancelled.Token),
                _ => reader!.NextResultAsync(cancelled.Token),
            });
            return $"completed, {connection.State}{ReaderState(reader)}{TransactionState(transaction)}";
        }
        catch (Exception error)
        {
            return $"{error.GetType().Name}, {connection.State}{ReaderState(reader)}{TransactionState(transaction)}";
        }
    }

    /// <summary>Whether the transaction the call was made on is still open, and its savepoint "s" not set.</summary>
    private static string TransactionState(DbTransaction? transaction)
    {
        if (transaction?.Connection is null)
        {
            return transaction is null ? string.Empty : ", transaction ended";
        }

        try
        {
            transaction.Release("s");
            return ", transaction open, savepoint set";
        }
        catch (SqliteException)
        {
            return ", transaction open";
        }
    }

    /// <summary>Whether the reader the call was made on is still open (a NextResultAsync that ran nothing leaves it so).</summary>
    private static string ReaderState(DbDataReader? reader) => reader is null ? string.Empty : $", reader {(reader.IsClosed ? "closed" : "open")}";
}
