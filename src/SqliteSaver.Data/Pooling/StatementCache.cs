using Microsoft.Data.Sqlite;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// The commands of one physical connection, kept prepared across rentals by command text (Statement Cache Size), so
/// that code creating a new command for every call, as plain ADO.NET and Dapper do, pays SQLite's prepare step once
/// per connection instead of on every call. A <see cref="SaverDbCommand"/> rents the command for its text on its first
/// execution and returns it when it is disposed, its text changes or its connection closes. Used by the connection's
/// renter only, one thread at a time; the least recently rented command is evicted first.
/// </summary>
/// <remarks>
/// Some commands are never kept: text that mentions PRAGMA (SQLite evaluates many PRAGMAs as it prepares them, so a
/// kept <c>PRAGMA busy_timeout</c> would go on returning the value of its preparation), text longer than
/// <see cref="MaxKeptTextLength"/>, and a command whose last parameters held more than
/// <see cref="MaxKeptValueLength"/> bytes or characters in all (SQLite keeps its own copy of bound values until they
/// are bound again). Everything else SQLite prepares again by itself when the schema or a setting it was compiled
/// against changes.
/// </remarks>
internal sealed class StatementCache(SqliteConnection connection, int capacity) : IDisposable
{
    /// <summary>The longest command text kept.</summary>
    public const int MaxKeptTextLength = 16 * 1024;

    /// <summary>The most text and blob parameter data, in characters and bytes, whose copy a kept statement may hold.</summary>
    public const int MaxKeptValueLength = 64 * 1024;

    private readonly Dictionary<string, OwnedSqliteCommand> _kept = new(StringComparer.Ordinal);
    private readonly LinkedList<OwnedSqliteCommand> _byUse = new(); // most recently rented first

    /// <summary>
    /// A command for <paramref name="commandText"/> on this connection: the kept one, already prepared, when no one
    /// holds it; otherwise a new one. With <paramref name="fresh"/> always a new one, never kept: for parameters that
    /// could bind one statement parameter twice and leave another unbound (<c>a</c> and <c>@a</c>), which would then
    /// keep a value bound by an earlier caller. Give it back with <see cref="Return"/>.
    /// </summary>
    public OwnedSqliteCommand Rent(string commandText, bool fresh)
    {
        if (!fresh && _kept.TryGetValue(commandText, out var kept) && !kept.Rented)
        {
            _byUse.Remove(kept.Node!);
            _byUse.AddFirst(kept.Node!);
            kept.Rented = true;
            return kept;
        }

        return new OwnedSqliteCommand
        {
            Connection = connection,
            CommandText = commandText,

            // A negative timeout makes Microsoft.Data.Sqlite report SQLITE_BUSY at once instead of sleeping in
            // fixed 150 ms steps: the waiting is done by busy_timeout and this library.
            CommandTimeout = -1,
            Rented = true,
            Keepable = !fresh && capacity > 0 && IsKeepable(commandText),
        };
    }

    /// <summary>Takes back a rented command: kept for the next one with its text when it may be, disposed otherwise.</summary>
    public void Return(OwnedSqliteCommand command)
    {
        command.Rented = false;
        command.Parameters.Clear(); // the caller's parameter objects, not SQLite's copies of their values
        var keep = command.Keepable && !command.BoundLargeValues;
        if (command.Node is not null)
        {
            if (!keep)
            {
                Evict(command);
            }

            return;
        }

        if (!keep || _kept.ContainsKey(command.CommandText) || (_kept.Count >= capacity && !EvictLeastRecentlyUsed()))
        {
            command.Dispose(); // a second command with a kept text, rented while the kept one was held, ends here too
            return;
        }

        _kept.Add(command.CommandText, command);
        command.Node = _byUse.AddFirst(command);
    }

    /// <summary>
    /// Whether two of the parameters could bind the same statement parameter: Microsoft.Data.Sqlite binds a name
    /// without a prefix (<c>a</c>) to <c>@a</c>, <c>$a</c> or <c>:a</c>, and only counts the bindings, so a duplicate
    /// can leave another statement parameter holding the value an earlier caller bound.
    /// </summary>
    public static bool MayBindOneParameterTwice(SqliteParameterCollection parameters)
    {
        for (var i = 1; i < parameters.Count; i++)
        {
            var name = Unprefixed(parameters[i].ParameterName);
            for (var j = 0; j < i; j++)
            {
                if (name.SequenceEqual(Unprefixed(parameters[j].ParameterName)))
                {
                    return true;
                }
            }
        }

        return false;

        static ReadOnlySpan<char> Unprefixed(string name)
            => name.Length > 0 && name[0] is '@' or '$' or ':' ? name.AsSpan(1) : name;
    }

    /// <summary>Whether the parameters' text and blob values add up to more than a kept statement may hold.</summary>
    public static bool HoldsLargeValues(SqliteParameterCollection parameters)
    {
        long length = 0;
        for (var i = 0; i < parameters.Count; i++)
        {
            length += parameters[i].Value switch
            {
                string text => text.Length,
                byte[] bytes => bytes.Length,
                ReadOnlyMemory<byte> memory => memory.Length,
                Memory<byte> memory => memory.Length,
                _ => 0,
            };
        }

        return length > MaxKeptValueLength;
    }

    /// <summary>Disposes every kept command, releasing its prepared statements.</summary>
    public void Dispose()
    {
        foreach (var command in _byUse)
        {
            command.Node = null;
            command.Dispose();
        }

        _byUse.Clear();
        _kept.Clear();
    }

    private static bool IsKeepable(string commandText)
        => commandText.Length <= MaxKeptTextLength && !commandText.Contains("PRAGMA", StringComparison.OrdinalIgnoreCase);

    /// <summary>Disposes the least recently rented kept command that no one holds; false when every one is held.</summary>
    private bool EvictLeastRecentlyUsed()
    {
        for (var node = _byUse.Last; node is not null; node = node.Previous)
        {
            if (!node.Value.Rented)
            {
                Evict(node.Value);
                return true;
            }
        }

        return false;
    }

    private void Evict(OwnedSqliteCommand command)
    {
        _kept.Remove(command.CommandText);
        _byUse.Remove(command.Node!);
        command.Node = null;
        command.Dispose();
    }
}
