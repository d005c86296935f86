namespace SqliteSaver.Data.Pooling;

/// <summary>
/// Finds the PRAGMA statements of an SQL text that may set something (<c>PRAGMA name = value</c>,
/// <c>PRAGMA schema.name(value)</c>), reading the text into tokens as SQLite does: a string, a quoted name, a
/// parameter or a comment is one piece, so that a comment marker inside a string hides nothing, and a name may be
/// quoted in any of SQLite's ways, with or without white space or comments around it. It may find more than SQLite
/// would run (the word PRAGMA where SQLite takes it for a name), never less.
/// </summary>
internal static class PragmaSettings
{
    /// <summary>The settings the PRAGMAs of <paramref name="sql"/> may set: the schema as written (null without one) and the name, unquoted.</summary>
    public static List<(string? Schema, string Name)> Of(string sql)
    {
        var settings = new List<(string? Schema, string Name)>();
        var position = 0;
        while (Next(sql, ref position) is { } token)
        {
            if (!IsWord(sql, token, "PRAGMA"))
            {
                continue;
            }

            // Looked at past PRAGMA, and then read again from there: what follows may be the next statement.
            var after = position;
            if (Next(sql, ref after) is not { } first || !IsName(sql, first))
            {
                continue;
            }

            var (schema, name) = ((Range?)null, first);
            var next = Next(sql, ref after);
            if (next is { } dot && Is(sql, dot, '.') && Next(sql, ref after) is { } second && IsName(sql, second))
            {
                (schema, name) = (first, second);
                next = Next(sql, ref after);
            }

            if (next is { } sign && (Is(sql, sign, '=') || Is(sql, sign, '(')))
            {
                settings.Add((schema is { } named ? Unquoted(sql, named) : null, Unquoted(sql, name)));
            }
        }

        return settings;
    }

    /// <summary>
    /// The next token of <paramref name="sql"/> from <paramref name="position"/>, past white space (a byte order mark
    /// too, where a token would begin, as SQLite reads it) and comments, as its range, or null at the end: a word
    /// (letters, digits, <c>_</c>, <c>$</c> and every character past ASCII, as SQLite's tokenizer has it); a string or
    /// name quoted with <c>'</c>, <c>"</c>, <c>`</c> (a doubled quote inside) or <c>[ ]</c> (one left open runs to the
    /// end, as does a <c>/*</c> comment); a parameter (see <see cref="AfterParameter"/>); or any other single
    /// character.
    /// </summary>
    private static Range? Next(string sql, ref int position)
    {
        var i = position;
        while (i < sql.Length)
        {
            var start = i;
            var c = sql[i];
            if (IsSpace(c) || c == '\uFEFF') // a byte order mark, where a token would begin
            {
                i++;
                continue;
            }

            if (c == '-' && i + 1 < sql.Length && sql[i + 1] == '-')
            {
                var end = sql.IndexOf('\n', i);
                i = end < 0 ? sql.Length : end + 1;
                continue;
            }

            if (c == '/' && i + 1 < sql.Length && sql[i + 1] == '*')
            {
                var end = sql.IndexOf("*/", i + 2, StringComparison.Ordinal);
                i = end < 0 ? sql.Length : end + 2;
                continue;
            }

            if (c is '\'' or '"' or '`')
            {
                i = AfterQuoted(sql, i, c);
            }
            else if (c == '[')
            {
                var end = sql.IndexOf(']', i + 1);
                i = end < 0 ? sql.Length : end + 1;
            }
            else if (c is '$' or '@' or ':' or '#')
            {
                i = AfterParameter(sql, i);
            }
            else if (IsWordCharacter(c))
            {
                while (i < sql.Length && IsWordCharacter(sql[i]))
                {
                    i++;
                }
            }
            else
            {
                i++;
            }

            position = i;
            return start..i;
        }

        position = i;
        return null;
    }

    /// <summary>
    /// Where the parameter that begins with <c>$</c>, <c>@</c>, <c>:</c> or <c>#</c> at <paramref name="start"/> ends,
    /// as SQLite reads it: word characters and <c>::</c> pairs, and after them a <c>(</c> takes in everything up to a
    /// <c>)</c> or white space (a Tcl array element), quotes and comment markers included. Without a word character,
    /// the sign alone.
    /// </summary>
    private static int AfterParameter(string sql, int start)
    {
        var i = start + 1;
        var named = false;
        while (i < sql.Length)
        {
            var c = sql[i];
            if (IsWordCharacter(c))
            {
                named = true;
                i++;
            }
            else if (c == '(' && named)
            {
                do
                {
                    i++;
                }
                while (i < sql.Length && !IsSpace(sql[i]) && sql[i] != ')');

                return i < sql.Length && sql[i] == ')' ? i + 1 : i;
            }
            else if (c == ':' && i + 1 < sql.Length && sql[i + 1] == ':')
            {
                i += 2;
            }
            else
            {
                break;
            }
        }

        return named ? i : start + 1;
    }

    /// <summary>Where the text quoted with <paramref name="quote"/> at <paramref name="start"/> ends: past its closing quote, a doubled one being part of it.</summary>
    private static int AfterQuoted(string sql, int start, char quote)
    {
        var i = start + 1;
        while ((i = sql.IndexOf(quote, i)) >= 0)
        {
            if (i + 1 < sql.Length && sql[i + 1] == quote)
            {
                i += 2;
                continue;
            }

            return i + 1;
        }

        return sql.Length;
    }

    private static bool IsSpace(char c) => c is ' ' or '\t' or '\n' or '\v' or '\f' or '\r';

    private static bool IsWordCharacter(char c) => char.IsAsciiLetterOrDigit(c) || c is '_' or '$' || c >= '\u0080';

    private static bool IsWord(string sql, Range token, string word)
        => sql.AsSpan()[token].Equals(word, StringComparison.OrdinalIgnoreCase);

    /// <summary>Whether the token is a name SQLite takes for a PRAGMA or its schema: a word, or quoted in any way.</summary>
    private static bool IsName(string sql, Range token)
        => sql[token.Start.Value] is var c && (IsWordCharacter(c) || c is '\'' or '"' or '`' or '[');

    private static bool Is(string sql, Range token, char character)
        => token.End.Value - token.Start.Value == 1 && sql[token.Start.Value] == character;

    /// <summary>
    /// The name the token holds: a word as it is, a quoted one without its quotes, doubled quotes made single. A quoted
    /// one is closed: one left open runs to the end of the text, so no <c>=</c> or <c>(</c> follows it to get it here.
    /// </summary>
    private static string Unquoted(string sql, Range token)
    {
        var text = sql[token];
        var quote = text[0];
        if (quote is not ('\'' or '"' or '`' or '['))
        {
            return text;
        }

        var inner = text[1..^1];
        return quote == '[' ? inner : inner.Replace(new string(quote, 2), quote.ToString(), StringComparison.Ordinal);
    }
}
