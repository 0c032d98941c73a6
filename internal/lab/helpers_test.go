package lab

import (
	"context"
	"testing"
	"time"
)

// newTestLab is a new lab for one test, closed when the test ends (failed
// or not), and a context that ends after timeout or with the test.
func newTestLab(t *testing.T, timeout time.Duration) (context.Context, *Lab) {
	t.Helper()
	return newTestLabWith(t, timeout, Options{})
}

// newTestLabWith is newTestLab with options (IPv6, say).
func newTestLabWith(t *testing.T, timeout time.Duration, opts Options) (context.Context, *Lab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	l, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return ctx, l
}
