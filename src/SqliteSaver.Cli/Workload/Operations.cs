using System.Data.Common;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data;

namespace SqliteSaver.Cli.Workload;

/// <summary>
/// The workload's units of work, written the same way for both stacks as an application would write them: open a
/// connection, do the work, close it (back to the stack's pool).
/// </summary>
internal static class Operations
{
    private const int ReadKeys = 1000;
    private static readonly string Payload = new('x', 100);

    /// <summary>The name shown for a stack.</summary>
    public static string Name(Stack stack) => stack == Stack.Saver ? "SqliteSaver" : "Microsoft.Data.Sqlite";

    /// <summary>The connection string a stack opens the database with.</summary>
    /// <exception cref="BadInputException">The SqliteSaver keywords are not valid.</exception>
    public static string ConnectionString(Stack stack, string path, string saverKeywords)
    {
        if (stack == Stack.Plain)
        {
            return new SqliteConnectionStringBuilder { DataSource = path }.ConnectionString;
        }

        try
        {
            var builder = new SaverConnectionStringBuilder(saverKeywords) { DataSource = path };
            if (builder.Mode is SqliteOpenMode.Memory or SqliteOpenMode.ReadOnly)
            {
                // In memory each process, the child writers', would have a database of its own, without the workload's table.
                throw new BadInputException($"--connection-string: Mode={builder.Mode} is not allowed: the workload writes to the file --db names, in several processes.");
            }

            var connectionString = builder.ConnectionString;

            // The builder checks each value; the connection's data source checks them together (Min Pool Size
            // against Max Pool Size, Base Delay against Max Delay).
            using (new SaverDbConnection(connectionString))
            {
                return connectionString;
            }
        }
        catch (ArgumentException exception)
        {
            var message = exception.ParamName is null ? exception.Message : exception.Message.Replace($" (Parameter '{exception.ParamName}')", string.Empty, StringComparison.Ordinal);
            throw new BadInputException($"--connection-string: {Program.OneLine(message)}");
        }
    }

    /// <summary>Opens a connection of the stack; Microsoft.Data.Sqlite's gets synchronous=NORMAL, SqliteSaver's default.</summary>
    public static DbConnection Open(Stack stack, string connectionString)
    {
        DbConnection connection = stack == Stack.Saver ? new SaverDbConnection(connectionString) : new SqliteConnection(connectionString);
        try
        {
            connection.Open();
            if (stack == Stack.Plain)
            {
                using var synchronous = connection.CreateCommand();
                synchronous.CommandText = "PRAGMA synchronous = NORMAL";
                synchronous.ExecuteNonQuery();
            }

            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>One write transaction: read a row by key, insert this transaction's row, commit.</summary>
    public static void Write(Stack stack, string connectionString, string run, int writer, long seq, Random random)
    {
        using var connection = Open(stack, connectionString);
        using var transaction = connection.BeginTransaction();
        using (var read = connection.CreateCommand())
        {
            read.Transaction = transaction;
            read.CommandText = $"SELECT payload FROM {StressTable.Name} WHERE id = $id";
            read.Parameters.Add(Parameter(read, "$id", random.Next(1, ReadKeys + 1)));
            read.ExecuteScalar();
        }

        using (var insert = connection.CreateCommand())
        {
            insert.Transaction = transaction;
            insert.CommandText = $"INSERT INTO {StressTable.Name} (run, writer, seq, payload) VALUES ($run, $writer, $seq, $payload)";
            insert.Parameters.Add(Parameter(insert, "$run", run));
            insert.Parameters.Add(Parameter(insert, "$writer", writer));
            insert.Parameters.Add(Parameter(insert, "$seq", seq));
            insert.Parameters.Add(Parameter(insert, "$payload", Payload));
            insert.ExecuteNonQuery();
        }

        transaction.Commit();
    }

    /// <summary>One read: the latest hundred rows.</summary>
    public static void Read(Stack stack, string connectionString)
    {
        using var connection = Open(stack, connectionString);
        using var read = connection.CreateCommand();
        read.CommandText = $"SELECT count(*), max(length(payload)) FROM (SELECT payload FROM {StressTable.Name} ORDER BY id DESC LIMIT 100)";
        read.ExecuteScalar();
    }

    private static DbParameter Parameter(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        return parameter;
    }
}
