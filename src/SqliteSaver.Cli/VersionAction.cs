using System.CommandLine;
using System.CommandLine.Invocation;
using System.Reflection;

namespace SqliteSaver.Cli;

/// <summary>
/// <c>--version</c>: prints this tool's version, not the entry assembly's (which is the test host when the tool
/// runs inside a test).
/// </summary>
internal sealed class VersionAction : SynchronousCommandLineAction
{
    public override int Invoke(ParseResult parseResult)
    {
        var assembly = typeof(VersionAction).Assembly;
        parseResult.InvocationConfiguration.Output.WriteLine(
            assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? assembly.GetName().Version?.ToString());
        return ExitCodes.Success;
    }
}
