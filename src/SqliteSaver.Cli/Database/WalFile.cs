using System.Buffers.Binary;

namespace SqliteSaver.Cli.Database;

/// <summary>Reads a <c>-wal</c> file as SQLite lays it out: a 32-byte header, then frames of a 24-byte header and a page.</summary>
internal static class WalFile
{
    private const int HeaderBytes = 32;
    private const int FrameHeaderBytes = 24;

    /// <summary>
    /// The frames of committed transactions in the <c>-wal</c> file at <paramref name="path"/>: those after its
    /// header whose salts match the header's (frames left from before SQLite last started the file over carry older
    /// salts), up to the last one that ends a commit. Checksums are not verified, so the frames of a commit torn by a
    /// crash may count until SQLite recovers the file. It reads every frame's header, so its cost grows with the file:
    /// fine for one look from the tool, too much for the library's status reads, which a health check repeats.
    /// </summary>
    /// <returns>0 when there is no file, or no valid header.</returns>
    public static long CommittedFrames(string path)
    {
        try
        {
            using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            Span<byte> header = stackalloc byte[HeaderBytes];
            if (RandomAccess.Read(file, header, 0) < HeaderBytes
                || (BinaryPrimitives.ReadUInt32BigEndian(header) & ~1u) != 0x377f0682 // the magic number, either byte order of checksums
                || BinaryPrimitives.ReadUInt32BigEndian(header[8..]) is < 512 or > 65536)
            {
                return 0;
            }

            var frameBytes = FrameHeaderBytes + (long)BinaryPrimitives.ReadUInt32BigEndian(header[8..]);
            var salts = header[16..24];
            Span<byte> frame = stackalloc byte[16]; // page number, database size after a commit (0 in other frames), salts
            long committed = 0;
            for (long i = 0; RandomAccess.Read(file, frame, HeaderBytes + (i * frameBytes)) == frame.Length && frame[8..].SequenceEqual(salts); i++)
            {
                if (BinaryPrimitives.ReadUInt32BigEndian(frame[4..]) != 0)
                {
                    committed = i + 1;
                }
            }

            return committed;
        }
        catch (Exception exception) when (exception is FileNotFoundException or DirectoryNotFoundException)
        {
            return 0; // deleted meanwhile, as SQLite does when the last connection closes
        }
    }
}
