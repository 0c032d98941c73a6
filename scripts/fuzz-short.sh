#!/usr/bin/env bash
# Runs every fuzz target (func FuzzX) of the module briefly, one after the
# other, so that each is fuzzed on every `make test` and not only its seed
# corpus. The targets are discovered, not listed: a new FuzzX is run
# without touching this script.
#
#   scripts/fuzz-short.sh [FUZZTIME]     (default 50000x: inputs per target)
#
# A count (Nx) rather than a duration: with a duration, Go 1.26's fuzz
# coordinator sometimes ends the run with "context deadline exceeded" and
# no failing input (its own deadline racing its workers' shutdown); a count
# has no deadline. 50,000 inputs take about 1-15 s per target on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
fuzztime=${1:-${FUZZTIME:-50000x}}

# `go test -list` prints a package's matching names, then its "ok" line.
# -short: the lab's TestMain builds nothing for a listing.
targets=()
names=()
while read -r first second _; do
	case "$first" in
	Fuzz*) names+=("$first") ;;
	ok)
		for n in "${names[@]}"; do targets+=("$second $n"); done
		names=()
		;;
	esac
done < <($GO test -short -list '^Fuzz' ./... 2>/dev/null)

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz-short: no fuzz targets found (does the module build?)" >&2
	exit 1
fi
echo "fuzz-short: ${#targets[@]} targets, $fuzztime each"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# fuzz runs one target; its output is kept in $out as well.
fuzz() {
	# -run '^$': the package's tests ran already; -fuzzminimizetime bounds
	# the time a found failure spends shrinking its input.
	$GO test -run '^$' -fuzz "^${1}\$" -fuzztime "$fuzztime" -fuzzminimizetime 10s "$2" 2>&1 | tee "$out"
	return "${PIPESTATUS[0]}"
}
failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "fuzz-short: $name ($pkg)"
	if fuzz "$name" "$pkg"; then
		continue
	fi
	# Go's fuzzing engine sometimes ends a time-boxed run with "context
	# deadline exceeded" although no input failed (nothing is written to
	# testdata/fuzz). That, and only that, is tried once more; a found
	# failure always fails.
	if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written to' "$out"; then
		echo "fuzz-short: $name: the engine's deadline, no failing input; once more"
		if fuzz "$name" "$pkg"; then
			continue
		fi
	fi
	failed+=("$name ($pkg)")
done
if [ ${#failed[@]} -gt 0 ]; then
	printf 'fuzz-short: FAILED: %s\n' "${failed[@]}" >&2
	echo "fuzz-short: the failing input is in the package's testdata/fuzz/; rerun it with go test -run 'FuzzX/<name>'" >&2
	exit 1
fi
echo "fuzz-short: all ${#targets[@]} targets passed"
