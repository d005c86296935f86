namespace SqliteSaver.Cli.Workload;

/// <summary>The connection layer a workload runs through.</summary>
internal enum Stack
{
    /// <summary>Microsoft.Data.Sqlite with its defaults, and synchronous=NORMAL as SqliteSaver has.</summary>
    Plain,

    /// <summary>SqliteSaver.Data with its defaults and any keywords the user added.</summary>
    Saver,
}
