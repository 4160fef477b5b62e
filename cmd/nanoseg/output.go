package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// outputFlag registers --output (-o) on cmd with default def, and makes
// cmd refuse any value but allowed before it runs, naming them: a format
// it does not write must not silently become the default one.
func outputFlag(cmd *cobra.Command, p *string, def string, allowed ...string) {
	words := strings.Join(allowed[:len(allowed)-1], ", ") + " or " + allowed[len(allowed)-1]
	cmd.Flags().StringVarP(p, "output", "o", def, words)
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if !slices.Contains(allowed, *p) {
			return fmt.Errorf("%s: --output: %q is not %s", strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" "), *p, words)
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
}
