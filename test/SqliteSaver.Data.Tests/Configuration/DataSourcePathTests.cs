using Microsoft.Data.Sqlite;
using Shouldly;

namespace SqliteSaver.Data.Tests.Configuration;

/// <summary>Data Source paths through symbolic links: the file SQLite and the operating system open, and its one write gate.</summary>
public class DataSourcePathTests : DatabaseTest
{
    [Test]
    public void A_Data_Source_with_dotdot_after_a_symbolic_link_opens_the_file_Microsoft_Data_Sqlite_opens()
    {
        MakeLink();
        var spelled = Path.Combine(Folder.Path, "link", "..", "x.db"); // {folder}/a/x.db, as the link leads to a/b
        using (var plain = new SqliteConnection($"Data Source={spelled};Pooling=false"))
        {
            plain.Open();
            using var create = plain.CreateCommand();
            create.CommandText = "CREATE TABLE made_by_mds (x)";
            create.ExecuteNonQuery();
        }

        using var saver = new SaverDbConnection($"Data Source={spelled}");
        saver.Open();
        using var command = saver.CreateCommand();
        command.CommandText = "SELECT count(*) FROM sqlite_master WHERE name = 'made_by_mds'";

        // Before, "link/.." was removed as text: a new, empty {folder}/x.db.
        command.ExecuteScalar().ShouldBe(1L);
        saver.DataSource.ShouldBe(spelled); // as SQLite is given it, to resolve as it opens
        File.Exists(Path.Combine(Folder.Path, "x.db")).ShouldBeFalse();
    }

    /// <summary>
    /// The deploy pattern of a <c>current</c> link switched to a new release, then the pools cleared: the next
    /// connection follows the link, as with Microsoft.Data.Sqlite (a review found b99c2ed gave SQLite the path as
    /// resolved when the string was first used, so the old release's database stayed open for good).
    /// </summary>
    [Test]
    public void A_link_repointed_while_the_pools_were_cleared_is_followed()
    {
        Directory.CreateDirectory(Path.Combine(Folder.Path, "v1"));
        Directory.CreateDirectory(Path.Combine(Folder.Path, "v2"));
        var current = Path.Combine(Folder.Path, "current");
        File.CreateSymbolicLink(current, Path.Combine(Folder.Path, "v1"));
        var connectionString = $"Data Source={Path.Combine(current, "app.db")}";
        using (var first = new SaverDbConnection(connectionString))
        {
            first.Open();
            Execute(first, "CREATE TABLE v1 (x)");
        }

        SaverDbConnection.ClearAllPools();
        File.Delete(current);
        File.CreateSymbolicLink(current, Path.Combine(Folder.Path, "v2"));

        using var second = new SaverDbConnection(connectionString);
        second.Open();
        Execute(second, "CREATE TABLE v2 (x)");
        using var tables = second.CreateCommand();
        tables.CommandText = "SELECT group_concat(name) FROM sqlite_master";
        tables.ExecuteScalar().ShouldBe("v2");
        File.Exists(Path.Combine(Folder.Path, "v2", "app.db")).ShouldBeTrue();
    }

    [TestCase("{0}/link/test.db")]
    [TestCase("{0}/relative-link/test.db")]
    [TestCase("{0}/relative-link/../../link/./test.db")]
    [TestCase("file:{0}/link/../b/test.db")] // SQLite resolves the link before the ".."
    [TestCase("{0}/a/b/../b/test.db")]
    [TestCase("/..{0}/a/b/test.db")] // ".." at the root stays at the root
    [TestCase("{0}/dot-link/test.db")]
    [TestCase("{0}/link-40/test.db")] // as many links as Linux follows in one path
    public void Writers_through_two_spellings_of_one_file_queue_at_one_write_gate(string otherSpelling)
    {
        MakeLink();
        const string Options = ";Busy Timeout=100;Retry=0;Default Timeout=30";
        using var holderSource = SaverDataSource.Create($"Data Source={Path.Combine(Folder.Path, "a", "b", "test.db")}{Options}");
        using var writerSource = SaverDataSource.Create($"Data Source={otherSpelling.Replace("{0}", Folder.Path, StringComparison.Ordinal)}{Options}");
        using var holder = holderSource.OpenConnection();
        Execute(holder, "CREATE TABLE t (x)");
        var transaction = holder.BeginTransaction();
        Execute(holder, "INSERT INTO t VALUES (1)");

        var writer = Task.Factory.StartNew(
            () =>
            {
                using var connection = writerSource.OpenConnection();
                Execute(connection, "INSERT INTO t VALUES (2)");
            },
            TaskCreationOptions.LongRunning);
        Wait.Until(() => writer.IsCompleted || holderSource.Executor.Gate!.WaitingCount == 1);

        // Two gates (the link's spelling had its own): the writer failed "database is locked" after Busy Timeout.
        transaction.Commit();
        Should.NotThrow(() => writer.Wait(TimeSpan.FromSeconds(30)));
        writerSource.Executor.Gate.ShouldBeSameAs(holderSource.Executor.Gate);
        using var count = holder.CreateCommand();
        count.CommandText = "SELECT count(*) FROM t";
        count.ExecuteScalar().ShouldBe(2L);
    }

    [TestCase("{0}/./a//x.db", "{0}/a/x.db")]
    [TestCase("{0}/a/../x.db", "{0}/a/../x.db")]
    [TestCase("file:{0}/./a//x.db", "{0}/a/x.db")] // a file: URI's path too
    public void The_DataSource_is_the_path_made_full_without_empty_and_dot_names(string spelled, string full)
    {
        using var connection = new SaverDbConnection($"Data Source={spelled.Replace("{0}", Folder.Path, StringComparison.Ordinal)}");

        connection.DataSource.ShouldBe(full.Replace("{0}", Folder.Path, StringComparison.Ordinal));
    }

    [Test]
    public void A_relative_Data_Source_is_made_full_against_the_current_directory()
    {
        using var connection = new SaverDbConnection("Data Source=relative.db");

        connection.DataSource.ShouldBe(Path.Combine(Environment.CurrentDirectory, "relative.db"));
    }

    [Test]
    public void A_Data_Source_through_a_loop_of_symbolic_links_fails_to_open()
    {
        File.CreateSymbolicLink(Path.Combine(Folder.Path, "loop-a"), "loop-b");
        File.CreateSymbolicLink(Path.Combine(Folder.Path, "loop-b"), "loop-a");

        // Bounded: following the links without a limit never ends.
        Should.CompleteIn(
            () => Should.Throw<SqliteException>(() =>
            {
                using var connection = new SaverDbConnection($"Data Source={Path.Combine(Folder.Path, "loop-a", "test.db")}");
                connection.Open();
            }),
            TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// {folder}/a/b is a folder, {folder}/link a symbolic link to it, {folder}/relative-link one that says "a/b",
    /// {folder}/dot-link one that says "./a/./b", and {folder}/link-40 the last of a chain of 40 links to relative-link.
    /// </summary>
    private void MakeLink()
    {
        Directory.CreateDirectory(Path.Combine(Folder.Path, "a", "b"));
        File.CreateSymbolicLink(Path.Combine(Folder.Path, "link"), Path.Combine(Folder.Path, "a", "b"));
        File.CreateSymbolicLink(Path.Combine(Folder.Path, "relative-link"), Path.Combine("a", "b"));
        File.CreateSymbolicLink(Path.Combine(Folder.Path, "dot-link"), Path.Combine(".", "a", ".", "b"));
        var previous = "relative-link";
        for (var i = 2; i <= 40; i++)
        {
            File.CreateSymbolicLink(Path.Combine(Folder.Path, $"link-{i}"), previous);
            previous = $"link-{i}";
        }
    }

    private static void Execute(SaverDbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}
