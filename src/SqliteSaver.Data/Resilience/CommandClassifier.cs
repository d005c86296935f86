using System.Collections.Concurrent;
using System.Text;
using Microsoft.Data.Sqlite;
using SQLitePCL;

namespace SqliteSaver.Data.Resilience;

/// <summary>
/// Classifies command text by preparing each of its statements once (without running them) and asking SQLite
/// whether it writes, and where (see <see cref="WritesOnlyTemp"/>). Results are cached per data source by text; text
/// whose statements cannot all be prepared yet (a batch that creates a table and then uses it) is classified by its
/// first statements and not cached, nor text whose only writes may be hidden by the schema of the moment (see
/// <see cref="MayWriteLater"/>), nor text that writes only the connection's own temp database. A PRAGMA is not
/// prepared, nor an <c>EXPLAIN</c> of one: SQLite applies many settings as it compiles them, before the command runs
/// or even if it never does. The <c>EXPLAIN</c> of another statement reads: it runs nothing of that statement.
/// </summary>
internal sealed class CommandClassifier
{
    private const int MaxCachedCommands = 4096;

    /// <summary>The most characters of text the cache keeps in all: texts spliced with literals must not fill memory.</summary>
    private const int MaxCachedCharacters = 4 * 1024 * 1024;

    private static readonly string[] StandaloneKeywords =
        ["BEGIN", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "VACUUM", "ATTACH", "DETACH"];

    private readonly ConcurrentDictionary<string, (CommandKind Kind, ulong WritingResults)> _cache = new(StringComparer.Ordinal);
    private int _cachedCharacters;

    /// <summary>The texts whose classification is kept, and their characters, counted (for tests).</summary>
    public (int Texts, long Characters) Kept => (_cache.Count, _cache.Keys.Sum(text => (long)text.Length));

    /// <summary>Whether the classification of <paramref name="sql"/> is kept.</summary>
    public bool Keeps(string sql) => _cache.ContainsKey(sql);

    /// <summary>Classifies <paramref name="sql"/> using the open connection <paramref name="db"/> to prepare it.</summary>
    public CommandKind Classify(sqlite3 db, string sql) => Classify(db, sql, out _, out _);

    /// <summary>
    /// Whether the statement of <paramref name="sql"/> whose rows are its <paramref name="result"/>th result (counted
    /// from 0 over its statements that return columns, as a reader moves through them) writes, an
    /// <c>INSERT ... RETURNING</c>, so that a step reading its rows may end a write; also, as a write is assumed, for a
    /// statement not prepared yet (a batch that creates a table and then uses it) and from the 64th result on when any
    /// statement there writes.
    /// </summary>
    public bool ResultWrites(sqlite3 db, string sql, int result)
    {
        ulong writing;
        if (_cache.TryGetValue(sql, out var known))
        {
            writing = known.WritingResults;
        }
        else
        {
            Analyze(db, sql, out _, out _, out writing);
        }

        return (writing >> Math.Min(result, 63) & 1) != 0;
    }

    /// <summary>
    /// Classifies <paramref name="sql"/> as <see cref="Classify(sqlite3, string)"/> does. <paramref name="invalid"/> is
    /// SQLite's error for a first statement that cannot be prepared against the schema of the moment (a syntax error,
    /// an unknown table), with which the command fails before it runs anything; such text counts as a write, as text
    /// that cannot all be prepared yet does. <paramref name="final"/> says whether the text is classified for good, as
    /// the cache keeps it (whether or not the cache had room for it). Without <paramref name="cached"/> the text is
    /// prepared again whatever the cache holds (see <see cref="Executor"/>'s use on a connection with temporary tables
    /// or triggers).
    /// </summary>
    public CommandKind Classify(sqlite3 db, string sql, out SqliteException? invalid, out bool final, bool cached = true)
    {
        invalid = null;
        if (cached && _cache.TryGetValue(sql, out var known))
        {
            final = true;
            return known.Kind;
        }

        var kind = Analyze(db, sql, out final, out invalid, out var writingResults);
        if (final)
        {
            Keep(sql, (kind, writingResults));
        }

        return kind;
    }

    /// <summary>
    /// Keeps a classification, unless its text alone would take a sixteenth of the cache; a full cache (by texts or
    /// characters) starts over, so that an application that splices literals into its texts has each new text
    /// classified once, as the texts it runs often are again after the start over, and its memory stays bounded.
    /// </summary>
    private void Keep(string sql, (CommandKind Kind, ulong WritingResults) classification)
    {
        if (sql.Length > MaxCachedCharacters / 16)
        {
            return;
        }

        if (_cache.Count >= MaxCachedCommands || Volatile.Read(ref _cachedCharacters) + sql.Length > MaxCachedCharacters)
        {
            _cache.Clear();
            Volatile.Write(ref _cachedCharacters, 0);
        }

        if (_cache.TryAdd(sql, classification))
        {
            Interlocked.Add(ref _cachedCharacters, sql.Length);
        }
    }

    // writingResults: bit n set when the statement of the nth result writes (see ResultWrites).
    private static CommandKind Analyze(sqlite3 db, string sql, out bool complete, out SqliteException? invalid, out ulong writingResults)
    {
        ReadOnlySpan<byte> remaining = Encoding.UTF8.GetBytes(sql);
        var statements = 0;
        var results = 0;
        var writes = false;
        writingResults = 0;
        var tempWrites = false;
        var tempSchemaChanged = false; // a statement before changes the temp schema (see below)
        var standalone = false;
        bool? tempObjects = null; // whether the connection has temporary tables or triggers, once asked (see MayWriteOnlyTemp)
        invalid = null;
        complete = true;

        while (!remaining.IsEmpty)
        {
            if (IsPragma(remaining))
            {
                statements++;
                standalone = true;
                remaining = remaining[FirstStatementLength(remaining)..];
                continue;
            }

            var rc = raw.sqlite3_prepare_v2(db, remaining, out var statement, out var tail);
            using (statement)
            {
                if (rc != raw.SQLITE_OK)
                {
                    // Not preparable yet (it may depend on an earlier statement), invalid, or the schema was locked:
                    // assume it writes, and that it must run unwrapped if any statement left starts with a
                    // standalone keyword. Nothing before a first statement could make it valid.
                    complete = false;
                    if (statements == 0 && (rc & 0xFF) == raw.SQLITE_ERROR)
                    {
                        invalid = ErrorAgainstCurrentSchema(db, rc, remaining);
                    }

                    writes = true;
                    writingResults |= ulong.MaxValue << Math.Min(results, 63);
                    standalone |= AnyStatementIsStandalone(remaining);
                    break;
                }

                if (statement.IsInvalid)
                {
                    break; // only white space or comments were left
                }

                statements++;
                var text = remaining[..(remaining.Length - tail.Length)];
                var result = raw.sqlite3_column_count(statement) > 0 ? results++ : -1;
                if (IsStandalone(text))
                {
                    standalone = true;
                }
                else if (raw.sqlite3_stmt_readonly(statement) == 0 && !Ascii.EqualsIgnoreCase(FirstWord(text), "EXPLAIN"))
                {
                    // SQLite calls the EXPLAIN of a write not read-only, though it only lists the program.
                    writingResults |= result < 0 ? 0 : 1UL << Math.Min(result, 63);
                    if (!tempSchemaChanged && MayWriteOnlyTemp(db, text, ref tempObjects) && WritesOnlyTemp(db, text))
                    {
                        // Prepared before the statements ahead of it run: once a CREATE, DROP or ALTER of the temp
                        // schema has run, a write after it may write the database (a DROP of a temporary table that
                        // hid the database's, a temporary trigger that writes it), so it counts as one.
                        tempWrites = true;
                        tempSchemaChanged = MayWriteLater(text);
                    }
                    else
                    {
                        writes = true;
                    }
                }
                else if (MayWriteLater(text))
                {
                    complete = false; // classified afresh each time: the schema decides whether it writes
                }
            }

            remaining = tail;
        }

        // Each connection has a temp schema of its own: the same text may write the main database on another one (a
        // table of that name there), or on this one once a temporary trigger is made, so TempWrite is never cached.
        complete &= standalone || writes || !tempWrites;
        return standalone
            ? statements == 1 && complete ? CommandKind.Standalone : CommandKind.Unprotected
            : writes ? CommandKind.Write : tempWrites ? CommandKind.TempWrite : CommandKind.Read;
    }

    /// <summary>
    /// Whether the connection's temp database holds a table or a trigger, without which a write other than a
    /// <c>CREATE</c>, <c>DROP</c> or <c>ANALYZE</c> writes the database (see <see cref="MayWriteOnlyTemp"/>).
    /// </summary>
    public const string TempTablesOrTriggers = "SELECT EXISTS (SELECT 1 FROM temp.sqlite_master WHERE type IN ('table', 'trigger'))";

    /// <summary>
    /// Whether a statement that writes could write the temp database alone, before <see cref="WritesOnlyTemp"/> looks:
    /// a <c>CREATE</c> or <c>DROP</c> (of a temporary table, view or trigger), an <c>ANALYZE</c> (of temp), or any
    /// other write on a connection that has temporary tables or triggers (<paramref name="tempObjects"/>, asked once
    /// per text; a temporary view alone takes no other write). Otherwise it writes the database, and its <c>EXPLAIN</c> is not stepped:
    /// stepping one of an <c>INSERT</c>, <c>UPDATE</c> or <c>DELETE</c> sets the connection's <c>changes()</c> to 0,
    /// which a <c>SELECT changes()</c> before the batch's first write, or the count of a batch whose first statement
    /// is no such write, then reads.
    /// </summary>
    private static bool MayWriteOnlyTemp(sqlite3 db, ReadOnlySpan<byte> statement, ref bool? tempObjects)
    {
        var keyword = FirstWord(statement);
        if (Ascii.EqualsIgnoreCase(keyword, "CREATE") || Ascii.EqualsIgnoreCase(keyword, "DROP") || Ascii.EqualsIgnoreCase(keyword, "ANALYZE"))
        {
            return true;
        }

        if (tempObjects is null)
        {
            var rc = raw.sqlite3_prepare_v2(db, TempTablesOrTriggers, out var query);
            using (query)
            {
                // Not known (an interrupt still pending, say): let WritesOnlyTemp look, as before.
                tempObjects = rc != raw.SQLITE_OK || raw.sqlite3_step(query) != raw.SQLITE_ROW || raw.sqlite3_column_int(query, 0) != 0;
            }
        }

        return tempObjects.Value;
    }

    /// <summary>
    /// Whether a statement that writes begins write transactions on the temp database alone (schema 1), as its
    /// <c>EXPLAIN</c> program's <c>Transaction</c> instructions show (P1 the schema, P2 non-zero for a write; those of
    /// triggers it fires are among them): it then needs no lock another connection can hold.
    /// </summary>
    private static bool WritesOnlyTemp(sqlite3 db, ReadOnlySpan<byte> statement)
    {
        var explain = new byte[8 + statement.Length];
        "EXPLAIN "u8.CopyTo(explain);
        statement.CopyTo(explain.AsSpan(8));
        if (raw.sqlite3_prepare_v2(db, explain, out var program, out _) != raw.SQLITE_OK)
        {
            program.Dispose();
            return false;
        }

        using (program)
        {
            var temp = false;
            while (raw.sqlite3_step(program) == raw.SQLITE_ROW)
            {
                if (raw.sqlite3_column_text(program, 1).utf8_to_string() == "Transaction" && raw.sqlite3_column_int(program, 3) != 0)
                {
                    if (raw.sqlite3_column_int(program, 2) != 1)
                    {
                        return false;
                    }

                    temp = true;
                }
            }

            return temp;
        }
    }

    /// <summary>
    /// SQLite's error for a statement that failed to prepare with SQLITE_ERROR (<paramref name="rc"/>, its message still
    /// the connection's last), unless SQLite's cached schema may be stale: SQLite checks it against the file as it
    /// prepares only when it can take a read lock, so while another connection holds the database locked a table it
    /// has just created is "no such table". Outside a transaction a read of the schema shows whether it can (null if
    /// the database is locked, or if the statement now prepares); inside one the error stands, as SQLite gave it (a
    /// read would begin a deferred transaction's snapshot).
    /// </summary>
    private static SqliteException? ErrorAgainstCurrentSchema(sqlite3 db, int rc, ReadOnlySpan<byte> statement)
    {
        if (raw.sqlite3_get_autocommit(db) != 0)
        {
            if (!SchemaReadable(db))
            {
                return null;
            }

            rc = raw.sqlite3_prepare_v2(db, statement, out var again, out _);
            again.Dispose();
            if ((rc & 0xFF) != raw.SQLITE_ERROR)
            {
                return null;
            }
        }

        try
        {
            SqliteException.ThrowExceptionForRC(rc, db); // Microsoft.Data.Sqlite's own error for it
        }
        catch (SqliteException error)
        {
            return error;
        }

        return null;
    }

    /// <summary>
    /// Reads the schema table as a statement would, so that SQLite notices a schema another connection changed; false
    /// when the database is locked or the read is interrupted (an application's authorizer that refuses the read is no
    /// lock: SQLite's own schema check does not ask it).
    /// </summary>
    private static bool SchemaReadable(sqlite3 db)
    {
        var rc = raw.sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema LIMIT 1", out var read);
        using (read)
        {
            if (rc == raw.SQLITE_OK)
            {
                rc = raw.sqlite3_step(read);
            }
        }

        return (rc & 0xFF) is not (raw.SQLITE_BUSY or raw.SQLITE_LOCKED or raw.SQLITE_INTERRUPT);
    }

    /// <summary>
    /// Whether a statement SQLite found read-only may write once the schema changes: <c>CREATE ... IF NOT EXISTS</c> of
    /// something that exists, <c>DROP ... IF EXISTS</c> of something that does not, <c>REINDEX</c> with no index.
    /// </summary>
    private static bool MayWriteLater(ReadOnlySpan<byte> statement)
    {
        var keyword = FirstWord(statement);
        return Ascii.EqualsIgnoreCase(keyword, "CREATE") || Ascii.EqualsIgnoreCase(keyword, "DROP")
            || Ascii.EqualsIgnoreCase(keyword, "ALTER") || Ascii.EqualsIgnoreCase(keyword, "REINDEX");
    }

    /// <summary>
    /// The length of the first statement of <paramref name="text"/>, its semicolon included: up to the first semicolon
    /// after which SQLite's own <c>sqlite3_complete</c> finds the text complete, so semicolons in strings, comments and
    /// trigger bodies do not end it, and BEGIN and END inside a trigger or a CASE are not taken for transaction control.
    /// </summary>
    private static int FirstStatementLength(ReadOnlySpan<byte> text)
    {
        for (var end = text.Length - FirstWordAndRest(text).Length; end < text.Length; end++)
        {
            if (text[end] == (byte)';' && raw.sqlite3_complete(Encoding.UTF8.GetString(text[..(end + 1)])) != 0)
            {
                return end + 1;
            }
        }

        return text.Length;
    }

    /// <summary>Whether any statement of <paramref name="text"/> begins with <c>SAVEPOINT</c>: running it may set a savepoint.</summary>
    public static bool SetsSavepoint(string text)
        => AnyStatement(Encoding.UTF8.GetBytes(text), static statement => Ascii.EqualsIgnoreCase(FirstWord(statement), "SAVEPOINT"));

    /// <summary>Whether any statement of <paramref name="text"/> begins with <c>ATTACH</c>.</summary>
    public static bool Attaches(string text)
        => text.Contains("ATTACH", StringComparison.OrdinalIgnoreCase)
            && AnyStatement(Encoding.UTF8.GetBytes(text), static statement => Ascii.EqualsIgnoreCase(FirstWord(statement), "ATTACH"));

    /// <summary>Whether any statement of text that could not be prepared starts with a standalone keyword.</summary>
    private static bool AnyStatementIsStandalone(ReadOnlySpan<byte> text) => AnyStatement(text, IsStandalone);

    /// <summary>Whether <paramref name="test"/> holds for any statement of <paramref name="text"/> (statements split as <see cref="FirstStatementLength"/> splits them).</summary>
    private static bool AnyStatement(ReadOnlySpan<byte> text, Func<ReadOnlySpan<byte>, bool> test)
    {
        while (!text.IsEmpty)
        {
            var length = FirstStatementLength(text);
            if (test(text[..length]))
            {
                return true;
            }

            text = text[length..];
        }

        return false;
    }

    /// <summary>
    /// Whether a statement is a PRAGMA, or an <c>EXPLAIN</c> or <c>EXPLAIN QUERY PLAN</c> of one, which SQLite applies
    /// as it compiles it too.
    /// </summary>
    private static bool IsPragma(ReadOnlySpan<byte> statement)
    {
        var word = FirstWord(statement);
        if (Ascii.EqualsIgnoreCase(word, "EXPLAIN"))
        {
            statement = AfterFirstWord(statement);
            word = FirstWord(statement);
            if (Ascii.EqualsIgnoreCase(word, "QUERY"))
            {
                statement = AfterFirstWord(AfterFirstWord(statement)); // QUERY PLAN
                word = FirstWord(statement);
            }
        }

        return Ascii.EqualsIgnoreCase(word, "PRAGMA");
    }

    /// <summary>Whether a statement's first keyword is one that cannot run inside a transaction of ours, or it is a PRAGMA.</summary>
    private static bool IsStandalone(ReadOnlySpan<byte> statement)
    {
        if (IsPragma(statement))
        {
            return true;
        }

        var keyword = FirstWord(statement);
        foreach (var candidate in StandaloneKeywords)
        {
            if (Ascii.EqualsIgnoreCase(keyword, candidate))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The first word of a statement, after white space and comments.</summary>
    private static ReadOnlySpan<byte> FirstWord(ReadOnlySpan<byte> text)
    {
        text = FirstWordAndRest(text);
        var length = 0;
        while (length < text.Length && char.IsAsciiLetter((char)text[length]))
        {
            length++;
        }

        return text[..length];
    }

    /// <summary>What follows a statement's first word.</summary>
    private static ReadOnlySpan<byte> AfterFirstWord(ReadOnlySpan<byte> text)
    {
        var rest = FirstWordAndRest(text);
        return rest[FirstWord(rest).Length..];
    }

    /// <summary>A statement from its first word on: without the white space, comments and semicolons before it.</summary>
    private static ReadOnlySpan<byte> FirstWordAndRest(ReadOnlySpan<byte> text)
    {
        while (true)
        {
            text = text.TrimStart(" \t\r\n\f;"u8);
            if (text.StartsWith("--"u8))
            {
                var end = text.IndexOf((byte)'\n');
                text = end < 0 ? [] : text[(end + 1)..];
            }
            else if (text.StartsWith("/*"u8))
            {
                // As SQLite reads it, the comment ends at the first */ after its /*: the star of "/*/" does not end it.
                var end = text[2..].IndexOf("*/"u8);
                text = end < 0 ? [] : text[(end + 4)..];
            }
            else
            {
                return text;
            }
        }
    }
}
