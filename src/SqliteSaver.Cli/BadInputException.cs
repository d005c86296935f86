namespace SqliteSaver.Cli;

/// <summary>Input the tool cannot work with; reported as one line on standard error with exit code 2.</summary>
internal sealed class BadInputException(string message) : Exception(message);
