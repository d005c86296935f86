// Micro benchmarks. Usage: make bench (or dotnet run -c Release --project benchmarks/SqliteSaver.Data.Benchmarks --
// [BenchmarkDotNet arguments, e.g. --job short --filter *Open*]).
using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(SqliteSaver.Data.Benchmarks.ProviderBenchmarks).Assembly).Run(args);
