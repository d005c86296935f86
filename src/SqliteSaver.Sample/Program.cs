// The README's quick start, word for word: a test compares the two and runs this program.
// quick-start:begin
using SqliteSaver.Data;

using var connection = new SaverDbConnection("Data Source=app.db");
connection.Open();

using (var create = connection.CreateCommand())
{
    create.CommandText = "CREATE TABLE IF NOT EXISTS note (id INTEGER PRIMARY KEY, text TEXT NOT NULL)";
    create.ExecuteNonQuery();
}

using (var insert = connection.CreateCommand())
{
    insert.CommandText = "INSERT INTO note (text) VALUES ($text)";
    insert.Parameters.AddWithValue("$text", "Hello, SQLite");
    insert.ExecuteNonQuery();
}

using var select = connection.CreateCommand();
select.CommandText = "SELECT id, text FROM note ORDER BY id";
using var reader = select.ExecuteReader();
while (reader.Read())
{
    Console.WriteLine($"{reader.GetInt64(0)}: {reader.GetString(1)}");
}
// quick-start:end
