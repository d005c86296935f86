using System.Text.Json;

namespace SqliteSaver.Cli;

/// <summary>How the tool writes and reads JSON: camelCase names, indented.</summary>
internal static class Json
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static void Write<T>(TextWriter output, T value) => output.WriteLine(JsonSerializer.Serialize(value, Options));
}
