package lab

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a daemon a lab test runs (coturn, miniupnpd): its output is kept
// for failure messages, and stop ends it and waits.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  strings.Builder
	once sync.Once
}

// startProc starts cmd with its stdout and stderr captured; onOutput, when
// set, sees all output so far after each line (for readiness checks).
func startProc(cmd *exec.Cmd, onOutput func(all string)) (*proc, error) {
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		w.Close()
	}()
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			all := p.log.String()
			p.mu.Unlock()
			if onOutput != nil {
				onOutput(all)
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	return p, nil
}

// Log is what the process printed so far.
func (p *proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// stop sends SIGTERM and waits up to grace (0: SIGKILL at once), then
// kills it; it returns when the process is gone. Idempotent.
func (p *proc) stop(grace time.Duration) {
	p.once.Do(func() {
		if grace > 0 {
			_ = p.cmd.Process.Signal(os.Interrupt)
			select {
			case <-p.done:
				return
			case <-time.After(grace):
			}
		}
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

// Terminate ends a started (and not yet waited for) cmd: SIGTERM, up to
// grace for it to exit, then SIGKILL; it returns once the process is
// reaped.
func Terminate(cmd *exec.Cmd, grace time.Duration) {
	if cmd == nil || cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}
