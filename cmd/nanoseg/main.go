// Command nanoseg is the one nanoseg binary: lab, agent, observer, policy
// and evidence tools as subcommands. main only wires: it builds the command
// tree, runs it with a context cancelled on SIGINT or SIGTERM, and turns the
// result into an exit code.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCmd()
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "nanoseg: %v\n", err)
		var ec exitCoder
		if asExitCoder(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}
