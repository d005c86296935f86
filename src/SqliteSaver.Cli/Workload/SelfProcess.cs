using System.Diagnostics;
using System.Runtime.InteropServices;

namespace SqliteSaver.Cli.Workload;

/// <summary>
/// Starts this tool again as a child process: <c>dotnet SqliteSaver.Cli.dll ...</c>, which works the same under
/// <c>dotnet run</c>, as an installed tool and from a test project (whose entry assembly is the test host).
/// </summary>
internal static class SelfProcess
{
    public static ProcessStartInfo StartInfo(IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(typeof(SelfProcess).Assembly.Location);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return start;
    }

    /// <summary>The <c>dotnet</c> host running this process, else the one of the runtime in use, else the one on the PATH.</summary>
    private static string DotnetHost()
    {
        var name = OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet";
        var process = Environment.ProcessPath;
        if (process is not null && Path.GetFileName(process).Equals(name, StringComparison.OrdinalIgnoreCase))
        {
            return process;
        }

        // The shared runtime lives in <dotnet root>/shared/Microsoft.NETCore.App/<version>/.
        var root = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        var host = Path.Combine(root, name);
        return File.Exists(host) ? host : name;
    }
}
