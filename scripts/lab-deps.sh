#!/usr/bin/env bash
# Installs what the NAT lab and its tests need, when missing and when we may
# (root on Debian). Without root it says what the lab tests will do: skip.
set -euo pipefail

# command -> Debian package
declare -A need=(
	[ip]=iproute2
	[nft]=nftables
	[ping]=iputils-ping
	[turnserver]=coturn
	[turnutils_natdiscovery]=coturn
	[stun]=stun-client
	[iperf3]=iperf3
	[miniupnpd]=miniupnpd
	[systemd-analyze]=systemd
	[chromium]=chromium
	[npm]=npm
)
missing=()
for cmd in "${!need[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
# Unique package names.
mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ]; then
	echo "lab-deps: not root, so not installing ${pkgs[*]}: the NAT-lab tests will skip (run make test as root)" >&2
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "lab-deps: missing ${pkgs[*]} and no apt-get to install them; install them by hand" >&2
	exit 1
fi
echo "lab-deps: installing ${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# coturn's package would start a system-wide turnserver; the lab runs its
# own, so keep the package's service from starting.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.punchd
chmod +x /usr/sbin/policy-rc.d.punchd
if [ ! -e /usr/sbin/policy-rc.d ]; then
	ln -s /usr/sbin/policy-rc.d.punchd /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.punchd' EXIT
fi
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
