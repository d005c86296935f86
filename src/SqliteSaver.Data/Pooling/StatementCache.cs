using Microsoft.Data.Sqlite;
using System.Text.RegularExpressions;
using SqliteSaver.Data.Resilience;

namespace SqliteSaver.Data.Pooling;

/// <summary>
/// The commands of one physical connection, kept prepared across rentals by command text (Statement Cache Size), so
/// that code creating a new command for every call, as plain ADO.NET and Dapper do, pays SQLite's prepare step once
/// per connection instead of on every call. A <see cref="SaverDbCommand"/> rents the command for its text as it
/// executes and returns it when the execution, or its reader, ends (one the cache will not keep it holds until it is
/// disposed, its text changes or its connection closes); the least recently rented command is evicted first. SQLite
/// compiles a kept statement again by itself when the schema or a setting it was compiled against changes, and
/// compiles PRAGMAs again on every run; none is used or kept while a database may be attached (see
/// <see cref="PhysicalConnection.MayHaveAttachedDatabases"/>).
/// </summary>
/// <remarks>
/// SQLite keeps a copy of the values last bound to a statement until they are bound again, so the cache bounds them:
/// a command whose last values came to more than <see cref="MaxKeptValueLength"/> (characters of text and bytes of
/// blobs) is not kept, nor any once the kept ones hold <see cref="MaxKeptValueLengthInAll"/>; text longer than
/// <see cref="MaxKeptTextLength"/> is not kept either. Those values are never read by another command: each
/// execution binds every parameter of its statements, and one whose parameters could bind a statement parameter twice
/// gets a statement of its own (see <see cref="MayBindOneParameterTwice"/>). Locked, because a command moved to another
/// connection returns its statement from its own thread, and a leaked connection's cache is disposed by the pool.
/// </remarks>
internal sealed partial class StatementCache(SqliteConnection connection, int capacity) : IDisposable
{
    /// <summary>The longest command text kept.</summary>
    public const int MaxKeptTextLength = 16 * 1024;

    /// <summary>The most text and blob data, in characters and bytes, whose copy one kept statement may hold.</summary>
    public const int MaxKeptValueLength = 64 * 1024;

    /// <summary>The most text and blob data, in characters and bytes, whose copies the kept statements may hold in all.</summary>
    public const int MaxKeptValueLengthInAll = 1024 * 1024;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, OwnedSqliteCommand> _kept = new(StringComparer.Ordinal);
    private readonly LinkedList<OwnedSqliteCommand> _byUse = new(); // most recently rented first
    private long _keptValueLength; // of the kept commands no one holds
    private bool _disposed;

    /// <summary>
    /// Whether the text may begin a transaction (it holds the word <c>BEGIN</c>: a trigger's body or a string too, which
    /// only costs those texts their keeping), which is not kept: SQLite compiles a <c>BEGIN IMMEDIATE</c> or
    /// <c>EXCLUSIVE</c> for the databases attached as it prepares it, and does not prepare it again after an ATTACH, so
    /// that a kept one would leave a database attached since unlocked.
    /// </summary>
    private static bool BeginsTransaction(string commandText)
        => commandText.Contains("BEGIN", StringComparison.OrdinalIgnoreCase) && BeginWord().IsMatch(commandText);

    [GeneratedRegex(@"\bBEGIN\b", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex BeginWord();

    /// <summary>
    /// A command for <paramref name="commandText"/> on this connection: the kept one, already prepared, when no one
    /// holds it; otherwise a new one. With <paramref name="fresh"/> always a new one, never kept. Give it back with
    /// <see cref="Return"/>.
    /// </summary>
    public OwnedSqliteCommand Rent(string commandText, bool fresh)
    {
        lock (_lock)
        {
            if (!fresh && _kept.TryGetValue(commandText, out var kept) && !kept.Rented)
            {
                RentKept(kept);
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
                Keepable = !fresh && capacity > 0 && commandText.Length <= MaxKeptTextLength && !BeginsTransaction(commandText)
                    && !CommandClassifier.Attaches(commandText), // its later statements would find the database it attaches
            };
        }
    }

    /// <summary>
    /// Rents <paramref name="command"/>, one this cache handed out before, again without looking its text up (a
    /// command run again, as in a loop): false when the cache no longer keeps it (evicted, or the cache disposed) or
    /// someone holds it.
    /// </summary>
    public bool TryRentAgain(OwnedSqliteCommand command)
    {
        lock (_lock)
        {
            if (command.Rented || command.Node?.List != _byUse)
            {
                return false;
            }

            RentKept(command);
            return true;
        }
    }

    /// <summary>Takes back a rented command: kept for the next one with its text when it may be, disposed otherwise.</summary>
    public void Return(OwnedSqliteCommand command)
    {
        command.Parameters.Clear(); // the caller's parameter objects, not SQLite's copies of their values
        lock (_lock)
        {
            command.Rented = false;
            var keep = !_disposed
                && command.Keepable
                && command.BoundValueLength <= MaxKeptValueLength
                && _keptValueLength + command.BoundValueLength <= MaxKeptValueLengthInAll;
            if (command.Node is not null)
            {
                if (keep)
                {
                    _keptValueLength += command.BoundValueLength;
                }
                else
                {
                    Remove(command);
                }

                return;
            }

            if (!keep || _kept.ContainsKey(command.CommandText) || (_kept.Count >= capacity && !EvictLeastRecentlyUsed()))
            {
                command.Dispose(); // a second command with a kept text, made while the kept one was held, ends here too
                return;
            }

            _kept.Add(command.CommandText, command);
            command.Node = _byUse.AddFirst(command);
            _keptValueLength += command.BoundValueLength;
        }
    }

    /// <summary>
    /// Whether two of the parameters could bind the same statement parameter: Microsoft.Data.Sqlite binds a name
    /// without a prefix (<c>a</c>) to <c>@a</c>, <c>$a</c> or <c>:a</c>, and checks only the number of bindings, so one
    /// statement parameter bound twice would leave another holding the value a command before bound.
    /// </summary>
    public static bool MayBindOneParameterTwice(SqliteParameterCollection parameters)
    {
        var count = parameters.Count;
        if (count <= 8)
        {
            for (var i = 1; i < count; i++)
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
        }

        var names = new HashSet<string>(count, StringComparer.Ordinal).GetAlternateLookup<ReadOnlySpan<char>>();
        for (var i = 0; i < count; i++)
        {
            if (!names.Add(Unprefixed(parameters[i].ParameterName)))
            {
                return true;
            }
        }

        return false;

        static ReadOnlySpan<char> Unprefixed(string name)
            => name.Length > 0 && name[0] is '@' or '$' or ':' ? name.AsSpan(1) : name;
    }

    /// <summary>The characters of text and bytes of blobs among the parameters' values.</summary>
    public static long ValueLength(SqliteParameterCollection parameters)
    {
        long length = 0;
        for (var i = 0; i < parameters.Count; i++)
        {
            length += parameters[i].Value switch
            {
                string text => text.Length,
                byte[] bytes => bytes.Length,
                _ => 0, // the other values Microsoft.Data.Sqlite binds (numbers, dates, Guids) are a few dozen bytes at most; it refuses Memory<byte>
            };
        }

        return length;
    }

    /// <summary>Disposes every kept command, releasing its prepared statements; commands returned later are disposed.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            foreach (var command in _byUse)
            {
                command.Node = null;
                command.Dispose();
            }

            _byUse.Clear();
            _kept.Clear();
            _keptValueLength = 0;
        }
    }

    /// <summary>Disposes the least recently rented kept command that no one holds; false when every one is held.</summary>
    private bool EvictLeastRecentlyUsed()
    {
        for (var node = _byUse.Last; node is not null; node = node.Previous)
        {
            if (!node.Value.Rented)
            {
                _keptValueLength -= node.Value.BoundValueLength;
                Remove(node.Value);
                return true;
            }
        }

        return false;
    }

    private void RentKept(OwnedSqliteCommand kept)
    {
        if (_byUse.First != kept.Node)
        {
            _byUse.Remove(kept.Node!);
            _byUse.AddFirst(kept.Node!);
        }

        kept.Rented = true;
        _keptValueLength -= kept.BoundValueLength;
    }

    private void Remove(OwnedSqliteCommand command)
    {
        _kept.Remove(command.CommandText);
        _byUse.Remove(command.Node!);
        command.Node = null;
        command.Dispose();
    }
}
