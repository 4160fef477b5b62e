//go:build linux

package realnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nanoseg/nanoseg/internal/kubetest"
)

// ControlPlane is kube-controller-manager and kube-scheduler beside a
// kubetest API server: what a cluster needs beyond the API server for
// Deployments, DaemonSets, ServiceAccounts, EndpointSlices and scheduling
// (the upstream e2e suite needs all of them).
type ControlPlane struct {
	Dir               string // logs: kube-controller-manager.log, kube-scheduler.log
	controller, sched *kubetest.Process
}

// StartControlPlane starts kube-controller-manager (every controller but
// node-ipam: the node's pod range is its CNI config's; no leader
// election; ServiceAccount tokens signed with the cluster's key; the CA as
// root CA and CSR signer) and kube-scheduler, both with the admin
// kubeconfig and serving on 127.0.0.1 only, and waits for their /healthz.
// Their logs go to dir.
func StartControlPlane(ctx context.Context, c *kubetest.Cluster, bin, dir string) (*ControlPlane, error) {
	if bin == "" {
		bin = kubetest.Bin()
	}
	var missing []error
	for _, b := range []string{"kube-controller-manager", "kube-scheduler"} {
		if !fileExists(filepath.Join(bin, b)) {
			missing = append(missing, fmt.Errorf("missing %s (hack/kube-bins.sh %s)", filepath.Join(bin, b), b))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("control plane: %w: %w", kubetest.ErrUnavailable, errors.Join(missing...))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cp := &ControlPlane{Dir: dir}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmPort, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	cdir := func(name string) string { return filepath.Join(c.Dir, name) }
	cp.controller, err = kubetest.StartProcess("kube-controller-manager", filepath.Join(bin, "kube-controller-manager"), []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--controllers=*,-node-ipam-controller",
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file=" + cdir("sa.key"),
		"--root-ca-file=" + c.CAFile,
		"--cluster-signing-cert-file=" + c.CAFile,
		"--cluster-signing-key-file=" + cdir("ca.key"),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cmPort),
		"--cert-dir=" + filepath.Join(dir, "controller-manager-certs"),
		"--v=1",
	}, nil, filepath.Join(dir, "kube-controller-manager.log"))
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, cp.controller, healthy(cmPort)); err != nil {
		_ = cp.Stop()
		return nil, err
	}
	schedPort, err := freePort("127.0.0.1")
	if err != nil {
		_ = cp.Stop()
		return nil, err
	}
	cp.sched, err = kubetest.StartProcess("kube-scheduler", filepath.Join(bin, "kube-scheduler"), []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(schedPort),
		"--cert-dir=" + filepath.Join(dir, "scheduler-certs"),
		"--v=1",
	}, nil, filepath.Join(dir, "kube-scheduler.log"))
	if err != nil {
		_ = cp.Stop()
		return nil, err
	}
	if err := waitReady(ctx, cp.sched, healthy(schedPort)); err != nil {
		_ = cp.Stop()
		return nil, err
	}
	return cp, nil
}

// healthy returns a check of https://127.0.0.1:port/healthz (the
// components serve it to anyone, with a self-signed certificate).
func healthy(port int) func() bool {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // a loopback health probe of a self-signed server
	url := "https://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	return func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// Stop stops the scheduler, then the controller-manager.
func (cp *ControlPlane) Stop() error {
	return errors.Join(cp.sched.Stop(10*time.Second), cp.controller.Stop(10*time.Second))
}
