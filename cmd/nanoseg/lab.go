package main

import "github.com/spf13/cobra"

func newLabCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "lab", Short: "Run a lab of container-like network namespaces from a topology file"}
	cmd.PersistentFlags().String("state-dir", "", "directory of the lab's state (default /run/nanoseg/lab)")
	return cmd
}
