// Command ptyreclaim finds and releases leaked pseudo-terminals and stuck
// children. All the work is in package cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ptyreclaim/ptyreclaim/reclaim/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.StdIO())
	stop()
	os.Exit(code)
}
