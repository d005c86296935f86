namespace SqliteSaver.Data.Contention;

/// <summary>What each transaction does.</summary>
internal enum Workload
{
    /// <summary>A transaction that reads a row by key, then inserts one.</summary>
    ReadThenInsert,

    /// <summary>One autocommit insert.</summary>
    Insert,
}
