// Command punchd links machines across NATs with WireGuard over ICE.
//
// This package only parses flags, environment and config file and wires the
// internal packages together; the logic lives in internal/.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "punchd:", err)
		os.Exit(1)
	}
}
