namespace SqliteSaver.Data.Configuration;

/// <summary>
/// Spellings of a database file's path. <see cref="Full"/> is what SQLite is given and the pool keys on: full, as
/// text, with any <c>..</c> left for the operating system to resolve when the file is opened (after a symbolic link
/// it leaves the folder the link leads to, which removing it as text would not), so that a link repointed later is
/// followed by the next connection, as with Microsoft.Data.Sqlite. <see cref="Real"/> is the file itself, every link
/// resolved as the operating system resolves it, which the write gate keys on so that spellings of one file through
/// links share it. Hard links stay different spellings.
/// </summary>
internal static class FilePath
{
    /// <summary>How many links one path may go through, as Linux allows, before it counts as a loop.</summary>
    private const int MaxLinks = 40;

    private static readonly char[] Separators = [Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar];

    /// <summary>
    /// <paramref name="path"/> made full against the current directory, as text: empty and <c>.</c> names removed,
    /// <c>..</c> kept. On Windows, as Windows opens it (a <c>..</c> removes the name before it there, link or not).
    /// </summary>
    public static string Full(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            return Path.GetFullPath(path);
        }

        var full = Path.IsPathRooted(path) ? path : Path.Combine(Environment.CurrentDirectory, path);
        var root = Path.GetPathRoot(full)!;
        return root + string.Join(Path.DirectorySeparatorChar, full[root.Length..].Split(Separators, StringSplitOptions.RemoveEmptyEntries).Where(name => name != "."));
    }

    /// <summary><paramref name="path"/> made full (see <see cref="Full"/>) and its links resolved.</summary>
    public static string Real(string path) => ResolveLinks(Full(path));

    /// <summary>
    /// Walks a rooted path name by name: a <c>..</c> removes the last name resolved so far, a link is replaced by its
    /// target (from the root for an absolute one, from the link's folder for a relative one), and a name that does
    /// not exist (the database to be created) is taken as written. A path through more than <see cref="MaxLinks"/>
    /// links (a loop) is returned made full but unresolved: opening it fails as it would have.
    /// </summary>
    private static string ResolveLinks(string path)
    {
        var resolved = Path.GetPathRoot(path)!;
        var pending = new Stack<string>();
        Push(pending, path[resolved.Length..]);
        var links = 0;
        while (pending.TryPop(out var name))
        {
            if (name == ".")
            {
                continue;
            }

            if (name == "..")
            {
                resolved = Path.GetDirectoryName(resolved) ?? resolved; // none above the root
                continue;
            }

            var next = Path.Join(resolved, name);
            if (LinkTarget(next) is not { } target)
            {
                resolved = next;
                continue;
            }

            if (++links > MaxLinks)
            {
                return Path.GetFullPath(path);
            }

            if (Path.IsPathRooted(target))
            {
                resolved = Path.GetPathRoot(target)!;
                target = target[resolved.Length..];
            }

            Push(pending, target);
        }

        return resolved;
    }

    /// <summary>Pushes the names of <paramref name="names"/> so that the first is popped first.</summary>
    private static void Push(Stack<string> pending, string names)
    {
        var split = names.Split(Separators, StringSplitOptions.RemoveEmptyEntries);
        for (var i = split.Length - 1; i >= 0; i--)
        {
            pending.Push(split[i]);
        }
    }

    /// <summary>The text of the link at <paramref name="path"/>, or null when it is no link, does not exist or cannot be read.</summary>
    private static string? LinkTarget(string path)
    {
        try
        {
            FileSystemInfo entry = Directory.Exists(path) ? new DirectoryInfo(path) : new FileInfo(path);
            return entry.LinkTarget;
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            return null; // the open then meets what the operating system makes of it
        }
    }
}
