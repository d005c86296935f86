namespace SqliteSaver.Data.Tests;

/// <summary>A test with a fresh temporary folder for its database files, released and deleted after each test.</summary>
public abstract class DatabaseTest
{
    private TempFolder? _folder;

    protected TempFolder Folder => _folder ?? throw new InvalidOperationException("The folder exists only while a test runs.");

    [SetUp]
    public void CreateFolder() => _folder = new TempFolder();

    [TearDown]
    public void DeleteFolder()
    {
        _folder?.Dispose();
        _folder = null;
    }
}
