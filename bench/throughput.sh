#!/usr/bin/env bash
# Throughput side by side in one run, in the project's NAT lab: punchd's
# direct path, stock wireguard-go (built here from the module proxy, never
# committed) configured with `wg`, the raw path, and punchd relayed through
# its own TURN and through Debian's coturn. Needs root.
#
#   bench/throughput.sh [--runs N] [--seconds N]     (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}

if [ "$(id -u)" -ne 0 ]; then
	echo "bench/throughput.sh needs root (network namespaces): run it as root" >&2
	exit 1
fi
scripts/lab-deps.sh
for cmd in iperf3 wg; do
	if ! command -v "$cmd" >/dev/null; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iperf3 wireguard-tools >/dev/null
		break
	fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The same wireguard-go version punchd links against, as a stock binary.
wgver=$($GO list -m -f '{{.Version}}' golang.zx2c4.com/wireguard)
(cd "$work" && GOBIN="$work" GOFLAGS= $GO install "golang.zx2c4.com/wireguard@$wgver")
make build >/dev/null
bin/punchd-lab bench --punchd bin/punchd --wireguard-go "$work/wireguard" "$@"
