using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// The commands of one physical connection, kept prepared across rentals by command text (Statement Cache Size), so
/// that code creating a new command for every call, as plain ADO.NET and Dapper do, pays SQLite's prepare step once
/// per connection instead of on every call. Used by the connection's renter only, one thread at a time.
/// </summary>
/// <remarks>
/// Text that mentions PRAGMA is never kept: SQLite evaluates many PRAGMAs as it prepares them, so a kept
/// <c>PRAGMA busy_timeout</c> would go on returning the value of its preparation. Everything else is prepared again by
/// SQLite itself when the schema or a setting it was compiled against changes. A command whose last parameters held
/// more than <see cref="MaxKeptParameterLength"/> bytes or characters is not kept, since SQLite keeps its own copy of
/// bound values until they are bound again.
/// </remarks>
internal sealed class StatementCache(SqliteConnection connection, int capacity) : IDisposable
{
    /// <summary>The largest blob or text parameter whose copy a kept statement may hold on to.</summary>
    public const int MaxKeptParameterLength = 64 * 1024;

    private readonly Dictionary<string, OwnedSqliteCommand> _kept = new(StringComparer.Ordinal);
    private long _returns;

    /// <summary>Commands kept now.</summary>
    public int Count => _kept.Count;

    /// <summary>
    /// A command for <paramref name="commandText"/> on this connection: the kept one, already prepared, when no one is
    /// using it; otherwise a new one. Give it back with <see cref="Return"/> when its work and reader are done.
    /// </summary>
    public OwnedSqliteCommand Rent(string commandText)
    {
        if (!_kept.TryGetValue(commandText, out var command) || command.Rented)
        {
            command = new OwnedSqliteCommand
            {
                Connection = connection,
                CommandText = commandText,

                // A negative timeout makes Microsoft.Data.Sqlite report SQLITE_BUSY at once instead of sleeping in
                // fixed 150 ms steps: the waiting is done by busy_timeout and this library.
                CommandTimeout = -1,
            };
        }

        command.Rented = true;
        return command;
    }

    /// <summary>Takes back a rented command: kept for the next one with its text when it may be, disposed otherwise.</summary>
    public void Return(OwnedSqliteCommand command)
    {
        command.Rented = false;
        command.Owner = null;
        var keep = HoldsOnlySmallValues(command.Parameters);
        command.Parameters.Clear(); // the caller's parameter objects, not SQLite's copies
        command.LastUsed = ++_returns;
        var text = command.CommandText;
        if (_kept.TryGetValue(text, out var kept))
        {
            if (!ReferenceEquals(kept, command))
            {
                command.Dispose(); // a second command with the same text, rented while the kept one was in use
            }
            else if (!keep)
            {
                _kept.Remove(text);
                command.Dispose();
            }

            return;
        }

        if (keep && capacity > 0 && !text.Contains("PRAGMA", StringComparison.OrdinalIgnoreCase) && (_kept.Count < capacity || EvictLeastRecentlyUsed()))
        {
            _kept.Add(text, command);
        }
        else
        {
            command.Dispose();
        }
    }

    /// <summary>Disposes every kept command, releasing its prepared statements.</summary>
    public void Dispose()
    {
        foreach (var command in _kept.Values)
        {
            command.Dispose();
        }

        _kept.Clear();
    }

    private static bool HoldsOnlySmallValues(SqliteParameterCollection parameters)
    {
        for (var i = 0; i < parameters.Count; i++)
        {
            var length = parameters[i].Value switch
            {
                string text => text.Length,
                byte[] bytes => bytes.Length,
                ReadOnlyMemory<byte> memory => memory.Length,
                Memory<byte> memory => memory.Length,
                _ => 0,
            };
            if (length > MaxKeptParameterLength)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Disposes the kept command given back longest ago that no one is using; false when all are in use.</summary>
    private bool EvictLeastRecentlyUsed()
    {
        OwnedSqliteCommand? oldest = null;
        foreach (var command in _kept.Values)
        {
            if (!command.Rented && (oldest is null || command.LastUsed < oldest.LastUsed))
            {
                oldest = command;
            }
        }

        if (oldest is null)
        {
            return false;
        }

        _kept.Remove(oldest.CommandText);
        oldest.Dispose();
        return true;
    }
}
