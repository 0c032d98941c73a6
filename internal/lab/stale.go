package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A lab killed with its test binary (timeout, SIGKILL, panic in another
// goroutine) never runs Close. Each lab therefore leaves a marker naming
// its owner process; the next New removes the namespaces of labs whose
// owner is gone.

// writeMarker records that this process owns lab id. The process start
// time is kept with the PID so a recycled PID does not keep a dead lab
// alive forever.
func writeMarker(id string) error {
	if err := os.MkdirAll(markerDir, 0o755); err != nil {
		return fmt.Errorf("lab marker directory %s: %w (the lab needs root)", markerDir, err)
	}
	pid := os.Getpid()
	content := strconv.Itoa(pid) + " " + strconv.FormatUint(procStartTime(pid), 10) + "\n"
	if err := os.WriteFile(markerPath(id), []byte(content), 0o644); err != nil {
		return fmt.Errorf("lab marker: %w", err)
	}
	return nil
}

func markerPath(id string) string { return filepath.Join(markerDir, id) }

// ownerAlive reports whether the process recorded in a marker still runs.
func ownerAlive(marker string) bool {
	f := strings.Fields(marker)
	if len(f) == 0 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return false
	}
	start := procStartTime(pid)
	if start == 0 {
		return false // no such process
	}
	if len(f) > 1 {
		if want, err := strconv.ParseUint(f[1], 10, 64); err == nil && want != 0 && want != start {
			return false // the PID now belongs to another process
		}
	}
	return true
}

// procStartTime is field 22 of /proc/PID/stat (clock ticks since boot), or
// 0 when the process does not exist.
func procStartTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// fields from the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// labID returns the lab id inside one of our namespace names
// ("pdl-<6 hex>-<role>"), or "" for a name that is not ours.
func labID(ns string) string {
	rest, ok := strings.CutPrefix(ns, namePrefix+"-")
	if !ok {
		return ""
	}
	id, _, ok := strings.Cut(rest, "-")
	if !ok || len(id) != 6 {
		return ""
	}
	for _, c := range id {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return ""
		}
	}
	return id
}

// removeStale deletes the namespaces of labs whose owner is gone, and of
// labs without a marker (New writes the marker before the first
// namespace, so those are leftovers too). Errors are ignored: a lab that
// cannot be removed now is tried again by the next New.
func removeStale(ctx context.Context) {
	dead := map[string]bool{}
	entries, _ := os.ReadDir(markerDir)
	for _, e := range entries {
		b, err := os.ReadFile(markerPath(e.Name()))
		if err == nil && !ownerAlive(string(b)) {
			dead[e.Name()] = true
		}
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	out, _ := exec.CommandContext(lctx, "ip", "netns", "list").Output()
	cancel()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		id := labID(f[0])
		if id == "" {
			continue
		}
		// Stat the marker only now, after listing: a lab being created
		// concurrently wrote its marker before its namespace appeared.
		if _, err := os.Stat(markerPath(id)); dead[id] || os.IsNotExist(err) {
			_ = deleteNS(f[0])
		}
	}
	for id := range dead {
		_ = os.Remove(markerPath(id))
	}
}
