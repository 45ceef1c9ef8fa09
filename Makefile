# cosigner: build, test and check targets. GNU make.

FUZZTIME ?= 10s

.DEFAULT_GOAL := build
.PHONY: build test bench fuzz check demo

build:
	go build -o bin/cosigner .

test:
	go test -race -count=1 ./...

bench:
	go test -run '^$$' -bench . -benchmem ./...

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

demo:
	@echo "make demo: the demo ('cosigner demo': an in-process relay and three signers) is not built yet." >&2
	@echo "What works today: 'make test' (the BLS engine and the CLI tests), 'make build', then" >&2
	@echo "'bin/cosigner verify --help' (offline BLS signature verification)." >&2
	@exit 1
