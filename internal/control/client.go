package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
)

// GetStatus asks the daemon listening on the unix socket at path for its status.
func GetStatus(ctx context.Context, path string) (Status, error) {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://punchd/v1/status", nil)
	if err != nil {
		return Status{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return Status{}, fmt.Errorf("no punchd daemon answers on %s: is `punchd up` running? (use the same --state-dir or --control-socket): %w", path, err)
		}
		if errors.Is(err, os.ErrPermission) {
			return Status{}, fmt.Errorf("not allowed to open control socket %s: run as root or as a member of the socket's group: %w", path, err)
		}
		return Status{}, fmt.Errorf("ask daemon on %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return Status{}, fmt.Errorf("daemon on %s answered %s: %s", path, resp.Status, body)
	}
	var st Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("decode status from %s: %w", path, err)
	}
	return st, nil
}
