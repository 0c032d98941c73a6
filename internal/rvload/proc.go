package rvload

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/punchd/punchd/internal/fdlimit"
)

// proc reads another process's figures from /proc.
type proc int

// rss is the resident set size in bytes.
func (p proc) rss() (int64, error) { return p.statusField("VmRSS") }

// hwm is the peak resident set size in bytes.
func (p proc) hwm() (int64, error) { return p.statusField("VmHWM") }

func (p proc) statusField(field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, p)
}

func (p proc) fds() (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
	return len(ents), err
}

func (p proc) threads() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no Threads in /proc/%d/status", p)
}

// clockTick is USER_HZ, 100 on every Linux ABI Go supports.
const clockTick = 100

// cpu is the process's user+system CPU time so far.
func (p proc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from the ")".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", p)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bad /proc/%d/stat", p)
	}
	// After ")": state is f[0], so utime (field 14) is f[11], stime f[12].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad /proc/%d/stat", p)
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// fdLimit is the soft RLIMIT_NOFILE of the process, as text.
func (p proc) fdLimit() string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Max open files"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return f[0]
			}
		}
	}
	return "?"
}

// fdRoom is how many peer connections fit in both processes at once: the
// server's connection cap for its fd limit (what `punchd rendezvous`
// sets), this process's own limit with the same reserve, less a margin
// for the flood's connections and the HTTP transports.
func fdRoom(server proc) int {
	const margin = 512
	var own syscall.Rlimit
	self := uint64(1 << 20)
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &own) == nil {
		self = own.Cur
	}
	srv := self
	if n, err := strconv.ParseUint(server.fdLimit(), 10, 64); err == nil {
		srv = n
	}
	return min(fdlimit.ConnCap(srv), fdlimit.ConnCap(self)) - margin
}

// runWait is how long the process's threads have waited on a run queue
// for a CPU so far (the second field of each thread's schedstat): on a
// shared machine, latency that neither process's CPU explains.
func (p proc) runWait() (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", p)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue // the thread ended
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum), nil
}
