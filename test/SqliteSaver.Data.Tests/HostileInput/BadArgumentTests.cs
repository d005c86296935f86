using System.Data;
using Microsoft.Data.Sqlite;
using Shouldly;
using SqliteSaver.Data.Tests.Pooling;

namespace SqliteSaver.Data.Tests.HostileInput;

/// <summary>Bad arguments to the public API get the standard .NET exception, naming what is wrong.</summary>
public class BadArgumentTests : DatabaseTest
{
    /// <summary>
    /// A command text holding a NUL (a fixed-size buffer's padding, say) is refused as it is set. SQLite takes the text
    /// to end there, and Microsoft.Data.Sqlite then loops without end: the library did so inside the write's
    /// transaction, holding the write lock and the process's write gate, so every other writer of the database, in
    /// this process and others, failed until the process ended, and Cancel() did not end it (a bug hunt's finding).
    /// </summary>
    [TestCase("INSERT INTO t VALUES (2);\0", 25)]
    [TestCase("INSERT INTO t VALUES (2)\0", 24)]
    [TestCase("\0", 0)]
    public void A_command_text_holding_a_NUL_is_refused_and_another_writer_goes_on(string text, int index)
    {
        var connectionString = Folder.ConnectionString("Default Timeout=5");
        using var connection = new SaverDbConnection(connectionString);
        connection.Open();
        ConnectionTests.Exec(connection, "CREATE TABLE t (x)");
        using var command = connection.CreateCommand();

        var error = Should.Throw<ArgumentException>(() => command.CommandText = text);
        Should.Throw<ArgumentException>(() => new SaverDbCommand(text, connection));

        error.Message.ShouldStartWith($"CommandText holds a NUL character at index {index}, where SQLite would take the text to end");
        command.CommandText.ShouldBe(string.Empty);
        PoolTests.Execute(connectionString, "INSERT INTO t VALUES (3)");
        ConnectionTests.Scalar(connection, "SELECT group_concat(x) FROM t").ShouldBe("3");
    }

    /// <summary>
    /// A reader asked for a column by a name none has says which columns there are (Microsoft.Data.Sqlite's message
    /// names only the name: "Specified argument was out of the range of valid values"), still as
    /// ArgumentOutOfRangeException; a null name or GetValues buffer is ArgumentNullException naming the parameter,
    /// where Microsoft.Data.Sqlite threw it naming 'key' and a NullReferenceException (an audit of the messages).
    /// </summary>
    [Test]
    public void A_reader_asked_for_a_column_it_has_not_names_its_columns()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1 AS id, 'a' AS name";
        using var reader = command.ExecuteReader();
        reader.Read().ShouldBeTrue();

        var byOrdinal = Should.Throw<ArgumentOutOfRangeException>(() => reader.GetOrdinal("nmae"));
        var byIndexer = Should.Throw<ArgumentOutOfRangeException>(() => reader["nmae"]);

        byOrdinal.ParamName.ShouldBe("name");
        byOrdinal.ActualValue.ShouldBe("nmae");
        byOrdinal.Message.ShouldStartWith("No column of this result set is named 'nmae'. Its columns: 'id', 'name'.");
        byIndexer.Message.ShouldBe(byOrdinal.Message);
        Should.Throw<ArgumentNullException>(() => reader.GetOrdinal(null!)).ParamName.ShouldBe("name");
        Should.Throw<ArgumentNullException>(() => reader[null!]).ParamName.ShouldBe("name");
        Should.Throw<ArgumentNullException>(() => reader.GetValues(null!)).ParamName.ShouldBe("values");
        reader.GetOrdinal("NAME").ShouldBe(1); // as Microsoft.Data.Sqlite: case-insensitive when no exact match
        reader["name"].ShouldBe("a");
        reader.Dispose();

        command.CommandText = "CREATE TEMP TABLE x (a)";
        using var noColumns = command.ExecuteReader();
        Should.Throw<InvalidOperationException>(() => noColumns.GetOrdinal("a")); // no columns: Microsoft.Data.Sqlite's own error
    }

    /// <summary>
    /// SQLite's "unable to open database file" for a file that does not exist says why it was not created: its folder
    /// does not exist (or is a file), or the Mode does not create files; for a folder, that it is one (an audit of the
    /// messages: it named only the file; a review found the first form taking a folder for a missing file).
    /// </summary>
    [TestCase("missing folder")]
    [TestCase("Mode=ReadWrite")]
    [TestCase("mode=rw URI")]
    [TestCase("a folder")]
    [TestCase("a file for a folder")]
    public void Opening_a_file_that_cannot_be_opened_says_why_where_that_can_be_told(string form)
    {
        var file = form switch
        {
            "missing folder" => Path.Combine(Folder.Path, "missing", "x.db"),
            "a file for a folder" => Path.Combine(Folder.File("plain"), "x.db"),
            _ => Folder.File("x.db"),
        };
        if (form == "a folder")
        {
            Directory.CreateDirectory(file);
        }
        else if (form == "a file for a folder")
        {
            File.WriteAllText(Folder.File("plain"), "not a folder");
        }

        var connectionString = form switch
        {
            "Mode=ReadWrite" => $"Data Source={file};Mode=ReadWrite",
            "mode=rw URI" => $"Data Source=file:{file}?mode=rw",
            _ => $"Data Source={file}",
        };
        using var connection = new SaverDbConnection(connectionString);

        var error = Should.Throw<SqliteException>(connection.Open);

        error.SqliteErrorCode.ShouldBe(14); // SQLITE_CANTOPEN
        error.Message.ShouldEndWith(form switch
        {
            "missing folder" => $"Its folder '{Path.GetDirectoryName(file)}' does not exist: SQLite creates the database file, not the folders it is in.",
            "a folder" => "It is a folder, not a database file.",
            "a file for a folder" => $"'{Folder.File("plain")}' is a file, not a folder.",
            _ => "No file is there (or this process may not look into its folder): SQLite creates it only with Mode=ReadWriteCreate (the default; mode=rwc in a file: URI) and where this process may create files.",
        });
        File.Exists(file).ShouldBeFalse();
    }

    [Test]
    public async Task Null_arguments_are_ArgumentNullException_naming_the_parameter()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        var builder = new SaverConnectionStringBuilder();

        Should.Throw<ArgumentNullException>(() => SaverDataSource.Create(null!)).ParamName.ShouldBe("connectionString");
        Should.Throw<ArgumentNullException>(() => SaverProviderFactory.Instance.CreateDataSource(null!)).ParamName.ShouldBe("connectionString");
        Should.Throw<ArgumentNullException>(() => new SaverDataSourceBuilder().UseTimeProvider(null!)).ParamName.ShouldBe("timeProvider");
        Should.Throw<ArgumentNullException>(() => new SaverDataSourceBuilder().UseRetryStrategy(null!)).ParamName.ShouldBe("retryStrategy");
        Should.Throw<ArgumentNullException>(() => SaverDbConnection.ClearPool(null!)).ParamName.ShouldBe("connection");
        Should.Throw<ArgumentNullException>(() => connection.RunInTransaction((Action<SaverDbTransaction>)null!)).ParamName.ShouldBe("work");
        Should.Throw<ArgumentNullException>(() => connection.RunInTransaction((Func<SaverDbTransaction, int>)null!)).ParamName.ShouldBe("work");
        (await Should.ThrowAsync<ArgumentNullException>(() => connection.RunInTransactionAsync((Func<SaverDbTransaction, CancellationToken, Task>)null!))).ParamName.ShouldBe("work");
        (await Should.ThrowAsync<ArgumentNullException>(() => connection.RunInTransactionAsync((Func<SaverDbTransaction, CancellationToken, Task<int>>)null!))).ParamName.ShouldBe("work");
        Should.Throw<ArgumentNullException>(() => CheckpointExtensions.Checkpoint(null!)).ParamName.ShouldBe("connection");
        Should.Throw<ArgumentNullException>(() => CheckpointExtensions.GetWalStatus(null!)).ParamName.ShouldBe("connection");
        (await Should.ThrowAsync<ArgumentNullException>(() => CheckpointExtensions.CheckpointAsync(null!))).ParamName.ShouldBe("connection");
        Should.Throw<ArgumentNullException>(() => SaverRetryStrategy.IsTransient(null!)).ParamName.ShouldBe("exception");

        Should.Throw<ArgumentNullException>(() => builder[null!]).ParamName.ShouldBe("keyword");
        Should.Throw<ArgumentNullException>(() => builder[null!] = 1).ParamName.ShouldBe("keyword");
        Should.Throw<ArgumentNullException>(() => builder.ContainsKey(null!)).ParamName.ShouldBe("keyword");
        Should.Throw<ArgumentNullException>(() => builder.Remove(null!)).ParamName.ShouldBe("keyword");
        Should.Throw<ArgumentNullException>(() => builder.ShouldSerialize(null!)).ParamName.ShouldBe("keyword");
        Should.Throw<ArgumentNullException>(() => builder.TryGetValue(null!, out _)).ParamName.ShouldBe("keyword");
        Should.Throw<ArgumentNullException>(() => builder.Add(null!, 1)).ParamName.ShouldBe("keyword");
    }

    [Test]
    public void Unknown_keywords_and_invalid_values_are_ArgumentException_wherever_a_connection_string_enters()
    {
        const string bad = "Data Source=a.db;Max Pool Size=0";

        Should.Throw<ArgumentException>(() => SaverDataSource.Create(bad)).ParamName.ShouldBe("Max Pool Size");
        Should.Throw<ArgumentException>(() => new SaverDbConnection(bad)).ParamName.ShouldBe("Max Pool Size");
        Should.Throw<ArgumentException>(() => new SaverDbConnection { ConnectionString = bad }).ParamName.ShouldBe("Max Pool Size");
        Should.Throw<ArgumentException>(() => new SaverDataSourceBuilder(bad)).ParamName.ShouldBe("Max Pool Size");
        new SaverConnectionStringBuilder().Remove("Nope").ShouldBeFalse(); // asking about an unknown keyword is no error
    }

    /// <summary>
    /// An async lambda given to RunInTransaction binds to its Func overload with a task for T: run, its transaction
    /// committed at the first await, before the write, and the caller got a task whose write then failed (or, unawaited,
    /// nothing at all). It is refused before anything runs, naming RunInTransactionAsync (a user's trial of the README),
    /// and so is an async void method given as its Action (a review of that change).
    /// </summary>
    [Test]
    public void An_asynchronous_unit_of_work_given_to_RunInTransaction_is_refused_before_it_runs()
    {
        PoolTests.Execute(Folder.ConnectionString(), "CREATE TABLE t (x INTEGER)");
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        var ran = 0;

        var errors = new[]
        {
            Should.Throw<ArgumentException>(() => connection.RunInTransaction(async transaction =>
            {
                Interlocked.Increment(ref ran);
                await Task.Yield();
                Insert(transaction);
            })),
            Should.Throw<ArgumentException>(() => connection.RunInTransaction(async transaction =>
            {
                Interlocked.Increment(ref ran);
                await Task.Yield();
                return Insert(transaction);
            })),
#pragma warning disable CA2012 // the analyzer sees the misuse under test: a ValueTask returned and dropped
            Should.Throw<ArgumentException>(() => connection.RunInTransaction(transaction =>
            {
                Interlocked.Increment(ref ran);
                return new ValueTask<int>(Insert(transaction));
            })),
            Should.Throw<ArgumentException>(() => connection.RunInTransaction(transaction =>
            {
                Interlocked.Increment(ref ran);
                Insert(transaction);
                return ValueTask.CompletedTask;
            })),
#pragma warning restore CA2012
            Should.Throw<ArgumentException>(() => connection.RunInTransaction(AsyncVoid)),
        };

        errors.Select(e => e.ParamName).ShouldAllBe(name => name == "work");
        errors.Select(e => e.Message).ShouldAllBe(message => message.Contains("use RunInTransactionAsync"));
        errors[1].Message.ShouldStartWith("RunInTransaction was given an asynchronous unit of work (an async lambda, or one that returns a Task or ValueTask)");
        errors[1].Message.ShouldContain("use RunInTransactionAsync(async (transaction, cancellationToken) => ...)");
        $"ran {ran}; state {connection.State}; rows {PoolTests.Scalar(Folder.ConnectionString(), "SELECT count(*) FROM t")}".ShouldBe("ran 0; state Closed; rows 0");
        connection.RunInTransaction(Insert).ShouldBe(1); // a synchronous one still runs
        connection.RunInTransaction(transaction => (object)Insert(transaction)).ShouldBe(1); // and one returning an object

        async void AsyncVoid(SaverDbTransaction transaction)
        {
            Interlocked.Increment(ref ran);
            await Task.Yield(); // had it run, an Insert here would throw on a pool thread: nothing after the await
        }
    }

    private static int Insert(SaverDbTransaction transaction)
    {
        using var command = transaction.Connection!.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "INSERT INTO t VALUES (1)";
        return command.ExecuteNonQuery();
    }

    [TestCase("Max Pool Size=3")]
    [TestCase("Data Source=;Max Pool Size=3")]
    public void An_empty_Data_Source_is_refused_as_each_connection_would_get_a_temporary_database_of_its_own(string connectionString)
    {
        var error = Should.Throw<ArgumentException>(() => new SaverDbConnection(connectionString));

        error.ParamName.ShouldBe("Data Source");
        error.Message.ShouldContain("'Data Source' is missing or empty");
    }

    [Test]
    public void A_file_uri_with_a_relative_path_is_refused_unless_it_is_in_memory()
    {
        var error = Should.Throw<ArgumentException>(() => new SaverDbConnection("Data Source=file:relative.db?cache=private"));

        error.ParamName.ShouldBe("Data Source");
        error.Message.ShouldContain("'file:relative.db?cache=private' with a relative path");
        Should.Throw<ArgumentException>(() => new SaverDbConnection("Data Source=file:?cache=private")).Message.ShouldContain("with no path");
        new SaverDbConnection("Data Source=file:named?mode=memory").DataSource.ShouldBe("file:named?mode=memory");
        new SaverDbConnection("Data Source=file:/tmp/full.db").DataSource.ShouldBe("/tmp/full.db");
    }

    [Test]
    public void A_file_uri_whose_path_decodes_to_a_NUL_is_refused_with_an_error_that_names_Data_Source_and_the_value()
    {
        // Path.GetFullPath's own error ("Null character in path.", parameter 'path') names neither. (A plain path
        // with a NUL never gets this far: ADO.NET's connection-string builder refuses it, naming Data Source.)
        var uri = $"file:{Folder.Path}/a%00b.db";

        var error = Should.Throw<ArgumentException>(() => new SaverDbConnection($"Data Source={uri}"));

        error.ParamName.ShouldBe("Data Source");
        error.Message.ShouldContain(uri);
    }

    [Test]
    public void Opening_without_a_connection_string_is_an_InvalidOperationException()
    {
        using var connection = new SaverDbConnection();
        connection.DataSource.ShouldBe(string.Empty); // asking creates no data source for an empty string
        connection.CreateCommand().CommandTimeout.ShouldBe(30);
        new SaverDbCommand().CommandTimeout.ShouldBe(30); // with no connection, as Microsoft.Data.Sqlite's default
        SaverDbConnection.ClearPool(connection);

        Should.Throw<InvalidOperationException>(connection.Open).Message.ShouldContain("ConnectionString");
        Should.Throw<InvalidOperationException>(() => connection.OpenAsync()).Message.ShouldContain("ConnectionString");
        connection.State.ShouldBe(ConnectionState.Closed);
    }

    [Test]
    public async Task A_disposed_data_source_refuses_every_use_with_ObjectDisposedException()
    {
        var dataSource = SaverDataSource.Create(Folder.ConnectionString());
        var created = dataSource.CreateConnection();
        await dataSource.DisposeAsync();

        Should.Throw<ObjectDisposedException>(dataSource.OpenConnection).Message.ShouldContain(nameof(SaverDataSource));
        await Should.ThrowAsync<ObjectDisposedException>(async () => await dataSource.OpenConnectionAsync());
        Should.Throw<ObjectDisposedException>(created.Open);
        await Should.ThrowAsync<ObjectDisposedException>(() => created.OpenAsync());
        Should.Throw<ObjectDisposedException>(() => dataSource.Checkpoint());
        await Should.ThrowAsync<ObjectDisposedException>(() => dataSource.CheckpointAsync());
        Should.Throw<ObjectDisposedException>(() => dataSource.GetWalStatus());
        dataSource.Clear(); // nothing to clear: no throw
        dataSource.Dispose(); // twice: no throw
    }

    /// <summary>
    /// As with Microsoft.Data.Sqlite (and SqlClient), disposing a command gives back what it holds, and the command
    /// runs again: code ported from it may reuse a command after a using block.
    /// </summary>
    [Test]
    public async Task A_disposed_command_runs_again_as_with_MDS()
    {
        using var plain = new SqliteConnection($"Data Source={Folder.File("plain.db")}");
        plain.Open();
        var plainCommand = plain.CreateCommand();
        plainCommand.CommandText = "SELECT 40 + 2";
        plainCommand.ExecuteScalar().ShouldBe(42L);
        plainCommand.Dispose();
        plainCommand.ExecuteScalar().ShouldBe(42L);

        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        var command = connection.CreateCommand();
        command.CommandText = "SELECT 40 + 2";
        command.ExecuteScalar().ShouldBe(42L);
        command.Dispose();

        command.ExecuteScalar().ShouldBe(42L);
        command.ExecuteNonQuery().ShouldBe(-1);
        using (var reader = command.ExecuteReader())
        {
            reader.Read().ShouldBeTrue();
        }

        command.Prepare();
        (await command.ExecuteScalarAsync()).ShouldBe(42L);
        command.Dispose();
        await using (var reader = await command.ExecuteReaderAsync())
        {
            (await reader.ReadAsync()).ShouldBeTrue();
        }

        command.Dispose();
        command.Dispose(); // twice: no throw
    }

    [Test]
    public void A_transaction_is_refused_on_another_connection_and_once_completed()
    {
        var connectionString = Folder.ConnectionString();
        PoolTests.Execute(connectionString, "CREATE TABLE t (x)");
        using var connection = new SaverDbConnection(connectionString);
        using var other = new SaverDbConnection(connectionString);
        connection.Open();
        other.Open();
        var transaction = connection.BeginTransaction();
        using var command = other.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1)";
        command.Transaction = transaction;

        Should.Throw<InvalidOperationException>(() => command.ExecuteNonQuery()).Message.ShouldContain("belongs to another connection");

        transaction.Commit();
        command.Connection = connection;
        Should.Throw<InvalidOperationException>(() => command.ExecuteNonQuery()).Message.ShouldContain("has completed");
        Should.Throw<InvalidOperationException>(transaction.Commit).Message.ShouldContain("already completed");
        Should.Throw<InvalidOperationException>(transaction.Rollback).Message.ShouldContain("already completed");
        transaction.Dispose(); // completed: no throw

        var closedWith = connection.BeginTransaction();
        connection.Close();
        Should.Throw<InvalidOperationException>(closedWith.Commit).Message.ShouldContain("already completed; it is no longer usable. It ended as its connection was closed");
        connection.Open();
        command.Transaction = closedWith;
        Should.Throw<InvalidOperationException>(() => command.ExecuteNonQuery()).Message.ShouldContain("has completed; it is no longer usable. It ended as its connection was closed");
        PoolTests.Scalar(connectionString, "SELECT count(*) FROM t").ShouldBe(0L);
    }

    [Test]
    public void Foreign_ADO_NET_objects_out_of_range_values_and_closed_connections_are_refused()
    {
        using var plain = new SqliteConnection("Data Source=:memory:");
        plain.Open();
        using var plainTransaction = plain.BeginTransaction();
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        using var command = connection.CreateCommand();
        var asDbCommand = (System.Data.Common.DbCommand)command;

        Should.Throw<ArgumentException>(() => asDbCommand.Connection = plain).Message.ShouldContain(nameof(SqliteConnection));
        Should.Throw<ArgumentException>(() => asDbCommand.Transaction = plainTransaction).Message.ShouldContain(nameof(SqliteTransaction));
        var timeout = Should.Throw<ArgumentOutOfRangeException>(() => command.CommandTimeout = -1);
        timeout.ParamName.ShouldBe("value");
        timeout.Message.ShouldStartWith("CommandTimeout must be a whole number of seconds, 0 (no limit but Busy Timeout and Retry) or more.");
        timeout.ActualValue.ShouldBe(-1);
        command.CommandTimeout = 0; // no limit: the bound is inclusive
        command.CommandTimeout.ShouldBe(0);
        Should.Throw<ArgumentException>(() => command.CommandType = CommandType.StoredProcedure);
        Should.Throw<InvalidOperationException>(connection.BeginTransaction).Message.ShouldContain("open connection");
        connection.GetSchema().Rows.Count.ShouldBe(new SqliteConnection().GetSchema().Rows.Count); // closed, as Microsoft.Data.Sqlite answers
        Should.Throw<InvalidOperationException>(() => connection.Checkpoint()).Message.ShouldContain("open");
        Should.Throw<NotSupportedException>(() => connection.ChangeDatabase("other"));

        connection.Open();
        Should.Throw<ArgumentOutOfRangeException>(() => connection.BeginTransaction(IsolationLevel.Chaos)).ParamName.ShouldBe("isolationLevel");
        Should.Throw<ArgumentOutOfRangeException>(() => connection.BeginTransaction((IsolationLevel)12345)).ParamName.ShouldBe("isolationLevel");
        var mode = Should.Throw<ArgumentOutOfRangeException>(() => connection.Checkpoint((CheckpointMode)99));
        mode.ParamName.ShouldBe("mode");
        mode.ActualValue.ShouldBe((CheckpointMode)99); // the error names the value, as for a negative CommandTimeout
        Should.Throw<InvalidOperationException>(() => connection.ConnectionString = "Data Source=b.db").Message.ShouldContain("open");
        connection.State.ShouldBe(ConnectionState.Open);
    }

    [Test]
    public void A_command_without_a_parameter_value_is_an_InvalidOperationException_and_the_connection_stays_usable()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        connection.Open();
        using var command = connection.CreateCommand();

        command.CommandText = "SELECT $missing";
        Should.Throw<InvalidOperationException>(() => command.ExecuteScalar()).Message.ShouldContain("Must add values"); // Microsoft.Data.Sqlite's

        ConnectionTests.Scalar(connection, "SELECT 1").ShouldBe(1L);
    }

    [Test]
    public async Task A_cancelled_token_is_honoured_before_anything_is_rented()
    {
        using var connection = new SaverDbConnection(Folder.ConnectionString());
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        await Should.ThrowAsync<OperationCanceledException>(() => connection.OpenAsync(cancelled.Token));

        connection.State.ShouldBe(ConnectionState.Closed);
        SaverDataSource.GetShared(connection.ConnectionString).Statistics.Total.ShouldBe(0);
    }

    /// <summary>
    /// Checkpoint, CheckpointAsync and GetWalStatus on another provider's DbConnection throw the ArgumentException their
    /// documentation names, with the parameter and the type they got: not the InvalidOperationException of a closed
    /// connection, which says to open it.
    /// </summary>
    [Test]
    public async Task A_checkpoint_on_another_providers_connection_is_an_ArgumentException_naming_it()
    {
        using var foreign = new ForeignConnection();

        var checkpoint = Should.Throw<ArgumentException>(() => foreign.Checkpoint());
        var status = Should.Throw<ArgumentException>(() => foreign.GetWalStatus());
        var checkpointAsync = await Should.ThrowAsync<ArgumentException>(() => foreign.CheckpointAsync());

        foreach (var error in new[] { checkpoint, status, checkpointAsync })
        {
            error.ParamName.ShouldBe("connection");
            error.Message.ShouldContain(nameof(ForeignConnection));
        }
    }

    /// <summary>An open connection of a provider that is neither this library nor Microsoft.Data.Sqlite.</summary>
    private sealed class ForeignConnection : System.Data.Common.DbConnection
    {
        [System.Diagnostics.CodeAnalysis.AllowNull]
        public override string ConnectionString { get; set; } = string.Empty;

        public override string Database => string.Empty;

        public override string DataSource => string.Empty;

        public override string ServerVersion => string.Empty;

        public override ConnectionState State => ConnectionState.Open;

        public override void ChangeDatabase(string databaseName) => throw new NotSupportedException();

        public override void Close()
        {
        }

        public override void Open()
        {
        }

        protected override System.Data.Common.DbTransaction BeginDbTransaction(IsolationLevel isolationLevel) => throw new NotSupportedException();

        protected override System.Data.Common.DbCommand CreateDbCommand() => throw new NotSupportedException();
    }
}
