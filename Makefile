SOLUTION := SqliteSaver.Data.sln
CONFIGURATION ?= Release

.PHONY: build test run pack lint

build:
	dotnet build $(SOLUTION) -c $(CONFIGURATION)

test:
	rm -rf TestResults
	dotnet test $(SOLUTION) -c $(CONFIGURATION) --logger trx --results-directory TestResults --blame-hang-timeout 5m

run:
	dotnet run --project src/SqliteSaver.Cli -c $(CONFIGURATION) -- demo

pack:
	dotnet pack $(SOLUTION) -c $(CONFIGURATION) -o artifacts

lint:
	dotnet format $(SOLUTION) --verify-no-changes

.PHONY: bench-contention
bench-contention:
	dotnet run -c $(CONFIGURATION) --project benchmarks/SqliteSaver.Data.Contention -- $(ARGS)

.PHONY: bench-paired
bench-paired:
	dotnet run -c $(CONFIGURATION) --project benchmarks/SqliteSaver.Data.Paired -- $(ARGS)

.PHONY: bench
bench:
	dotnet run -c $(CONFIGURATION) --project benchmarks/SqliteSaver.Data.Benchmarks -- --filter '*' --job short $(ARGS)

# The soak test (not part of make test, which runs a 20 s version): make soak ARGS="--minutes 5"; 2 minutes by default.
.PHONY: soak
soak:
	dotnet run -c $(CONFIGURATION) --project test/SqliteSaver.Data.Soak -- $(ARGS)
