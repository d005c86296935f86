namespace SqliteSaver.Data.Tests;

/// <summary>Counts this process's open file descriptors on a file, from /proc/self/fd (Linux).</summary>
internal static class OpenFiles
{
    public static int Count(string path)
    {
        var count = 0;
        foreach (var fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget == path)
                {
                    count++;
                }
            }
            catch (IOException)
            {
                // The descriptor was closed while we looked.
            }
        }

        return count;
    }
}
