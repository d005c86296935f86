namespace SqliteSaver.Data.Configuration;

/// <summary>
/// The one spelling of a database file's path that the pool and the write gate key on, and that SQLite is given:
/// full, with every symbolic link resolved as the operating system resolves it when it opens the file, so that a
/// <c>..</c> after a link leaves the folder the link leads to (as SQLite's own full path name does) and two spellings
/// through links of one file share its write gate. Hard links stay different spellings.
/// </summary>
internal static class FilePath
{
    /// <summary>How many links one path may go through, as Linux allows, before it counts as a loop.</summary>
    private const int MaxLinks = 40;

    private static readonly char[] Separators = [Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar];

    /// <summary>
    /// <paramref name="path"/> made full against the current directory and its links resolved. On Windows the path is
    /// first made full as Windows opens it (a <c>..</c> removes the name before it there, link or not).
    /// </summary>
    public static string Full(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            return ResolveLinks(Path.GetFullPath(path));
        }

        return ResolveLinks(Path.IsPathRooted(path) ? path : Path.Combine(Environment.CurrentDirectory, path));
    }

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
