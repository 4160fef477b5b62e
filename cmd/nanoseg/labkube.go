package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/nanoseg/nanoseg/client/kube"

	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/lab/kubelab"
)

// kubeClient builds a clientset from the kubeconfig at path, or, when path
// is empty, from client-go's usual places ($KUBECONFIG, ~/.kube/config).
func kubeClient(path string) (kubernetes.Interface, error) {
	// Found and reported as the operator's verbs do (client/kube): the
	// error names the flag and the file once.
	cfg, _, err := kube.Config{Kubeconfig: path}.REST()
	if err != nil {
		return nil, err
	}
	// client-go's default of 5 requests a second would take minutes for a
	// large lab; this is a test harness talking to a test API server.
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, nil
}

// kubeFlags are the flags of the commands that register a lab in an API
// server.
type kubeFlags struct {
	enabled    bool
	kubeconfig string
}

func (k *kubeFlags) add(cmd *cobra.Command, toggle string) {
	if toggle != "" {
		cmd.Flags().BoolVar(&k.enabled, "kubernetes", false, toggle)
	}
	cmd.Flags().StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig of the API server (default $KUBECONFIG, then ~/.kube/config)")
}

func registerLab(ctx context.Context, k kubeFlags, p *lab.Plan) error {
	cs, err := kubeClient(k.kubeconfig)
	if err != nil {
		return err
	}
	return kubelab.Register(ctx, cs, p)
}

func unregisterLab(ctx context.Context, k kubeFlags, name string) error {
	cs, err := kubeClient(k.kubeconfig)
	if err != nil {
		return err
	}
	return kubelab.Unregister(ctx, cs, name)
}

func newLabKubeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kube",
		Short: "Register a lab in a Kubernetes API server as Namespaces, Nodes and Pods (a test harness playing the kubelet)",
		Long: `Register a lab in a Kubernetes API server, playing the kubelet's part for it:
its namespaces with their labels, a Node per simulated node (a workload's
"node", default one named after the lab), and each workload replica as a
Running, Ready Pod "<workload>-<i>" on its node with the workload's labels,
declared ports and addresses (status.podIPs). Meant for an API server without
a controller-manager (the pods' owner ReplicaSet does not exist); see
lab/kubelab. "lab up --kubernetes" and "lab down --kubernetes" do the same
around the lab's own life.`,
	}
	cmd.AddCommand(newLabKubeRegisterCmd(a), newLabKubeUnregisterCmd(a))
	return cmd
}

func newLabKubeRegisterCmd(a *app) *cobra.Command {
	var name, file string
	var k kubeFlags
	cmd := &cobra.Command{
		Use:   "register [--name LAB | -f TOPOLOGY.yaml]",
		Short: "Write the lab's namespaces, nodes and pods (with status) into the API server; safe to run again",
		Long: `Write the lab's namespaces, nodes and pods into the API server. --name takes
the plan of a lab that is up; -f takes a topology file and registers the
addresses it would get, without running anything (no root needed). Run again,
it updates what changed and deletes what the lab no longer has.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p *lab.Plan
			switch {
			case file != "" && name != "":
				return fmt.Errorf("lab kube register: give --name or --file, not both")
			case file != "":
				raw, err := os.ReadFile(file)
				if err != nil {
					return fmt.Errorf("lab kube register: %w", err)
				}
				top, err := lab.Parse(raw)
				if err != nil {
					return fmt.Errorf("lab kube register: %s:\n%w", file, err)
				}
				if p, err = lab.NewPlan(top, raw); err != nil {
					return fmt.Errorf("lab kube register: %s: %w", file, err)
				}
			default:
				n, err := labName(a, name)
				if err != nil {
					return fmt.Errorf("lab kube register: %w", err)
				}
				if p, err = lab.LoadPlan(a.cfg.Lab, n); err != nil {
					return fmt.Errorf("lab kube register: %w", err)
				}
			}
			if err := registerLab(cmd.Context(), k, p); err != nil {
				return fmt.Errorf("lab kube register: %w", err)
			}
			printRegistered(cmd, p)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "a lab that is up (default: the only lab that is up)")
	cmd.Flags().StringVarP(&file, "file", "f", "", "a topology file, registered without running it")
	k.add(cmd, "")
	return cmd
}

func printRegistered(cmd *cobra.Command, p *lab.Plan) {
	pods := 0
	for _, e := range p.Endpoints {
		if !e.External {
			pods++
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "lab %s registered: %d namespaces, nodes %v, %d pods\n", p.Lab, len(p.Topology.Namespaces), p.Nodes(), pods)
}

func newLabKubeUnregisterCmd(a *app) *cobra.Command {
	var name string
	var k kubeFlags
	cmd := &cobra.Command{
		Use:   "unregister --name LAB",
		Short: "Delete the lab's pods, nodes and the namespaces registration created from the API server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return fmt.Errorf("lab kube unregister: --name is required")
			}
			if err := unregisterLab(cmd.Context(), k, name); err != nil {
				return fmt.Errorf("lab kube unregister: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s unregistered\n", name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "lab name")
	k.add(cmd, "")
	return cmd
}
