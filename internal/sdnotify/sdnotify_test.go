package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNotifySocket(t *testing.T) {
	dir := t.TempDir()
	abstract := fmt.Sprintf("@punchd-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	tests := []struct {
		name   string
		listen string // "" listens nowhere
		path   string
		sent   bool
		errs   bool
	}{
		{"unset", "", "", false, false},
		{"file socket", filepath.Join(dir, "notify"), filepath.Join(dir, "notify"), true, false},
		{"abstract socket", abstract, abstract, true, false},
		{"nobody listening", "", filepath.Join(dir, "absent"), false, true},
		{"relative path", "", "notify", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ln *net.UnixConn
			if tt.listen != "" {
				var err error
				ln, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: tt.listen, Net: "unixgram"})
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
			}
			sent, err := NotifySocket(tt.path, Ready)
			if sent != tt.sent || (err != nil) != tt.errs {
				t.Fatalf("NotifySocket(%q) = %v, %v; want sent=%v, error=%v", tt.path, sent, err, tt.sent, tt.errs)
			}
			if ln == nil {
				return
			}
			buf := make([]byte, 64)
			_ = ln.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := ln.Read(buf)
			if err != nil || string(buf[:n]) != "READY=1" {
				t.Fatalf("systemd's side read %q, %v; want READY=1", buf[:n], err)
			}
		})
	}
}
