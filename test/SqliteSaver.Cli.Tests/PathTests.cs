using Shouldly;
using SqliteSaver.Data;

namespace SqliteSaver.Cli.Tests;

/// <summary>
/// The tool opens the file the library opens for the same path: a <c>..</c> after a symbolic link, a link whose target
/// is missing, a <c>file:</c> URI. Before, it made paths full as text (<c>link/..</c> removed before the link was
/// followed) and checked them with checks that count a dangling link as a file (a bug hunt's findings).
/// </summary>
public class PathTests : CliTest
{
    [Test]
    public void Info_through_a_dot_dot_after_a_symbolic_link_reads_the_file_the_library_opens()
    {
        MakeLinkToSub();
        using (var real = Open(Path.Combine(Folder, "real", "app.db")))
        {
            Execute(real, "CREATE TABLE the_real_one (x)");
        }

        using (var beside = Open(PathOf("app.db")))
        {
            Execute(beside, "CREATE TABLE a (x); CREATE TABLE b (x); CREATE TABLE c (x); CREATE TABLE d (x);");
        }

        var given = Path.Combine(Folder, "link", "..", "app.db");
        using var library = new SaverDbConnection($"Data Source={given}");
        library.Open();
        using var pages = library.CreateCommand();
        pages.CommandText = "PRAGMA page_count";

        var run = CliRun.Of("info", given, "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        run.Json().GetProperty("pageCount").GetInt64().ShouldBe((long)pages.ExecuteScalar()!);
        run.Json().GetProperty("pageCount").GetInt64().ShouldBe(2); // real/app.db: the beside file has 5
    }

    [Test]
    public void Stress_through_a_dot_dot_after_a_symbolic_link_creates_the_database_where_the_library_would()
    {
        MakeLinkToSub();

        var run = CliRun.Of("stress", "--db", Path.Combine(Folder, "link", "..", "new.db"), "--seconds", "0.3", "--threads", "1", "--processes", "0", "--read-ratio", "0", "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        File.Exists(Path.Combine(Folder, "real", "new.db")).ShouldBeTrue();
        File.Exists(PathOf("new.db")).ShouldBeFalse();
    }

    [TestCase("info")]
    [TestCase("checkpoint")]
    public void A_symbolic_link_whose_target_is_missing_is_a_missing_file(string command)
    {
        File.CreateSymbolicLink(PathOf("dangling.db"), PathOf("nowhere.db"));

        var run = CliRun.Of(command, PathOf("dangling.db"));

        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldBe($"sqlite-saver {command}: {PathOf("dangling.db")}: no such file{Environment.NewLine}");
        File.Exists(PathOf("nowhere.db")).ShouldBeFalse();
    }

    [Test]
    public void Stress_through_a_symbolic_link_whose_target_is_missing_creates_the_target_as_the_library_does()
    {
        File.CreateSymbolicLink(PathOf("dangling.db"), PathOf("nowhere.db"));

        var run = CliRun.Of("stress", "--db", PathOf("dangling.db"), "--seconds", "0.3", "--threads", "1", "--processes", "0", "--read-ratio", "0", "--json");

        run.ExitCode.ShouldBe(0, run.Error);
        File.Exists(PathOf("nowhere.db")).ShouldBeTrue();
    }

    /// <summary>
    /// SQLite (and the library) read <c>file:app.db</c> as a URI naming <c>app.db</c>; the tool's checks took it for a
    /// file name, and stress created a stray database named <c>file:app.db</c>. The tool takes paths only.
    /// </summary>
    [TestCase("stress", "--db", "{0}", "--seconds", "0.3", "--threads", "1", "--processes", "0")]
    [TestCase("info", "{0}")]
    [TestCase("checkpoint", "{0}")]
    public void A_file_URI_is_refused_naming_what_to_give_instead(params string[] arguments)
    {
        using (var app = Open(PathOf("app.db")))
        {
            Execute(app, "CREATE TABLE t (x)");
        }

        var uri = $"file:{PathOf("app.db")}";
        var before = Directory.GetFileSystemEntries(Folder).Order().ToArray();

        var run = CliRun.Of([.. arguments.Select(a => a.Replace("{0}", uri, StringComparison.Ordinal))]);

        run.ExitCode.ShouldBe(2, run.Error);
        run.Error.ShouldContain($"{uri}: a file: URI; give the database's path instead");
        Directory.GetFileSystemEntries(Folder).Order().ShouldBe(before);
    }

    /// <summary>
    /// An option the command does not have is taken for its PATH by the parser: the error says it is neither (after
    /// <c>--</c> too, where it can only be a file, which does not exist).
    /// </summary>
    [TestCase("--bogus")]
    [TestCase("--", "-missing.db")]
    public void An_unknown_option_where_the_path_goes_is_said_to_be_neither(params string[] arguments)
        => CliRun.Of(["info", .. arguments]).Error.ShouldBe(
            $"sqlite-saver info: {arguments[^1]}: no such file, nor an option of this command (see --help){Environment.NewLine}");

    /// <summary>{folder}/link is a symbolic link to {folder}/real/sub, so {folder}/link/.. is {folder}/real.</summary>
    private void MakeLinkToSub()
    {
        Directory.CreateDirectory(Path.Combine(Folder, "real", "sub"));
        File.CreateSymbolicLink(PathOf("link"), Path.Combine(Folder, "real", "sub"));
    }
}
