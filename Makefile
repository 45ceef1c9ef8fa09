# cosigner: build, test and check targets. GNU make.

FUZZTIME ?= 10s

.DEFAULT_GOAL := build
.PHONY: build test bench fuzz check demo

build:
	go build -o bin/cosigner .

test:
	go test -race -count=1 ./...

# Benchmarks run with the garbage-collector pace the cosigner binary sets
# for itself (gc.go); test binaries do not run main.
bench:
	GOGC=400 go test -run '^$$' -bench . -benchmem ./...

# Runs every fuzz target in the module for FUZZTIME each (see .ci/fuzz.sh).
fuzz:
	bash .ci/fuzz.sh $(FUZZTIME)

check:
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi
	go vet ./...
	go mod tidy
	git diff --exit-code go.mod go.sum
	$(MAKE) test

demo: build
	bin/cosigner demo
