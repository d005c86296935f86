using System.Data;
using System.Data.Common;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Data.Sqlite;
using SqliteSaver.Data.Pooling;

namespace SqliteSaver.Data;

/// <summary>
/// A SQL statement (or several, separated by semicolons) to run on a <see cref="SaverDbConnection"/>. Parameters are
/// <see cref="SqliteParameter"/>s.
/// </summary>
public sealed class SaverDbCommand : DbCommand
{
    private readonly SqliteCommand _inner = new()
    {
        // A negative timeout makes Microsoft.Data.Sqlite report SQLITE_BUSY at once instead of sleeping in fixed
        // 150 ms steps: the waiting is done by busy_timeout and this library.
        CommandTimeout = -1,
    };

    private SaverDbConnection? _connection;
    private SaverDbTransaction? _transaction;
    private int? _commandTimeout;

    /// <summary>Creates a command with no text and no connection.</summary>
    public SaverDbCommand()
    {
    }

    /// <summary>Creates a command with text, and optionally a connection and transaction.</summary>
    /// <param name="commandText">The SQL to run.</param>
    /// <param name="connection">The connection to run it on.</param>
    /// <param name="transaction">The transaction to run it in.</param>
    public SaverDbCommand(string? commandText, SaverDbConnection? connection = null, SaverDbTransaction? transaction = null)
    {
        CommandText = commandText;
        _connection = connection;
        _transaction = transaction;
    }

    /// <summary>The SQL to run.</summary>
    [AllowNull]
    public override string CommandText
    {
        get => _inner.CommandText;
        set => _inner.CommandText = value;
    }

    /// <summary>
    /// Seconds the command may spend waiting for locks. Defaults to the connection string's Default Timeout; 0
    /// means no limit.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    public override int CommandTimeout
    {
        get => _commandTimeout ?? _connection?.Options.DefaultTimeout ?? 30;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _commandTimeout = value;
        }
    }

    /// <summary>Only <see cref="CommandType.Text"/> is supported.</summary>
    /// <exception cref="ArgumentException">Another command type was set.</exception>
    public override CommandType CommandType
    {
        get => _inner.CommandType;
        set => _inner.CommandType = value;
    }

    /// <inheritdoc />
    public override bool DesignTimeVisible { get; set; }

    /// <inheritdoc />
    public override UpdateRowSource UpdatedRowSource
    {
        get => _inner.UpdatedRowSource;
        set => _inner.UpdatedRowSource = value;
    }

    /// <summary>The connection the command runs on.</summary>
    public new SaverDbConnection? Connection
    {
        get => _connection;
        set => _connection = value;
    }

    /// <summary>The command's parameters.</summary>
    public new SqliteParameterCollection Parameters => _inner.Parameters;

    /// <summary>The transaction the command runs in. Commands on a connection with an open transaction always run in it.</summary>
    public new SaverDbTransaction? Transaction
    {
        get => _transaction;
        set => _transaction = value;
    }

    /// <inheritdoc />
    protected override DbConnection? DbConnection
    {
        get => _connection;
        set => _connection = value switch
        {
            null => null,
            SaverDbConnection connection => connection,
            _ => throw new ArgumentException(
                $"A SaverDbCommand runs on a SaverDbConnection, not on a {value.GetType().Name}.", nameof(value)),
        };
    }

    /// <inheritdoc />
    protected override DbParameterCollection DbParameterCollection => _inner.Parameters;

    /// <inheritdoc />
    protected override DbTransaction? DbTransaction
    {
        get => _transaction;
        set => _transaction = value switch
        {
            null => null,
            SaverDbTransaction transaction => transaction,
            _ => throw new ArgumentException(
                $"A SaverDbCommand runs in a SaverDbTransaction, not in a {value.GetType().Name}.", nameof(value)),
        };
    }

    /// <summary>Creates a new <see cref="SqliteParameter"/>.</summary>
    /// <returns>The parameter.</returns>
    public new SqliteParameter CreateParameter() => _inner.CreateParameter();

    /// <summary>Runs the command and returns the number of rows inserted, updated or deleted.</summary>
    /// <returns>The rows changed by the command's statements.</returns>
    /// <exception cref="InvalidOperationException">The command has no open connection, or its transaction belongs elsewhere or has completed.</exception>
    /// <exception cref="SqliteException">SQLite reported an error.</exception>
    public override int ExecuteNonQuery()
    {
        Bind(nameof(ExecuteNonQuery));
        return _inner.ExecuteNonQuery();
    }

    /// <summary>Runs the command and returns the first column of the first row, or <see langword="null"/>.</summary>
    /// <returns>The value, or <see langword="null"/> when there is no row.</returns>
    /// <exception cref="InvalidOperationException">The command has no open connection, or its transaction belongs elsewhere or has completed.</exception>
    /// <exception cref="SqliteException">SQLite reported an error.</exception>
    public override object? ExecuteScalar()
    {
        Bind(nameof(ExecuteScalar));
        return _inner.ExecuteScalar();
    }

    /// <summary>Prepares the command's statements on the open connection.</summary>
    /// <exception cref="InvalidOperationException">The command has no open connection.</exception>
    /// <exception cref="SqliteException">SQLite could not prepare a statement.</exception>
    public override void Prepare()
    {
        Bind(nameof(Prepare));
        _inner.Prepare();
    }

    /// <summary>Asks SQLite to stop the running command at its earliest opportunity.</summary>
    public override void Cancel() => _inner.Cancel();

    /// <inheritdoc />
    protected override DbParameter CreateDbParameter() => CreateParameter();

    /// <inheritdoc />
    protected override DbDataReader ExecuteDbDataReader(CommandBehavior behavior)
    {
        var connection = Bind(nameof(ExecuteReader));
        var closeConnection = behavior.HasFlag(CommandBehavior.CloseConnection);

        // The physical connection belongs to the pool: closing the reader must close the SaverDbConnection instead.
        DbDataReader reader = _inner.ExecuteReader(behavior & ~CommandBehavior.CloseConnection);
        if (closeConnection)
        {
            reader = new ConnectionClosingDataReader(reader, connection);
        }

        connection.TrackReader(reader);
        return reader;
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _inner.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>Points the inner command at the open physical connection and checks the transaction.</summary>
    private SaverDbConnection Bind(string operation)
    {
        var connection = _connection ?? throw new InvalidOperationException($"{operation} requires the command to have a Connection.");
        PhysicalConnection physical = connection.GetOpenPhysical(operation);
        if (_transaction is not null)
        {
            if (_transaction.IsCompleted)
            {
                throw new InvalidOperationException($"{operation}: the command's transaction has completed; it is no longer usable.");
            }

            if (_transaction.Connection != connection)
            {
                throw new InvalidOperationException($"{operation}: the command's transaction belongs to another connection.");
            }
        }

        if (!ReferenceEquals(_inner.Connection, physical.Sqlite))
        {
            _inner.Connection = physical.Sqlite;
        }

        return connection;
    }
}
