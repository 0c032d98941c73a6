// Package fdlimit raises the open-file limit for servers that hold one
// descriptor per client.
package fdlimit

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// wantFDs is what Raise asks for (`punchd rendezvous`, its load
// benchmark): every peer holds one connection, and a public server should
// run out of memory or CPU long before it runs out of descriptors. Go raises the soft limit to the hard
// one at start; as root we raise the hard one too (up to fs.nr_open).
const wantFDs = 1 << 20

// Raise lifts RLIMIT_NOFILE as far as allowed and returns the
// soft limit in force afterwards.
func Raise() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	want := uint64(wantFDs)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n < want {
			want = n
		}
	}
	if lim.Cur >= want {
		return lim.Cur, nil
	}
	next := syscall.Rlimit{Cur: want, Max: max(lim.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		// Not root: the soft limit up to the hard one is all we may do.
		next = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if lim.Cur < lim.Max {
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
				return lim.Cur, err
			}
		}
		return next.Cur, nil
	}
	return next.Cur, nil
}

// ConnCap is the signaling listener's connection cap for an fd limit:
// room is left for the STUN/TURN sockets, relays and logs, so accept
// never fails with "too many open files".
func ConnCap(fdLimit uint64) int {
	const reserve, ceiling = 1024, 65536
	if fdLimit <= 2*reserve {
		return int(max(fdLimit/2, 16))
	}
	return int(min(fdLimit-reserve, ceiling))
}
