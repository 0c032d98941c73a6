# punchd — build, test, demo.
#
#   make test       lint, unit tests, every fuzz target for a few seconds
#                   (fuzz-short); as root also the NAT-lab e2e tests
#                   (installs the apt packages it needs when missing)
#   make unit       unit tests only: no root needed, no namespace test runs
#   make fuzz-short each fuzz target for FUZZTIME (50000 inputs), as CI does
#   make demo       one-machine lab (as root): two NATed hosts get a tunnel
#
# A root shell may lack Go on its PATH, so find it where the Debian image keeps it too.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
STATICCHECK_VERSION := v0.8.2
# -p 1: the lab tests time ICE against a relay race; packages running side by
# side on 2 cores would make the timing, not the code, decide some paths.
GOTEST_FLAGS ?= -count=1 -p 1 -timeout 45m

.PHONY: all build test unit fuzz-short lint deps demo connect-time clean

all: build

build:
	$(GO) build -o bin/punchd ./cmd/punchd
	$(GO) build -o bin/punchd-lab ./cmd/punchd-lab

deps:
	@scripts/lab-deps.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Unit tests only (no root needed, nothing installed).
unit:
	$(GO) test $(GOTEST_FLAGS) -short ./...

test: deps lint
	$(GO) test $(GOTEST_FLAGS) ./...
	@$(MAKE) --no-print-directory fuzz-short

# Every fuzz target (discovered with go test -list) for FUZZTIME each: a
# count of inputs (Nx), not a duration, because Go 1.26's fuzz coordinator can
# end a duration-bounded run with a spurious "context deadline exceeded".
FUZZTIME ?= 50000x
fuzz-short:
	@GO=$(GO) scripts/fuzz-short.sh $(FUZZTIME)

demo: deps build
	bin/punchd-lab demo --punchd bin/punchd

# Time from both daemons started to first ping, median of 5, per e2e pairing.
connect-time: deps build
	bin/punchd-lab connect-time --punchd bin/punchd --runs 5

clean:
	rm -rf bin
